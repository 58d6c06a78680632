"""Labelled image sets for classification-style tasks, their head layout, and deterministic splits.

A sample is (image, task index, soft target over that task's values): ``attributes`` has several
softmax heads (one per FashionAI task), ``classify`` and ``styles`` one. Lives in ``data/`` so the
engine and the tasks both use it without the engine importing a task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


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


def one_hot_targets(task_index: np.ndarray, labels: np.ndarray, width: int) -> np.ndarray:
    targets = np.zeros((len(labels), width), dtype=np.float32)
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


def _shuffled_strata(strata: list[str], seed: int) -> list[np.ndarray]:
    """Each stratum's indices (strata in sorted order), shuffled by one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    groups = []
    for key in sorted(by_stratum):
        idx = np.array(by_stratum[key])
        rng.shuffle(idx)
        groups.append(idx)
    return groups


def stratified_split(strata: list[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split keeping each stratum's share; strata too small to split stay in train."""
    train: list[int] = []
    val: list[int] = []
    for idx in _shuffled_strata(strata, seed):
        n_val = int(round(len(idx) * val_fraction)) if len(idx) > 1 else 0
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def stratified_kfold(strata: list[str], folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``fold`` of a deterministic stratified K-fold: every index is in exactly one validation fold."""
    assignment = np.zeros(len(strata), dtype=np.int64)
    offset = 0
    for idx in _shuffled_strata(strata, seed):
        assignment[idx] = (np.arange(len(idx)) + offset) % folds  # round-robin keeps folds balanced
        offset += len(idx)
    return np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
