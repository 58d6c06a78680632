#!/bin/bash
# The README styles table: two 3-fold runs on the synthetic styles set, thresholds, mean/vote/stacking.
# usage: benchmarks/styles_kfold.sh [OUT_DIR]   (~13 min on 2 CPU cores)
set -e
cd "$(dirname "$0")/.."
O=${1:-benchmarks/out/styles}
fashionlab data synth styles --out $O/data
fashionlab train styles --data $O/data/labels.csv --out $O/a --folds 3 --time-budget 360 --set split_seed=0
fashionlab train styles --data $O/data/labels.csv --out $O/b --folds 3 --time-budget 360 --set split_seed=0 --seed 1 --set loss=focal --set upsample_rare=3
for r in a b; do
  fashionlab evaluate styles --pred $O/$r/oof.csv --truth $O/$r/oof_truth.csv --json > $O/$r.eval.json
  fashionlab thresholds styles --pred $O/$r/oof.csv --truth $O/$r/oof_truth.csv --out $O/$r.thr.json
done
for m in mean vote stack; do
  fashionlab ensemble styles --pred $O/a/oof.csv --pred $O/b/oof.csv --truth $O/a/oof_truth.csv --method $m --corr-threshold 1.0 --out $O/ens_$m.csv --json > $O/ens_$m.json
done
fashionlab ensemble styles --pred $O/a/oof.csv --truth $O/a/oof_truth.csv --method stack --out $O/stack_a.csv --json > $O/stack_a.json
fashionlab thresholds styles --pred $O/ens_stack.csv --truth $O/a/oof_truth.csv --out $O/stack.thr.json
echo ALLDONE
