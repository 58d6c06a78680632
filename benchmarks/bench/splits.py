"""Held-out test splits for the accuracy benchmark: one per (dataset, seed), the same for every row.

Each split is written to disk as the user-facing layout of its task, so fashionlab, the plain loop
and the probe read exactly the same files:

- classify: ``train/<class>/<file>`` and ``test/<class>/<file>`` (symbolic links to the photos) and
  ``test_truth.csv`` (``image,label``, image relative to ``test/``);
- attributes: ``train/`` and ``test/``, each an ``Annotations/label.csv`` subset beside a link to the
  release's ``Images/`` (and ``CLASSES.md``); the truth is ``test/Annotations/label.csv`` itself.

A fixed split (clothing-256's ``train/`` -> ``validation/`` folders) links those folders instead.
"""
from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionlab.data.images import list_images


@dataclass(frozen=True)
class Split:
    task: str  # classify | attributes
    train: Path  # what `fashionlab train TASK --data` gets
    test: Path  # what `fashionlab predict TASK --source` gets
    truth: Path  # what `fashionlab evaluate TASK --truth` gets
    n_train: int
    n_test: int


def stratified_indices(strata: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) indices: ``round(fraction * n)`` of each stratum to test, drawn with ``seed``.

    Deterministic for a given list and seed (independent of the Python hash seed); strata of one item
    stay in train."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    train: list[int] = []
    test: list[int] = []
    for key in sorted(groups):
        idx = np.array(groups[key])
        rng.shuffle(idx)
        n_test = round(len(idx) * fraction) if len(idx) > 1 else 0
        test += idx[:n_test].tolist()
        train += idx[n_test:].tolist()
    return sorted(train), sorted(test)


def _class_files(root: Path, per_class: int | None, seed: int) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for cls in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = list_images(root / cls)
        if per_class is not None:
            random.Random(seed).shuffle(files)
            files = sorted(files[:per_class])
        out += [(f, cls) for f in files]
    return out


def _link_classes(files: list[tuple[Path, str]], dest: Path) -> None:
    for path, cls in files:
        link = dest / cls / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())


def _write_truth(files: list[tuple[Path, str]], path: Path) -> None:
    path.write_text("image,label\n" + "".join(f"{cls}/{p.name},{cls}\n" for p, cls in files))


def classify_split(root: Path, dest: Path, seed: int, fraction: float = 0.2,
                   per_class: int | None = None) -> Split:
    """A stratified ``fraction`` of each class held out with ``seed``; ``per_class`` caps each class first
    (quick mode). A set with ``train/`` and ``validation/`` folders keeps that fixed split."""
    shutil.rmtree(dest, ignore_errors=True)  # links only: rmtree never follows them
    dest.mkdir(parents=True)
    if (root / "train").is_dir() and (root / "validation").is_dir():
        train = _class_files(root / "train", per_class, seed)
        test = _class_files(root / "validation", None if per_class is None else max(4, per_class // 4), seed)
    else:
        files = _class_files(root, per_class, seed)
        tr, te = stratified_indices([c for _, c in files], fraction, seed)
        train, test = [files[i] for i in tr], [files[i] for i in te]
    if per_class is None and (root / "train").is_dir():  # the full fixed split: the folders themselves
        train_dir, test_dir = root / "train", root / "validation"
    else:
        train_dir, test_dir = dest / "train", dest / "test"
        _link_classes(train, train_dir)
        _link_classes(test, test_dir)
    truth = dest / "test_truth.csv"
    _write_truth(test, truth)
    return Split("classify", train_dir, test_dir, truth, len(train), len(test))


def attributes_split(root: Path, dest: Path, seed: int, fraction: float = 0.2,
                     rows_per_task: int | None = None) -> Split:
    """A ``fraction`` of ``Annotations/label.csv`` held out, stratified by (task, true value), with ``seed``.
    ``rows_per_task`` keeps a seeded sample of each task first (quick mode)."""
    shutil.rmtree(dest, ignore_errors=True)
    lines = [line for line in (root / "Annotations" / "label.csv").read_text().splitlines() if line.strip()]
    if rows_per_task is not None:
        by_task: dict[str, list[str]] = {}
        for line in lines:
            by_task.setdefault(line.split(",")[1], []).append(line)
        lines = []
        for task in sorted(by_task):
            rows = by_task[task][:]
            random.Random(seed).shuffle(rows)
            lines += rows[:rows_per_task]
    strata = []
    for line in lines:
        _, task, label = line.split(",")
        strata.append(f"{task}:{label.find('y')}")
    tr, te = stratified_indices(strata, fraction, seed)
    for part, idx in (("train", tr), ("test", te)):
        (dest / part / "Annotations").mkdir(parents=True, exist_ok=True)
        (dest / part / "Annotations" / "label.csv").write_text("".join(lines[i] + "\n" for i in idx))
        for name in ("Images", "CLASSES.md"):
            if (root / name).exists() and not (dest / part / name).exists():
                (dest / part / name).symlink_to((root / name).resolve())
    return Split("attributes", dest / "train", dest / "test", dest / "test" / "Annotations" / "label.csv",
                 len(tr), len(te))
