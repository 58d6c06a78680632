"""Training images/s: `fashionlab train classify` vs a minimal plain timm+torch loop, in one run.

Same model (efficientnet_lite0, offline ImageNet weights), image size, batch, data, augmentation,
threads and data-loading processes. Both use a steady-state epoch (the second one) so start-up is
not counted. The suite (`benchmarks/run.py --sections speed`) runs the same measurement.

    python benchmarks/train_throughput.py --data ../shared/data/trashnet-112 --imgsz 112 --images 640
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.speed import training_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/trashnet-112")
    parser.add_argument("--imgsz", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=640, help="training images per epoch (a random subset)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    report = {"threads": torch.get_num_threads(), **training_throughput(Path(args.data), args.imgsz, args.images,
                                                                          args.batch, args.workers)}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
