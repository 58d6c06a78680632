"""Task adapters: how the server loads one kind of weights file and turns images into JSON.

An adapter serves one task name (the ``{task}`` of ``POST /predict/{task}``):

- ``Adapter.load(paths)`` (classmethod) loads weights files of its format(s) and returns one adapter
  per task found in them (several files of one task are combined by the adapter, e.g. averaged);
- ``prepare(image)`` runs per request in a worker thread: the decoded RGB uint8 array [H, W, 3] in,
  anything out (usually the resized, normalised input);
- ``predict(items)`` runs one micro-batch of prepared items in the model thread and returns one
  JSON-able dict per item;
- ``describe()`` is what ``GET /health`` shows.

Adapters are found by the weights file's ``format`` field: the task registry names the task whose
files declare it, and that task's ``serve_adapter`` (``"module:Class"``, imported only when such a
file is loaded). Exported ONNX files are classifier models.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import FashionlabError

ONNX_FORMAT = "fashionlab-onnx-1"  # fashionlab.engine.export writes it into the ONNX metadata


def adapter_for(path: Path, fmt: str) -> str:
    """``"module:Class"`` of the adapter serving weights of ``fmt``; a one-line error when none does."""
    from ..tasks import all_tasks, task_for_format

    if fmt == ONNX_FORMAT:
        fmt = "fashionlab-classifier-1"
    task = task_for_format(fmt)
    if task is None:
        known = ", ".join(t.weights_format for t in all_tasks() if t.serve_adapter)
        raise FashionlabError(f"{path}: unknown weights format '{fmt}'; servable formats: {known}, {ONNX_FORMAT}")
    if not task.serve_adapter:
        raise FashionlabError(f"{path}: {task.name} models are served through an index: "
                              f"`fashionlab index {task.name} ...` then `fashionlab serve --index DIR`")
    return task.serve_adapter


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
    from ..engine.checkpoint import weights_files

    return [f for w in weights for f in weights_files(Path(w))]


def load_adapters(weights: Sequence[str | Path], device: str = "cpu") -> dict[str, Adapter]:
    """Adapters by task name for every weights file; two adapter classes claiming one task is an error."""
    files = expand_weights(weights)
    if not files:
        raise FashionlabError("no weights given: pass --weights RUN/weights/best.pt (repeatable)")
    by_class: dict[str, list[Path]] = {}
    for path in files:
        by_class.setdefault(adapter_for(path, weights_format(path)), []).append(path)
    out: dict[str, Adapter] = {}
    for target, paths in by_class.items():
        module, name = target.split(":")
        for adapter in getattr(importlib.import_module(module), name).load(paths, device):
            if adapter.task in out:
                raise FashionlabError(f"two kinds of weights serve task '{adapter.task}'; load one kind per task")
            out[adapter.task] = adapter
    return out
