"""classify: one label per image from class folders or a CSV; accuracy picks the best checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...config import RunConfig
from ...data.images import IMAGE_EXTENSIONS, list_images
from ...data.labelled import LabelledSet, TaskMeta, one_hot_targets
from ...errors import FashionlabError
from ...io import atomic_open
from ..classifier.task import ClassifierTask
from .config import ClassifyConfig
from .cost import mean_cost, resolve_cost_matrix

VAL_FOLDER_NAMES = ("val", "valid", "validation")


def read_class_folders(root: Path) -> tuple[list[Path], list[str]]:
    """``root/<class>/*.jpg`` -> (paths, class names); an empty class folder is an error."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FashionlabError(f"{root}: no class folders found (expected {root}/<class>/<image>)")
    paths: list[Path] = []
    labels: list[str] = []
    for name in classes:
        files = list_images(root / name)
        if not files:
            raise FashionlabError(f"{root / name}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths += files
        labels += [name] * len(files)
    return paths, labels


def read_class_csv(path: Path) -> tuple[list[Path], list[str]]:
    """CSV with header ``image,label``; image paths are relative to the CSV's folder."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FashionlabError(f"{path}: cannot parse CSV ({exc})") from None
    if list(frame.columns[:2]) != ["image", "label"]:
        raise FashionlabError(f"{path} line 1: header must start with image,label; got {list(frame.columns)}")
    for i, (image, label) in enumerate(zip(frame["image"], frame["label"]), start=2):
        if not image or not label:
            raise FashionlabError(f"{path} line {i}: empty image or label")
    return [path.parent / p for p in frame["image"]], list(frame["label"])


def read_labelled(path: Path) -> tuple[list[Path], list[str], Path]:
    """Return (paths, labels, root that output names are relative to)."""
    if path.is_file():
        paths, labels = read_class_csv(path)
        return paths, labels, path.parent
    paths, labels = read_class_folders(path)
    return paths, labels, path


class ClassifyTask(ClassifierTask):
    name = "classify"
    metric = "accuracy"
    config_class = ClassifyConfig
    evaluator = "fashionlab.tasks.classify.evaluate:evaluate_classify_files"
    probability_csv = True

    def __init__(self) -> None:
        self._cost: np.ndarray | None = None

    def cost_matrix(self, cfg: RunConfig, meta: TaskMeta) -> np.ndarray | None:
        self._cost = resolve_cost_matrix(cfg.cost_matrix, meta.classes[0])
        return self._cost

    def _make_set(self, paths: list[Path], labels: list[str], root: Path, classes: list[str]) -> LabelledSet:
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise FashionlabError(f"{root}: classes {unknown[:5]} are not among the training classes {classes}")
        y = np.array([index[label] for label in labels], dtype=np.int64)
        keys = [_relative(p, root) for p in paths]
        return LabelledSet(paths, np.zeros(len(y), dtype=np.int64), one_hot_targets(y, y, len(classes)), keys)

    def load_train(self, cfg: RunConfig) -> tuple[LabelledSet, LabelledSet, TaskMeta]:
        root = Path(cfg.data)
        val_root = Path(cfg.val_data) if cfg.val_data else None
        if val_root is None and root.is_dir():
            train_dir = root / "train"
            found = [root / n for n in VAL_FOLDER_NAMES if (root / n).is_dir()]
            if train_dir.is_dir() and found:
                root, val_root = train_dir, found[0]
        paths, labels, base = read_labelled(root)
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise FashionlabError(f"{root}: need at least 2 classes, found {classes}")
        full = self._make_set(paths, labels, base, classes)
        if val_root is not None and cfg.folds <= 1:  # K-fold splits the training folder itself
            v_paths, v_labels, v_base = read_labelled(val_root)
            return full, self._make_set(v_paths, v_labels, v_base, classes), TaskMeta(["class"], [classes])
        train_idx, val_idx = self.split(cfg, labels)
        return full.subset(train_idx), full.subset(val_idx), TaskMeta(["class"], [classes])

    def score(self, probs: list[np.ndarray], data: LabelledSet, meta: TaskMeta) -> dict[str, Any]:
        from .metric import classification_report

        pred = np.array([int(np.argmax(p)) for p in probs], dtype=np.int64)
        truth = data.targets.argmax(1)
        report = classification_report(truth, pred, meta.classes[0])
        if self._cost is not None:
            report["expected_cost"] = mean_cost(truth, pred, self._cost)
        return report

    def load_source(self, source: Path, meta: TaskMeta) -> LabelledSet:
        if source.is_file() and source.suffix.lower() == ".csv":
            frame = pd.read_csv(source, dtype=str, keep_default_na=False)
            if "image" not in frame.columns:
                raise FashionlabError(f"{source} line 1: header has no 'image' column")
            paths, root = [source.parent / p for p in frame["image"]], source.parent
        elif source.is_file():
            paths, root = [source], source.parent
        elif source.is_dir():
            paths, root = list_images(source), source
        else:
            raise FashionlabError(f"{source}: no such file or folder")
        if not paths:
            raise FashionlabError(f"{source}: no images found")
        width = len(meta.classes[0])
        return LabelledSet(paths, np.zeros(len(paths), dtype=np.int64), np.zeros((len(paths), width), np.float32),
                           [_relative(p, root) for p in paths])

    def write_probabilities(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
            handle.write(_header(["image", *meta.classes[0]]) + "\n")
            for key, p in zip(data.keys, probs):
                handle.write(_csv_cell(key) + "," + ",".join(f"{v:.6f}" for v in p) + "\n")
        return out

    def write_truth(self, out: Path, data: LabelledSet, meta: TaskMeta) -> Path:
        classes = meta.classes[0]
        with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
            handle.write("image,label\n")
            for key, y in zip(data.keys, data.targets):
                handle.write(f"{_csv_cell(key)},{_csv_cell(classes[int(np.argmax(y))])}\n")
        return out

    def write_predictions(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        classes = meta.classes[0]
        with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
            handle.write("image,label,score\n")
            for key, p in zip(data.keys, probs):
                best = int(np.argmax(p))
                handle.write(f"{_csv_cell(key)},{_csv_cell(classes[best])},{p[best]:.6f}\n")
        return out


def _header(names: list[str]) -> str:
    return ",".join(_csv_cell(n) for n in names)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
