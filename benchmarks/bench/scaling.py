"""Scaling: how one fine-tune epoch's time grows with the number of images and with the image size."""
from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from fashionlab.data.images import list_images

from .common import fashionlab, run


def _subset(root: Path, dest: Path, n: int) -> Path:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(p, c) for c in classes for p in list_images(root / c)]
    random.Random(0).shuffle(files)
    for i, (p, c) in enumerate(files[:n]):
        link = dest / c / f"{i}{p.suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(p.resolve())
    return dest


def _one(data: Path, out: Path, imgsz: int, n: int) -> dict[str, Any]:
    run_dir = out / f"n{n}_px{imgsz}"
    ran = run(fashionlab("train", "classify", "--exist-ok", "--data", str(data), "--out", str(run_dir), "--imgsz", str(imgsz),
                         "--epochs", "2", "--set", "first_stage=none", "--set", "val_fraction=0.1"),
              log=out / f"n{n}_px{imgsz}.log")
    with open(run_dir / "history.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    ips = float(last["train_images_per_s"])
    train_images = round(n * 0.9)
    return {"images": n, "imgsz": imgsz, "train_images_per_s": round(ips, 1),
            "epoch_s": round(train_images / ips, 1), "peak_rss_mib": round(ran.peak_rss_mib), "command": ran.command}


def scaling(root: Path, out: Path, counts: list[int], sizes: list[int], base_count: int,
            base_size: int) -> dict[str, list[dict[str, Any]]]:
    out.mkdir(parents=True, exist_ok=True)
    by_count = [_one(_subset(root, out / f"data{n}", n), out, base_size, n) for n in counts]
    data = out / f"data{base_count}"
    if not data.exists():
        _subset(root, data, base_count)
    by_size = [_one(data, out, s, base_count) for s in sizes]
    _plot(by_count, by_size, out / "scaling.png")
    return {"by_count": by_count, "by_size": by_size, "plot": str(out / "scaling.png")}


def _plot(by_count: list[dict], by_size: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].plot([r["images"] for r in by_count], [r["epoch_s"] for r in by_count], "o-")
    axes[0].set(xlabel="training images", ylabel="seconds per epoch", title=f"at {by_count[0]['imgsz']} px")
    axes[1].plot([r["imgsz"] for r in by_size], [r["epoch_s"] for r in by_size], "o-")
    axes[1].set(xlabel="image size (px)", ylabel="seconds per epoch", title=f"{by_size[0]['images']} images")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
