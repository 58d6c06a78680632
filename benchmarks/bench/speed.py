"""Speed: training images/s vs the plain loop, the data pipeline per decoder, inference runtimes, feature caching."""
from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionlab import api
from fashionlab.data.images import list_images

from .plain import images_per_second


def training_throughput(root: Path, imgsz: int, images: int, batch: int = 32, workers: int = 2) -> dict[str, Any]:
    """Steady-state (second epoch) training images/s of fashionlab and of the plain loop, same everything."""
    import random

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(p, k) for k, c in enumerate(classes) for p in list_images(root / c)]
    random.Random(0).shuffle(files)
    files = files[:images]
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "data"
        for i, (p, k) in enumerate(files):
            dest = subset / classes[k] / f"{i}{p.suffix}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(p.resolve())
        plain = images_per_second([p for p, _ in files], [k for _, k in files], len(classes), imgsz, batch)
        result = api.train("classify", data=str(subset), out=str(Path(tmp) / "run"), imgsz=imgsz, batch=batch,
                           workers=workers, epochs=2, first_stage="none", val_fraction=0.02)
        history = [line.split(",") for line in (result.run / "history.csv").read_text().splitlines()[1:]]
        ours = float(history[-1][4])
    return {"imgsz": imgsz, "batch": batch, "workers": workers, "images": len(files),
            "plain": "decoded once into memory, crop and flip on tensors in the training process",
            "plain_images_per_s": round(plain, 1), "fashionlab_images_per_s": round(ours, 1),
            "ratio": round(ours / plain, 2)}


def _decoders(target: int) -> dict[str, Any]:
    """name -> bytes -> RGB uint8 array. 'reduced' decoders let the JPEG DCT downscale to >= target px."""
    import cv2
    from PIL import Image

    def pil(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))

    def pil_draft(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (target, target))
            return np.asarray(img.convert("RGB"))

    def opencv(data: bytes) -> np.ndarray:
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    decoders: dict[str, Any] = {"PIL": pil, "PIL draft (reduced DCT)": pil_draft, "OpenCV": opencv}
    try:
        import simplejpeg

        decoders["simplejpeg"] = lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")
        decoders["simplejpeg reduced DCT"] = lambda data: simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_height=target, min_width=target)
    except ImportError:
        pass
    return decoders


def data_pipeline(files: list[Path], imgsz: int) -> list[dict[str, Any]]:
    """Images/s on one core: decode only (bytes already in memory), then decode + fashionlab's train augmentation."""
    from fashionlab.data.transforms import train_transform

    blobs = [f.read_bytes() for f in files]
    augment = train_transform(imgsz, (0.5,) * 3, (0.5,) * 3)
    rows = []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, decode in _decoders(imgsz).items():
            decode(blobs[0])
            started = time.perf_counter()
            shapes = [decode(b).shape for b in blobs]
            decode_s = time.perf_counter() - started
            started = time.perf_counter()
            for b in blobs:
                augment(decode(b))
            full_s = time.perf_counter() - started
            rows.append({"decoder": name, "decoded_size": f"{shapes[0][1]}x{shapes[0][0]}",
                         "decode_images_per_s": round(len(blobs) / decode_s, 1),
                         "decode_augment_images_per_s": round(len(blobs) / full_s, 1)})
    finally:
        torch.set_num_threads(previous)
    return rows


def feature_cache(root: Path, imgsz: int, images: int, head_epochs: int = 30) -> dict[str, Any]:
    """The head stage with cached frozen features vs re-running the frozen backbone every head epoch."""
    from fashionlab.engine.head_stage import extract_features
    from fashionlab.models.backbone import create_backbone
    from fashionlab.models.net import ClassifierNet
    from fashionlab.tasks.base import LabelledSet

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(p, k) for k, c in enumerate(classes) for p in list_images(root / c)][:images]
    backbone = create_backbone("efficientnet_lite0")
    net = ClassifierNet(backbone.model, backbone.num_features, [len(classes)])
    targets = np.eye(len(classes), dtype=np.float32)[[k for _, k in files]]
    data = LabelledSet([p for p, _ in files], np.zeros(len(files), np.int64), targets, [str(p) for p, _ in files])
    started = time.perf_counter()
    feats = extract_features(net, data, imgsz, backbone.mean, backbone.std, 64, 2, "cpu")
    extract_s = time.perf_counter() - started
    head = net.head.train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    y = torch.as_tensor(targets).argmax(1)
    task = torch.zeros(len(files), dtype=torch.long)
    started = time.perf_counter()
    for _ in range(head_epochs):
        for chunk in torch.randperm(len(files)).split(256):
            loss = torch.nn.functional.cross_entropy(head(feats[chunk], task[chunk]), y[chunk])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    head_s = time.perf_counter() - started
    cached = extract_s + head_s
    uncached = head_epochs * extract_s + head_s  # every epoch pays the backbone's forward pass again
    return {"images": len(files), "imgsz": imgsz, "head_epochs": head_epochs, "extract_s": round(extract_s, 1),
            "head_epochs_s": round(head_s, 2), "cached_s": round(cached, 1), "uncached_s": round(uncached, 1),
            "speedup": round(uncached / cached, 1)}
