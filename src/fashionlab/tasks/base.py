"""What a classification-style task tells the engine: its data, its heads, its metric, its writer.

``attributes`` (several softmax heads, one per FashionAI task) and ``classify`` (one head) share this
base: a sample is (image, task index, soft target over that task's values), so one masked loss serves
both. A new task subclasses ``Task`` and overrides a few small hooks, as in Ultralytics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..config import RunConfig


@dataclass
class LabelledSet:
    """Images with their task index and soft target (padded to the widest head)."""

    paths: list[Path]
    task_index: np.ndarray  # int64 [N]
    targets: np.ndarray  # float32 [N, L_max], rows sum to 1 over the task's values
    keys: list[str] = field(default_factory=list)  # how the image is named in outputs (path as found)
    extra: dict[str, list[Any]] = field(default_factory=dict)  # task-specific columns (e.g. label strings)

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def concat(cls, parts: list["LabelledSet"]) -> "LabelledSet":
        return cls([p for part in parts for p in part.paths], np.concatenate([p.task_index for p in parts]),
                   np.concatenate([p.targets for p in parts]), [k for part in parts for k in part.keys],
                   {key: [v for part in parts for v in part.extra[key]] for key in parts[0].extra})

    def subset(self, index: np.ndarray | list[int]) -> "LabelledSet":
        idx = np.asarray(index, dtype=np.int64)
        return LabelledSet(
            [self.paths[i] for i in idx], self.task_index[idx], self.targets[idx],
            [self.keys[i] for i in idx] if self.keys else [],
            {k: [v[i] for i in idx] for k, v in self.extra.items()},
        )


@dataclass
class TaskMeta:
    """What a checkpoint must remember to rebuild the heads and name the outputs."""

    tasks: list[str]
    classes: list[list[str]]  # value names per task, in output order

    @property
    def head_sizes(self) -> list[int]:
        return [len(c) for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "classes": [list(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskMeta":
        return cls(list(data["tasks"]), [list(c) for c in data["classes"]])


class Task:
    """Base class: subclasses fill in reading, scoring and writing.

    Classification-style tasks (one or several softmax heads) only override the hooks below and run
    on the shared engine. A task whose model or targets differ (keypoints, retrieval) sets
    ``config_class`` to a RunConfig subclass with its own options and overrides ``fit`` and
    ``predict_files``; the CLI verbs reach it through the same calls.
    """

    name: ClassVar[str] = ""
    metric: ClassVar[str] = ""  # the validation metric that picks the best checkpoint (higher is better)
    config_class: ClassVar[type[RunConfig]] = RunConfig
    multilabel: ClassVar[bool] = False  # sigmoid outputs and BCE/focal loss instead of softmax

    def cost_matrix(self, cfg: RunConfig, meta: "TaskMeta") -> np.ndarray | None:
        """A K×K severity matrix for cost-aware training, when the task supports one."""
        return None

    def fit(self, cfg: RunConfig, resume: bool = False) -> Any:
        """Train; returns an object with ``run``, ``best`` (weights path) and ``metrics``."""
        from ..engine.trainer import train

        if cfg.folds > 1:
            from ..engine.kfold import train_kfold

            return train_kfold(self, cfg, resume)
        return train(cfg, resume=resume)

    def predict_files(self, weights: Path | list[Path], source: Path, out: Path, tta: str = "none", batch: int = 64,
                      workers: int = 2, device: str = "auto", combine: str = "mean", skip_bad: bool = False) -> Path:
        """Predict ``source`` with one or several ``weights`` and write the task's prediction file ``out``."""
        from ..engine.classifier_predict import predict_classifier

        return predict_classifier(self, weights, source, out, tta, batch, workers, device, combine, skip_bad)

    def load_train(self, cfg: RunConfig) -> tuple[LabelledSet, LabelledSet, TaskMeta]:
        raise NotImplementedError

    def score(self, probs: list[np.ndarray], data: LabelledSet, meta: TaskMeta) -> dict[str, Any]:
        raise NotImplementedError

    def load_source(self, source: Path, meta: TaskMeta) -> LabelledSet:
        """Unlabelled (or labelled) images to predict; targets may be zeros."""
        raise NotImplementedError

    def write_predictions(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        raise NotImplementedError

    def write_probabilities(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        """Probabilities for ensembles and out-of-fold files; tasks whose predictions are already
        probabilities (attributes submissions, styles PROBS) just write their predictions."""
        return self.write_predictions(out, data, probs, meta)

    def write_truth(self, out: Path, data: LabelledSet, meta: TaskMeta) -> Path | None:
        """The labels of ``data`` in the format ``evaluate`` reads as truth (None when not supported)."""
        return None

    def split(self, cfg: RunConfig, strata: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Train/val indices: fold ``cfg.fold`` of ``cfg.folds`` when K-fold is on, else a held-out share."""
        if cfg.folds > 1:
            return stratified_kfold(strata, cfg.folds, cfg.fold, cfg.data_seed)
        return stratified_split(strata, cfg.val_fraction, cfg.data_seed)


def one_hot_targets(task_index: np.ndarray, labels: np.ndarray, width: int) -> np.ndarray:
    targets = np.zeros((len(labels), width), dtype=np.float32)
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


def stratified_split(strata: list[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split keeping each stratum's share; strata too small to split stay in train."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    by_stratum: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    for key in sorted(by_stratum):
        idx = np.array(by_stratum[key])
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction)) if len(idx) > 1 else 0
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def stratified_kfold(strata: list[str], folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``fold`` of a deterministic stratified K-fold: every index is in exactly one validation fold."""
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(strata), dtype=np.int64)
    offset = 0
    by_stratum: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    for key in sorted(by_stratum):
        idx = np.array(by_stratum[key])
        rng.shuffle(idx)
        assignment[idx] = (np.arange(len(idx)) + offset) % folds  # round-robin keeps folds balanced
        offset += len(idx)
    return np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
