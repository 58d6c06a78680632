"""The frozen-feature multi-label probe: efficientnet_lite0 features at 224 px, a logistic regression per tag.

Global-pooled features of the offline ImageNet weights (eval mode), standardised; per tag one
scikit-learn LogisticRegression. C (one for all tags) is chosen by 3-fold out-of-fold log-loss on the
training part; the per-tag thresholds are tuned on those out-of-fold probabilities with fashionlab's
greedy sample-F2 search — held-out predictions, as fashionlab tunes on its validation split — and
written to OUT/thresholds.json beside OUT/pred.csv.

    python benchmarks/bench/styles_probe.py --train TRAIN.csv --test TEST.csv --seed 0 --out OUT_DIR
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain import STARTED  # noqa: E402
from probe import features  # noqa: E402

from fashionlab.tasks.styles.thresholds import save_thresholds, tune  # noqa: E402

C_GRID = (0.03, 0.1, 0.3)


def read(path: Path) -> tuple[list[str], list[str], np.ndarray, list[Path]]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.reader(handle) if r]
    images = [r[0] for r in rows[1:]]
    root = path.parent / "images"
    return rows[0][1:], images, np.array([[int(v) for v in r[1:]] for r in rows[1:]]), [root / i for i in images]


def fit_columns(x: np.ndarray, y: np.ndarray, x_out: np.ndarray, c: float) -> np.ndarray:
    """P(tag) for ``x_out``, one logistic regression per column of ``y`` (a constant for a one-valued column)."""
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((len(x_out), y.shape[1]))
    for j in range(y.shape[1]):
        if y[:, j].min() == y[:, j].max():
            out[:, j] = float(y[0, j])
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=c, max_iter=2000).fit(x, y[:, j])
        out[:, j] = model.predict_proba(x_out)[:, 1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--c-grid", default=",".join(map(str, C_GRID)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    torch.set_grad_enabled(False)
    labels, _, y_train, train_paths = read(args.train)
    _, test_images, _, test_paths = read(args.test)
    t0 = time.time()
    scaler = StandardScaler()
    x_train = scaler.fit_transform(features(train_paths, args.imgsz, False))
    x_test = scaler.transform(features(test_paths, args.imgsz, False))
    extract_s = time.time() - t0
    folds = list(KFold(3, shuffle=True, random_state=args.seed).split(x_train))
    best: tuple[float, float, np.ndarray] | None = None
    for c in (float(v) for v in args.c_grid.split(",")):
        oof = np.zeros(y_train.shape)
        for fit_idx, val_idx in folds:
            oof[val_idx] = fit_columns(x_train[fit_idx], y_train[fit_idx], x_train[val_idx], c)
        p = np.clip(oof, 1e-7, 1 - 1e-7)
        loss = -float(np.mean(y_train * np.log(p) + (1 - y_train) * np.log(1 - p)))
        if best is None or loss < best[0]:
            best = (loss, c, oof)
    assert best is not None
    _, c, oof = best
    tuned = tune(oof, y_train, labels)
    probs = fit_columns(x_train, y_train, x_test, c)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "pred.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", *labels])
        writer.writerows([image, *(f"{v:.6f}" for v in row)] for image, row in zip(test_images, probs))
    save_thresholds(args.out / "thresholds.json", tuned["thresholds"])
    info = {"imgsz": args.imgsz, "C": c, "oof_f2_tuned": round(float(tuned["f2_after"]), 4),
            "extract_s": round(extract_s, 1), "fit_s": round(time.time() - t0 - extract_s, 1),
            "seconds": round(time.time() - STARTED, 1)}
    (args.out / "info.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
