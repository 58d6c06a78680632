"""The adapter for classification-style weights (attributes, classify, styles), PyTorch or ONNX.

One backbone pass per image gives every head's logits (``engine.export.AllHeads``); softmax per
head, or sigmoid for multi-label tasks (``get_task(name).multilabel``). Several weights files of one
task are combined like ``fashionlab predict --combine mean``: each head's probabilities are averaged
over the models that have it. Preprocessing is ``eval_transform`` and JPEG draft decoding, as in
``fashionlab predict`` without TTA, so both give the same probabilities for the same file.

Responses (``probabilities`` in the model's class order, 6 decimals):

- attributes (several heads): ``{"task", "attributes": {head: {"top", "score", "probabilities"}}}``
- classify (one single-label head): ``{"task", "label", "score", "probabilities"}``
- styles (multi-label): ``{"task", "labels": [above threshold], "probabilities", "thresholds"}``,
  thresholds from ``RUN/thresholds.json`` beside the weights when present, else 0.5.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.transforms import eval_transform
from ..engine.checkpoint import load_weights
from ..engine.export import AllHeads, OnnxPredictor
from ..errors import FashionlabError
from ..models.losses import activation
from ..data.labelled import TaskMeta
from ..tasks import get_task
from ..tasks.classifier.predict import merge_meta
from .adapters import ONNX_FORMAT, Adapter

Key = tuple[int, tuple[float, ...], tuple[float, ...]]  # (imgsz, mean, std): one preprocessing


@dataclass
class _Model:
    path: Path
    task: str
    meta: TaskMeta
    key: Key
    run: Callable[[np.ndarray], np.ndarray]  # images [N,3,H,W] float32 -> logits [N,T,L]
    runtime: str


def _torch_runner(wrapper: AllHeads, device: str) -> Callable[[np.ndarray], np.ndarray]:
    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return wrapper(torch.from_numpy(images).to(device)).float().cpu().numpy()

    return run


def _load_model(path: Path, device: str) -> _Model:
    if path.suffix.lower() == ".onnx":
        onnx = OnnxPredictor(path)
        return _Model(path, onnx.task, onnx.meta, (onnx.imgsz, onnx.mean, onnx.std), onnx.all_logits, "onnx")
    loaded = load_weights(path, device)
    wrapper = AllHeads(loaded.net).eval()
    return _Model(path, loaded.task, loaded.meta, (loaded.imgsz, tuple(loaded.mean), tuple(loaded.std)),
                  _torch_runner(wrapper, device), "torch")


def _thresholds(paths: Sequence[Path], labels: list[str]) -> np.ndarray:
    """Per-label thresholds from the first ``thresholds.json`` beside a weights file (RUN/), else 0.5."""
    from ..tasks.styles.metric import read_thresholds

    for path in paths:
        for candidate in (path.parent.parent / "thresholds.json", path.parent / "thresholds.json"):
            if candidate.is_file():
                return read_thresholds(candidate, labels)
    return np.full(len(labels), 0.5)


class ClassifierAdapter(Adapter):
    """Serves one classification-style task from one or several weights files."""

    formats = ("fashionlab-classifier-1", ONNX_FORMAT)

    def __init__(self, task: str, models: list[_Model], multilabel: bool) -> None:
        self.task, self.models, self.multilabel = task, models, multilabel
        self.meta = merge_meta([m.meta for m in models], task)
        self.keys = list(dict.fromkeys(m.key for m in models))
        self.transforms = {key: eval_transform(*key) for key in self.keys}
        self.draft = int(max(k[0] for k in self.keys) / 0.875) + 1  # as ``predict_probs`` decodes
        self.thresholds = (_thresholds([m.path for m in models], self.meta.classes[0])
                           if multilabel else None)
        self._activate = activation(multilabel)

    @classmethod
    def load(cls, paths: Sequence[Path], device: str = "cpu") -> list["ClassifierAdapter"]:
        by_task: dict[str, list[_Model]] = {}
        for path in paths:
            model = _load_model(Path(path), device)
            by_task.setdefault(model.task, []).append(model)
        out = []
        for task, models in by_task.items():
            multilabel = get_task(task).multilabel
            if multilabel and len({tuple(m.meta.tasks) for m in models}) > 1:
                raise FashionlabError(f"{models[0].path}: multi-label models of '{task}' must share their labels")
            out.append(cls(task, models, multilabel))
        return out

    def prepare(self, image: np.ndarray) -> dict[Key, np.ndarray]:
        return {key: transform(image).numpy() for key, transform in self.transforms.items()}

    def predict(self, items: list[dict[Key, np.ndarray]]) -> list[dict[str, Any]]:
        per_head: dict[str, list[np.ndarray]] = {}  # head -> probabilities [N, K] of each model
        for model in self.models:
            logits = model.run(np.stack([item[model.key] for item in items]))
            for t, (head, names) in enumerate(zip(model.meta.tasks, model.meta.classes)):
                probs = self._activate(torch.from_numpy(np.ascontiguousarray(logits[:, t, :len(names)])))
                per_head.setdefault(head, []).append(probs.numpy())
        mean = {head: np.mean(found, axis=0) for head, found in per_head.items()}
        return [self._respond({head: mean[head][i] for head in self.meta.tasks}) for i in range(len(items))]

    def _respond(self, heads: dict[str, np.ndarray]) -> dict[str, Any]:
        named = {head: dict(zip(names, (round(float(p), 6) for p in heads[head])))
                 for head, names in zip(self.meta.tasks, self.meta.classes)}
        if self.multilabel:
            labels, probs = self.meta.classes[0], heads[self.meta.tasks[0]]
            return {"task": self.task, "labels": [n for n, p, t in zip(labels, probs, self.thresholds) if p >= t],
                    "probabilities": named[self.meta.tasks[0]],
                    "thresholds": {n: round(float(t), 6) for n, t in zip(labels, self.thresholds)}}
        tops = {head: (names[int(np.argmax(heads[head]))], round(float(np.max(heads[head])), 6))
                for head, names in zip(self.meta.tasks, self.meta.classes)}
        if len(self.meta.tasks) == 1 and self.task != "attributes":
            label, score = tops[self.meta.tasks[0]]
            return {"task": self.task, "label": label, "score": score, "probabilities": named[self.meta.tasks[0]]}
        return {"task": self.task, "attributes": {head: {"top": tops[head][0], "score": tops[head][1],
                                                         "probabilities": named[head]} for head in self.meta.tasks}}

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "kind": "classifier", "multilabel": self.multilabel,
                "heads": {head: len(names) for head, names in zip(self.meta.tasks, self.meta.classes)},
                "models": [{"weights": str(m.path), "runtime": m.runtime, "imgsz": m.key[0]} for m in self.models]}
