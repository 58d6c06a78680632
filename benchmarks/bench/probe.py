"""The frozen-feature probe: efficientnet_lite0 features at 224 px + logistic regression, no fine-tuning.

Global-pooled features of the offline ImageNet weights (eval mode, no augmentation; ``--flip`` averages
the features of each photo and its mirror), standardised, then scikit-learn's LogisticRegression — one
per FashionAI attributes task — with C chosen by a 3-fold cross-validation (log-loss) on the training
part only.

    python benchmarks/bench/probe.py --task classify --train TRAIN_DIR --test TEST_DIR --seed 0 --out OUT_DIR
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain import STARTED, Rows, build, decode, normalise, read_attributes, read_classify, write_predictions

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


@torch.no_grad()
def features(paths: list[Path], imgsz: int, flip: bool, batch: int = 64) -> np.ndarray:
    model, mean, std = build(1)
    backbone = model[0].eval()
    out = []
    for start in range(0, len(paths), batch):
        x = normalise(decode(paths[start:start + batch], imgsz), mean, std)
        f = backbone(x)
        if flip:
            f = (f + backbone(x.flip(-1))) / 2
        out.append(f.numpy())
    return np.concatenate(out)


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, y)


def _proba(model, x: np.ndarray, width: int) -> np.ndarray:
    probs = np.zeros((len(x), width))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, width: int,
                seed: int, grid: tuple[float, ...] = C_GRID) -> tuple[np.ndarray, float]:
    """Probabilities [n_test, width] (classes never seen in training get 0) and the chosen C."""
    from sklearn.model_selection import StratifiedKFold

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rare classes: fewer members than folds
        folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(x_train, y_train))
        loss = {}
        for c in grid:
            total = 0.0
            for fit_idx, val_idx in folds:
                p = _proba(_fit(x_train[fit_idx], y_train[fit_idx], c), x_train[val_idx], width)
                total -= np.log(np.clip(p[np.arange(len(val_idx)), y_train[val_idx]], 1e-7, 1)).sum()
            loss[c] = total
        best = min(loss, key=loss.get)
        return _proba(_fit(x_train, y_train, best), x_test, width), best


def probe(train: Rows, test: Rows, imgsz: int, flip: bool, seed: int,
          grid: tuple[float, ...] = C_GRID) -> tuple[list[np.ndarray], dict]:
    t0 = time.time()
    f_train, f_test = features(train.paths, imgsz, flip), features(test.paths, imgsz, flip)
    extract_s = time.time() - t0
    probs: list[np.ndarray | None] = [None] * len(test.paths)
    chosen = {}
    for lo, hi in sorted(set(zip(train.lo.tolist(), train.hi.tolist()))):
        tr = np.flatnonzero(train.lo == lo)
        te = np.flatnonzero(test.lo == lo)
        task = train.tasks[tr[0]]
        p, chosen[task] = fit_predict(f_train[tr], train.target[tr] - lo, f_test[te], hi - lo, seed, grid)
        for i, row in zip(te, p):
            probs[i] = row
    return probs, {"imgsz": imgsz, "flip": flip, "seed": seed, "C": chosen, "extract_s": round(extract_s, 1),
                   "fit_s": round(time.time() - t0 - extract_s, 1), "n_train": len(train.paths),
                   "n_test": len(test.paths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("classify", "attributes"), required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--flip", action="store_true", help="average the features of each photo and its mirror")
    parser.add_argument("--c-grid", default=",".join(map(str, C_GRID)), help="values of C the inner CV chooses from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    reader = read_classify if args.task == "classify" else read_attributes
    train, test, classes, _ = reader(args.train, args.test)
    probs, info = probe(train, test, args.imgsz, args.flip, args.seed, tuple(float(c) for c in args.c_grid.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    write_predictions(args.task, args.out / "pred.csv", test, probs, classes)
    info["seconds"] = round(time.time() - STARTED, 1)
    (args.out / "info.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
