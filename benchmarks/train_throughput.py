"""Training images/s: `fashionlab train classify` vs a minimal plain timm+torch loop, in one run.

Same model (efficientnet_lite0, offline ImageNet weights), image size, batch, data, threads and
data-loading processes. Both use a steady-state epoch (the second one) so start-up is not counted.

    python benchmarks/train_throughput.py --data ../shared/data/trashnet-112 --imgsz 112 --images 640
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import timm
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fashionlab import api
from fashionlab.data.images import list_images
from fashionlab.models.backbone import create_backbone


class FolderSet(Dataset):
    def __init__(self, items: list[tuple[Path, int]], imgsz: int, mean, std) -> None:
        self.items = items
        self.tf = transforms.Compose([transforms.RandomResizedCrop(imgsz, scale=(0.5, 1.0)),
                                      transforms.RandomHorizontalFlip(),
                                      transforms.ColorJitter(0.2, 0.2, 0.2, 0.05),
                                      transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return self.tf(Image.open(path).convert("RGB")), label


def plain_loop(items, classes: int, imgsz: int, batch: int, workers: int, epochs: int = 2) -> float:
    """The loop a user writes by hand: timm model, AdamW, cross-entropy. Returns images/s of the last epoch."""
    backbone = create_backbone("efficientnet_lite0")
    model = nn.Sequential(backbone.model, nn.Linear(backbone.num_features, classes))
    loader = DataLoader(FolderSet(items, imgsz, backbone.mean, backbone.std), batch_size=batch, shuffle=True,
                        num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    ips = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for images, labels in loader:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(images)
        ips = seen / (time.perf_counter() - start)
    return ips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/trashnet-112")
    parser.add_argument("--imgsz", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=640, help="training images per epoch (a class-balanced subset)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    root = Path(args.data)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    items = [(p, k) for k, c in enumerate(classes) for p in list_images(root / c)]
    random.Random(0).shuffle(items)
    items = items[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "data"
        for i, (p, k) in enumerate(items):
            dest = subset / classes[k] / f"{i}{p.suffix}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(p.resolve())
        plain = plain_loop(items, len(classes), args.imgsz, args.batch, args.workers)
        result = api.train("classify", data=str(subset), out=str(Path(tmp) / "run"), imgsz=args.imgsz,
                           batch=args.batch, workers=args.workers, epochs=2, head_epochs=0, val_fraction=0.02)
        history = [line.split(",") for line in (result.run / "history.csv").read_text().splitlines()[1:]]
        ours = float(history[-1][4])
    report = {"threads": torch.get_num_threads(), "imgsz": args.imgsz, "batch": args.batch, "images": len(items),
              "plain_images_per_s": round(plain, 2), "fashionlab_images_per_s": round(ours, 2),
              "ratio": round(ours / plain, 3)}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
