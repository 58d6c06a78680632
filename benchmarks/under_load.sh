#!/usr/bin/env bash
# Issue 16, "stable under load": the TrashNet seed-0 split of the benchmark, fashionlab's default command at
# 480 s, while a second fashionlab run (clothing-256, 540 s) shares the 2 cores from start to end.
#   bash benchmarks/under_load.sh [WORK]      (DATA=../shared/data by default)
set -u
cd "$(dirname "$0")"
W=${1:-/tmp/fashionlab-under-load}
DATA=${DATA:-$(cd ../.. && pwd)/shared/data}
rm -rf "$W"; mkdir -p "$W"
python -c "
import sys; sys.path.insert(0, 'bench')
from pathlib import Path
from splits import classify_split
print(classify_split(Path('$DATA/trashnet-112'), Path('$W/split'), 0))"
python -m fashionlab train classify --data "$DATA/clothing-256/train" --out "$W/other" --time-budget 540 --seed 0 > "$W/other.log" 2>&1 &
sleep 2
t0=$(date +%s)
python -m fashionlab --verbose train classify --data "$W/split/train" --out "$W/run" --time-budget 480 --seed 0 > "$W/train.log" 2>&1
echo "train wall s: $(( $(date +%s) - t0 ))"
python -m fashionlab predict classify --weights "$W/run" --source "$W/split/test" --out "$W/pred.csv" > "$W/pred.log" 2>&1
python -c "from fashionlab import api; print('accuracy', api.evaluate('classify', '$W/pred.csv', '$W/split/test_truth.csv')['accuracy'])"
grep -E "re-planned|tail stage:|torch threads" "$W/train.log"
wait
