"""Real-photo classification recipes on TrashNet within a wall-clock budget (issue: waste sorting).

Rows: the default recipe, + mixup, + cost matrix, and a confidence-weighted vote of two models
(each trained in half the budget, so the row fits the same budget). All rows share one held-out
split (split_seed 0) and are scored on it for accuracy and expected cost with the same severity
matrix. Each command is printed and recorded beside its figures.

    python benchmarks/classify_recipes.py --data ../shared/data/trashnet-112 --budget 480 --out benchmarks/out/trash
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEVERITY = HERE / "trashnet_severity.csv"


def run(cmd: list[str]) -> str:
    print("$", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return shlex.join(cmd)


def score(pred: Path, truth: Path) -> dict:
    out = subprocess.run(["fashionlab", "evaluate", "classify", "--pred", str(pred), "--truth", str(truth),
                          "--cost", str(SEVERITY), "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/trashnet-112")
    parser.add_argument("--budget", type=float, default=480)
    parser.add_argument("--out", default="benchmarks/out/trash")
    parser.add_argument("--rows", default="default,mixup,cost,vote")
    args = parser.parse_args()
    out = Path(args.out)
    base = ["fashionlab", "train", "classify", "--data", args.data, "--set", "split_seed=0"]
    recipes = {
        "default": [],
        "mixup": ["--set", "mixup=0.2"],
        "cost": ["--set", f"cost_matrix={SEVERITY}"],
    }
    rows = []
    for name in args.rows.split(","):
        started = time.perf_counter()
        if name in recipes:
            run_dir = out / name
            commands = [run([*base, "--out", str(run_dir), "--time-budget", str(args.budget), *recipes[name]])]
            truth, pred = run_dir / "predictions" / "val_truth.csv", run_dir / "predictions" / "val.csv"
        else:  # two models, half the budget each, confidence-weighted vote
            commands = [run([*base, "--out", str(out / f"vote{seed}"), "--time-budget", str(args.budget / 2),
                             "--seed", str(seed)]) for seed in (1, 2)]
            pred = out / "vote.csv"
            commands.append(run(["fashionlab", "predict", "classify", "--weights", str(out / "vote1"),
                                 "--weights", str(out / "vote2"), "--source", args.data, "--out", str(pred),
                                 "--combine", "confidence"]))
            truth = out / "vote1" / "predictions" / "val_truth.csv"
        scores = score(pred, truth)
        rows.append({"recipe": name, "accuracy": round(scores["accuracy"], 4),
                     "expected_cost": round(scores["expected_cost"], 4), "val_images": scores["n_images"],
                     "wall_s": round(time.perf_counter() - started, 1), "commands": commands})
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| recipe | accuracy | expected cost | val images | wall s (train + predict) |", "|---|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['accuracy']:.4f} | {r['expected_cost']:.4f} | {r['val_images']} | {r['wall_s']} |"
              for r in rows]
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
