"""Memory: peak RSS (the whole process tree, data-loading workers included) of predicting N images.

Prediction streams images from disk, so peak memory should not grow with the number of images:
the same command runs on N and 10×N generated JPEGs and both peaks are reported.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .common import fashionlab, run


def make_photos(root: Path, n: int, size: int = 96, classes: int = 4) -> Path:
    """``n`` small JPEGs in class folders (cheap to write; content does not matter for memory)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (classes, size, size, 3), dtype=np.uint8)
    for i in range(n):
        k = i % classes
        noise = rng.integers(-30, 30, (size, size, 3))
        path = root / f"c{k}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(base[k] + noise, 0, 255).astype(np.uint8)).save(path, quality=85)
    return root


def checkpoint(out: Path, imgsz: int) -> Path:
    """An efficientnet_lite0 classifier checkpoint in fashionlab's format (weights do not matter here)."""
    from fashionlab.engine.checkpoint import save_weights
    from fashionlab.models.backbone import create_backbone
    from fashionlab.models.net import ClassifierNet
    from fashionlab.tasks.base import TaskMeta

    backbone = create_backbone("efficientnet_lite0")
    meta = TaskMeta(["class"], [[f"c{k}" for k in range(4)]])
    net = ClassifierNet(backbone.model, backbone.num_features, meta.head_sizes)
    return save_weights(out, net, "classify", meta, "efficientnet_lite0", imgsz, backbone.mean, backbone.std)


def predict_memory(out: Path, counts: tuple[int, int], imgsz: int = 96) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    weights = checkpoint(out / "best.pt", imgsz)
    rows = []
    for n in counts:
        photos = make_photos(out / f"photos{n}", n)
        ran = run(fashionlab("predict", "classify", "--weights", str(weights), "--source", str(photos), "--out",
                             str(out / f"pred{n}.csv")), log=out / f"predict{n}.log")
        lines = sum(1 for _ in open(out / f"pred{n}.csv")) - 1
        if lines != n:
            raise RuntimeError(f"predict wrote {lines} rows for {n} images")
        rows.append({"images": n, "imgsz": imgsz, "peak_rss_mib": round(ran.peak_rss_mib), "seconds": round(ran.seconds, 1),
                     "images_per_s": round(n / ran.seconds, 1), "command": ran.command})
    return rows
