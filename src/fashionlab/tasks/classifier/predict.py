"""Prediction for classification-style tasks, from one model or several (per-task models, ensembles)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.images import check_images
from ...data.labelled import TaskMeta
from ...engine.checkpoint import load_weights, weights_files
from ...engine.devices import resolve_device
from ...engine.predictor import predict_probs
from ...errors import FashionlabError


COMBINE = ("mean", "vote", "confidence")


def combine_probs(per_model: list[np.ndarray], how: str) -> np.ndarray:
    """mean: average probabilities. vote: share of models whose argmax is each class. confidence: the same
    vote with each model weighted by its top probability. Vote ties are broken by the mean probability."""
    stack = np.stack(per_model)
    mean = stack.mean(0)
    if how == "mean":
        return mean
    if how not in COMBINE:
        raise FashionlabError(f"unknown combine '{how}'; choose one of {', '.join(COMBINE)}")
    winners = stack.argmax(1)
    weights = stack.max(1) if how == "confidence" else np.ones(len(stack))
    votes = np.zeros_like(mean)
    np.add.at(votes, winners, weights)
    votes /= votes.sum()
    return votes + 1e-6 * mean  # tie-break; shares still sum to ~1


def predict_classifier(task, weights: Path | list[Path], source: Path, out: Path, tta: str, batch: int,
                       workers: int, device: str, combine: str = "mean", skip_bad: bool = False) -> Path:
    device = resolve_device(device)
    files = [f for w in (weights if isinstance(weights, list) else [weights]) for f in weights_files(w)]
    models = [load_weights(w, device) for w in files]
    for w, m in zip(files, models):
        if m.task != task.name:
            raise FashionlabError(f"{w}: weights are for task '{m.task}', not '{task.name}'")
    meta = merge_meta([m.meta for m in models], weights)
    data = task.load_source(source, meta)
    data = data.subset(check_images(data.paths, skip_bad))
    if not len(data):
        raise FashionlabError(f"{source}: no readable image to predict")
    if task.multilabel and combine != "mean":
        raise FashionlabError(f"combine '{combine}' is for single-label tasks; multi-label models are averaged")
    per_row: list[list[np.ndarray]] = [[] for _ in range(len(data))]
    for m in models:  # each model predicts the rows of the tasks it knows
        rows = [i for i, t in enumerate(data.task_index) if meta.tasks[t] in m.meta.tasks]
        part = data.subset(rows)
        part.task_index = np.array([m.meta.tasks.index(meta.tasks[t]) for t in part.task_index], dtype=np.int64)
        for i, p in zip(rows, predict_probs(m.net, part, m.imgsz, m.mean, m.std, tta, batch, workers, device,
                                               task.multilabel)):
            per_row[i].append(p)
    missing = [data.keys[i] for i, found in enumerate(per_row) if not found]
    if missing:
        raise FashionlabError(f"{source}: no model for the task of '{missing[0]}'")
    return task.write_predictions(out, data, [combine_probs(found, combine) for found in per_row], meta)


def merge_meta(metas: list, source: str | Path):
    """The union of several models' tasks; a task's classes must agree between models."""
    classes: dict[str, list[str]] = {}
    for meta in metas:
        for task, names in zip(meta.tasks, meta.classes):
            if classes.setdefault(task, names) != names:
                raise FashionlabError(f"{source}: models disagree on the values of '{task}'")
    return TaskMeta(list(classes), list(classes.values()))
