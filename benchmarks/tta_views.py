"""Test-time views compared on the same weights, from one pass: each photo's whole resize and its mirror
(``--tta flip``, predict's default) and the ten crops of ``--tta 10crop`` (5crop = the first five), each
view's softmax computed once and the modes' accuracies derived from them.

    python benchmarks/tta_views.py RUN/weights/best.pt TEST_FOLDER TRUTH.csv   # classify: image,label truth
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from fashionlab.data.images import load_rgb
from fashionlab.data.transforms import tta_transform
from fashionlab.engine.checkpoint import load_weights


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("truth", type=Path)
    args = parser.parse_args()
    loaded = load_weights(args.weights)
    net, classes = loaded.net.eval(), loaded.meta.classes[0]
    flip = tta_transform(loaded.imgsz, loaded.mean, loaded.std, "flip")
    crops = tta_transform(loaded.imgsz, loaded.mean, loaded.std, "10crop")
    with args.truth.open() as f:
        truth = {row["image"]: row["label"] for row in csv.DictReader(f)}
    hits = {"none": [], "flip": [], "5crop": [], "10crop": [], "flip+10crop": []}
    for name, label in truth.items():
        image = load_rgb(args.test / name, draft=int(loaded.imgsz / 0.875) + 1)  # as predict decodes
        views = torch.cat([flip(image), crops(image)])
        probs = net(views, torch.zeros(len(views), dtype=torch.long)).softmax(-1).numpy()[:, : len(classes)]
        for mode, rows in (("none", [0]), ("flip", [0, 1]), ("5crop", range(2, 7)), ("10crop", range(2, 12)),
                           ("flip+10crop", range(12))):
            hits[mode].append(classes[int(np.argmax(probs[list(rows)].mean(0)))] == label)
    print(json.dumps({mode: round(float(np.mean(h)), 4) for mode, h in hits.items()} | {"n": len(truth)}))


if __name__ == "__main__":
    main()
