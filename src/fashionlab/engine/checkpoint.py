"""The run's weights file: plain tensors + JSON-able metadata, loadable with ``weights_only=True``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import FashionlabError
from ..io import atomic_open, load_torch
from ..models.backbone import create_backbone
from ..models.net import ClassifierNet
from ..data.labelled import TaskMeta

FORMAT = "fashionlab-classifier-1"


@dataclass
class LoadedModel:
    net: ClassifierNet
    task: str
    meta: TaskMeta
    imgsz: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    info: dict[str, Any]
    multilabel: bool = False


def save_weights(path: Path, net: ClassifierNet, task: str, meta: TaskMeta, model_name: str, imgsz: int,
                 mean, std, extra: dict[str, Any] | None = None, multilabel: bool = False) -> Path:
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    payload = {
        "format": FORMAT, "task": task, "model": model_name, "imgsz": int(imgsz), "multilabel": bool(multilabel),
        "mean": [float(m) for m in mean], "std": [float(s) for s in std],
        "meta": meta.to_dict(), "head": net.head.config(), "extra": extra or {}, "state_dict": state,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def load_weights(path: str | Path, device: str = "cpu") -> LoadedModel:
    path = Path(path)
    if path.suffix.lower() == ".onnx":  # an exported model runs through the same predict path
        from .export import load_onnx

        return load_onnx(path, device)
    payload = load_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FashionlabError(f"{path}: not a fashionlab weights file (use RUN/weights/best.pt)")
    meta = TaskMeta.from_dict(payload["meta"])
    backbone = create_backbone(payload["model"], pretrained="none")
    head = payload.get("head", {})
    net = ClassifierNet(backbone.model, backbone.num_features, meta.head_sizes, head.get("kind", "linear"),
                        head.get("hidden", 0))
    net.load_state_dict(payload["state_dict"], strict=True)
    net.eval().to(device)
    return LoadedModel(net, payload["task"], meta, payload["imgsz"], tuple(payload["mean"]), tuple(payload["std"]),
                       payload.get("extra", {}), bool(payload.get("multilabel", False)))


def weights_files(weights: str | Path) -> list[Path]:
    """A best.pt file, a run folder, or a folder of run folders (per-task models, an ensemble)."""
    path = Path(weights)
    if path.is_file():
        return [path]
    found = [path / "weights" / "best.pt"] if (path / "weights" / "best.pt").is_file() else \
        sorted(path.glob("*/weights/best.pt"))
    if not found:
        raise FashionlabError(f"{weights}: no weights file (expected best.pt, RUN/weights/best.pt or RUN/*/weights/best.pt)")
    return found
