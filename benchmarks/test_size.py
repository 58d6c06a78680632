"""Accuracy of one trained classify run's best weights on its own validation split at several test sizes.

Shows the train/test resolution effect behind ``test_imgsz`` (fashionlab's default test size):
the same weights, only the size the validation photos are resized to changes.

    python benchmarks/test_size.py RUN DATA_ROOT 128,144,160 [--tta none,flip]

RUN is a `fashionlab train classify` run folder (it has predictions/val_truth.csv); DATA_ROOT is the
folder the validation paths in that file are relative to (the --data folder, or its validation folder).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fashionlab.engine.checkpoint import load_weights
from fashionlab.engine.predictor import predict_probs
from fashionlab.tasks.base import LabelledSet
from fashionlab.tasks.classify.cost import mean_cost, resolve_cost_matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("sizes", help="comma-separated test sizes, e.g. 128,144,160")
    parser.add_argument("--tta", default="none", help="comma-separated: none, flip, 5crop, 10crop")
    parser.add_argument("--weights", default="weights/best.pt", help="relative to RUN")
    parser.add_argument("--cost", type=Path, help="severity matrix CSV: also report the expected cost")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_weights(args.run / args.weights)
    truth = pd.read_csv(args.run / "predictions" / "val_truth.csv")
    classes = model.meta.classes[0]
    labels = np.array([classes.index(label) for label in truth["label"]])
    data = LabelledSet([args.data_root / p for p in truth["image"]], np.zeros(len(truth), dtype=np.int64),
                       np.zeros((len(truth), len(classes)), np.float32), list(truth["image"]))
    print(f"weights stored test size: {model.imgsz} px; trained at {model.info.get('train_imgsz', '?')} px")
    matrix = resolve_cost_matrix(str(args.cost), classes) if args.cost else None
    print("| test px | TTA | accuracy | expected cost |\n|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        for tta in args.tta.split(","):
            probs = np.stack(predict_probs(model.net, data, size, model.mean, model.std, tta, 64, 2, "cpu"))
            pred = probs.argmax(1)
            cost = f"{mean_cost(labels, pred, matrix):.4f}" if matrix is not None else "—"
            print(f"| {size} | {tta} | {float((pred == labels).mean()):.4f} | {cost} |", flush=True)


if __name__ == "__main__":
    main()
