"""A variant of the fashionlab default on the benchmark's own splits (issue 16's "levers to measure").

    python benchmarks/fashionlab_variant.py trashnet --seeds 0,1,2 --work W --set val_fraction=0 > out.json

Each seed: the benchmark's split (``bench/accuracy.py``: same held-out photos as results.json's rows), then
``fashionlab train TASK --time-budget 480 --seed S --set ...``, predict, score — the fashionlab row's
commands with the options added. Prints one JSON object: the variant's runs and mean ± sd, beside the
stored default row of results.json (same seeds) and the per-seed differences.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.accuracy import DATASETS, _fashionlab, _summary  # noqa: E402
from bench.common import commit  # noqa: E402

BENCH = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(n for n, d in DATASETS.items() if d.task != "retrieval"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=480.0)
    parser.add_argument("--data-root", type=Path, default=BENCH.parent.parent / "shared" / "data")
    parser.add_argument("--set", dest="options", action="append", default=[], help="key=value for train --set")
    args = parser.parse_args()
    ds = DATASETS[args.dataset]
    extra = tuple(a for option in args.options for a in ("--set", option))
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        base = args.work / args.dataset / f"seed{seed}"
        split = ds.split(args.data_root / ds.folder, base / "split", seed)
        with contextlib.redirect_stdout(sys.stderr):  # the commands run are logged there; stdout is the JSON
            runs.append({"seed": seed, "n_train": split.n_train, "n_test": split.n_test, "commit": commit(),
                         **_fashionlab(ds, split, base / "variant", args.budget, seed, extra)})
        print(f"seed {seed}: {runs[-1]['value']:.4f}", file=sys.stderr, flush=True)
    stored = json.loads((BENCH / "results.json").read_text())["accuracy"]["runs"].get(args.dataset, [])
    default = {r["seed"]: r["value"] for r in stored if r["row"] == "fashionlab" and r["budget_s"] == args.budget}
    paired = [r["value"] - default[r["seed"]] for r in runs if r["seed"] in default]
    print(json.dumps({"dataset": args.dataset, "options": args.options, "budget_s": args.budget,
                      "variant": _summary([r["value"] for r in runs]),
                      "default": _summary([default[r["seed"]] for r in runs if r["seed"] in default]) if paired else None,
                      "delta": _summary(paired) if paired else None, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
