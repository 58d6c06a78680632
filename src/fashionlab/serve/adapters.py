"""Task adapters: how the server loads one kind of weights file and turns images into JSON.

An adapter serves one task name (the ``{task}`` of ``POST /predict/{task}``):

- ``Adapter.load(paths)`` (classmethod) loads weights files of its format(s) and returns one adapter
  per task found in them (several files of one task are combined by the adapter, e.g. averaged);
- ``prepare(image)`` runs per request in a worker thread: the decoded RGB uint8 array [H, W, 3] in,
  anything out (usually the resized, normalised input);
- ``predict(items)`` runs one micro-batch of prepared items in the model thread and returns one
  JSON-able dict per item;
- ``describe()`` is what ``GET /health`` shows.

Adapters are found by the weights file's ``format`` field through ``ADAPTERS`` (``"module:Class"``,
imported only when such a file is loaded). To serve keypoints, add a ``KeypointsAdapter`` and the
line ``"fashionlab-keypoints-1": "fashionlab.serve.keypoints:KeypointsAdapter"``; its JSON should hold
``"keypoints": [{"name": str, "x": float, "y": float, "visible": bool}, ...]`` in the uploaded image's
pixel coordinates (``[x, y]`` pairs also render): the web page draws whatever that list holds.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import FashionlabError

ONNX_FORMAT = "fashionlab-onnx-1"  # fashionlab.engine.export writes it into the ONNX metadata
ADAPTERS: dict[str, str] = {
    "fashionlab-classifier-1": "fashionlab.serve.classifier:ClassifierAdapter",
    ONNX_FORMAT: "fashionlab.serve.classifier:ClassifierAdapter",
}
NOT_YET = {"fashionlab-keypoints-1": "keypoints", "fashionlab-retrieval-1": "retrieval"}


class Adapter:
    """Base class; see the module docstring for the contract."""

    formats: ClassVar[tuple[str, ...]] = ()
    task: str = ""
    draft: int | None = None  # JPEG DCT downscale target for decoding uploads (None: full size)

    @classmethod
    def load(cls, paths: Sequence[Path], device: str = "cpu") -> list["Adapter"]:
        raise NotImplementedError

    def prepare(self, image: np.ndarray) -> Any:
        return image

    def predict(self, items: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"task": self.task}


def weights_format(path: Path) -> str:
    """The ``format`` a weights file declares (``.onnx`` files: the fashionlab ONNX format)."""
    if path.suffix.lower() == ".onnx":
        return ONNX_FORMAT
    from ..io import load_torch

    payload = load_torch(path, mmap=True)
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if not isinstance(fmt, str):
        raise FashionlabError(f"{path}: not a fashionlab weights file (no format field; use RUN/weights/best.pt)")
    return fmt


def expand_weights(weights: Sequence[str | Path]) -> list[Path]:
    """Each entry: a weights file (``.pt``/``.onnx``), a run folder, or a folder of run folders."""
    from ..engine.classifier_predict import weights_files

    return [f for w in weights for f in weights_files(Path(w))]


def load_adapters(weights: Sequence[str | Path], device: str = "cpu") -> dict[str, Adapter]:
    """Adapters by task name for every weights file; two adapter classes claiming one task is an error."""
    files = expand_weights(weights)
    if not files:
        raise FashionlabError("no weights given: pass --weights RUN/weights/best.pt (repeatable)")
    by_class: dict[str, list[Path]] = {}
    for path in files:
        fmt = weights_format(path)
        if fmt not in ADAPTERS:
            task = NOT_YET.get(fmt)
            hint = f"serving {task} models is not supported yet" if task else f"unknown format '{fmt}'"
            raise FashionlabError(f"{path}: {hint}; servable formats: {', '.join(ADAPTERS)}")
        by_class.setdefault(ADAPTERS[fmt], []).append(path)
    out: dict[str, Adapter] = {}
    for target, paths in by_class.items():
        module, name = target.split(":")
        for adapter in getattr(importlib.import_module(module), name).load(paths, device):
            if adapter.task in out:
                raise FashionlabError(f"two kinds of weights serve task '{adapter.task}'; load one kind per task")
            out[adapter.task] = adapter
    return out
