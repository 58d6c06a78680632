"""styles: JD multi-label style tags, one sigmoid output per label on the shared engine.

Data: a CSV ``image,<label1>,...,<labelK>`` of 0/1 (or a folder holding ``labels.csv``); an image name
is looked up beside the CSV, then in ``images/`` beside it (the ``synth styles`` layout). The split is
multi-label stratified (``iterative-stratification``, when installed; else stratified on each image's
rarest label), K-fold aware (``folds``/``fold``). Resampling touches the training split only (see
``config.py``); the label counts before and after are kept on ``task.label_counts`` and added to
``RUN/data.json``. The best checkpoint is picked by sample F2 at 0.5; after training the per-label
thresholds tuned on validation (``threshold_search``) go to ``RUN/thresholds.json``.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...config import RunConfig
from ...data.images import list_images
from ...data.labelled import LabelledSet, TaskMeta
from ...errors import FashionlabError, at
from ...io import atomic_open
from ..classifier.task import ClassifierTask
from .config import StylesConfig
from .metric import DEFAULT_THRESHOLD, per_label_f2, read_label_matrix, sample_f2
from .thresholds import save_thresholds, tune

log = logging.getLogger(__name__)
LABEL_FILE = "labels.csv"


def resolve_label_csv(data: Path) -> Path:
    """``--data``: the label CSV itself or a folder holding ``labels.csv``."""
    if data.is_dir():
        if (data / LABEL_FILE).is_file():
            return data / LABEL_FILE
        raise FashionlabError(f"{data}: no {LABEL_FILE} (expected a CSV image,<label1>,...)")
    return data


def resolve_images(csv_path: Path, names: list[str]) -> list[Path]:
    """Each name relative to the CSV's folder, else to ``images/`` beside it; a missing file is an error."""
    root, images = csv_path.parent, csv_path.parent / "images"
    out: list[Path] = []
    for line, name in enumerate(names, start=2):
        path = root / name
        if not path.is_file() and (images / name).is_file():
            path = images / name
        if not path.is_file():
            raise FashionlabError(f"{at(csv_path, line)}: image '{name}' not found in {root} or {images}")
        out.append(path)
    return out


def label_counts(targets: np.ndarray, labels: list[str]) -> dict[str, int]:
    return {label: int(n) for label, n in zip(labels, (targets > 0.5).sum(0))}


def resample_indices(targets: np.ndarray, upsample: float, downsample: float, quantile: float,
                     seed: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Row indices after resampling, plus the rare and frequent label columns (see config.py).

    An image with a rare label is repeated ``floor(upsample)`` times, once more with probability
    ``upsample - floor(upsample)``; an image with no label outside the frequent ones (including an
    image with no label) is kept with probability ``downsample``. Seeded: same inputs, same rows.
    """
    y = np.asarray(targets) > 0.5
    n = len(y)
    rng = np.random.default_rng([seed, 7])
    u_up, u_down = rng.random(n), rng.random(n)
    counts = y.sum(0)
    present = counts > 0
    if not present.any():
        return np.arange(n), [], []
    lo, hi = np.quantile(counts[present], quantile), np.quantile(counts[present], 1 - quantile)
    if lo >= hi:  # all labels about equally common: nothing is rare or frequent
        return np.arange(n), [], []
    rare, frequent = present & (counts <= lo), present & (counts >= hi)
    has_rare = y[:, rare].any(1)
    all_frequent = ~y[:, ~frequent].any(1)
    whole = math.floor(upsample)
    reps = np.ones(n, dtype=np.int64)
    reps[has_rare] = whole + (u_up[has_rare] < upsample - whole)
    reps[all_frequent & (u_down >= downsample)] = 0
    if reps.sum() == 0:
        raise FashionlabError(f"downsample_frequent={downsample} leaves no training image")
    return np.repeat(np.arange(n), reps), np.flatnonzero(rare).tolist(), np.flatnonzero(frequent).tolist()


def multilabel_split(targets: np.ndarray, cfg: RunConfig, task: ClassifierTask) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/val indices: iterative stratification when available, else the rarest label."""
    folds, fold = getattr(cfg, "folds", 0), getattr(cfg, "fold", 0)
    y = (np.asarray(targets) > 0.5).astype(np.int64)
    if folds <= 1 and cfg.val_fraction == 0:
        return np.arange(len(y)), np.zeros(0, dtype=np.int64)
    if folds > 1 and not 0 <= fold < folds:
        raise FashionlabError(f"fold {fold} is not in 0..{folds - 1}")
    if len(y) < max(2, folds):
        raise FashionlabError(f"{cfg.data}: {len(y)} image(s) are too few to split")
    try:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
    except ImportError:
        counts = y.sum(0)
        order = np.argsort(counts, kind="stable")  # rarest label first
        strata = [str(next((j for j in order if row[j]), "none")) for row in y]
        return task.split(cfg, strata)
    x = np.zeros((len(y), 1))
    if folds > 1:
        splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.data_seed)
        train, val = list(splitter.split(x, y))[fold]
    else:
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=cfg.val_fraction, random_state=cfg.data_seed)
        train, val = next(splitter.split(x, y))
    return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)


def warn_absent(targets: np.ndarray, labels: list[str], where: str, quiet: bool = False) -> None:
    absent = [label for label, n in zip(labels, (np.asarray(targets) > 0.5).sum(0)) if n == 0]
    if absent and len(targets) and not quiet:
        log.warning("%s: label(s) %s have no positive image (a fold with a label absent); their F2 is 0 there",
                    where, ", ".join(absent))


class StylesTask(ClassifierTask):
    name = "styles"
    metric = "f2"
    multilabel = True
    config_class = StylesConfig
    evaluator = "fashionlab.tasks.styles.metric:evaluate_styles_files"
    probability_csv = True
    synth_generator = "fashionlab.data.synth.styles:synth_styles"
    combine = ("mean",)

    def __init__(self) -> None:
        self.label_counts: dict[str, Any] = {}
        self.threshold_method = "greedy"

    def _read(self, csv_path: Path, labels: list[str] | None = None) -> tuple[LabelledSet, list[str]]:
        images, found, y = read_label_matrix(csv_path, binary=True)
        if labels is not None:
            unknown, missing = sorted(set(found) - set(labels)), sorted(set(labels) - set(found))
            if unknown or missing:
                raise FashionlabError(f"{at(csv_path, 1)}: labels differ from the training labels "
                                      f"(unknown {unknown[:5]}, missing {missing[:5]})")
            y = y[:, [found.index(label) for label in labels]]
        labels = labels or found
        data = LabelledSet(resolve_images(csv_path, images), np.zeros(len(images), dtype=np.int64),
                           y.astype(np.float32), list(images))
        return data, labels

    def load_train(self, cfg: RunConfig, quiet: bool = False) -> tuple[LabelledSet, LabelledSet, TaskMeta]:
        """Read, split (train/val or fold), warn about absent labels and resample the training split."""
        self.threshold_method = getattr(cfg, "threshold_search", "greedy")
        csv_path = resolve_label_csv(Path(cfg.data))
        full, labels = self._read(csv_path)
        meta = TaskMeta(["styles"], [labels])
        warn_absent(full.targets, labels, f"{csv_path}", quiet)
        if cfg.val_data:
            train, (val, _) = full, self._read(resolve_label_csv(Path(cfg.val_data)), labels)
        else:
            train_idx, val_idx = multilabel_split(full.targets, cfg, self)
            train, val = full.subset(train_idx), full.subset(val_idx)
        warn_absent(train.targets, labels, f"{csv_path} training split", quiet)
        warn_absent(val.targets, labels, f"{csv_path} validation split", quiet)
        before = label_counts(train.targets, labels)
        index, rare, frequent = resample_indices(train.targets, getattr(cfg, "upsample_rare", 1.0),
                                                 getattr(cfg, "downsample_frequent", 1.0),
                                                 getattr(cfg, "rare_quantile", 0.25), cfg.seed)
        resampled = train.subset(index)
        self.label_counts = {"train_images_before": len(train), "train_images_after": len(resampled),
                             "val_images": len(val), "rare": [labels[j] for j in rare],
                             "frequent": [labels[j] for j in frequent], "before": before,
                             "after": label_counts(resampled.targets, labels), "val": label_counts(val.targets, labels)}
        if len(resampled) != len(train) and not quiet:
            log.info("resampled the training split: %d -> %d images (rare: %s)", len(train), len(resampled),
                     ", ".join(self.label_counts["rare"]))
        return resampled, val, meta

    def data_summary_extra(self) -> dict[str, Any]:
        return {"label_counts": self.label_counts}

    def fit(self, cfg: RunConfig, resume: bool = False) -> Any:
        """Train, then write ``RUN/thresholds.json`` (tuned on validation) and the threshold plots."""
        result = super().fit(cfg, resume)
        if getattr(result, "rank", 0):  # data-parallel: only rank 0 writes files
            return result
        if result.metrics.get("thresholds"):
            save_thresholds(result.run / "thresholds.json", result.metrics["thresholds"])
        if result.val_outputs:
            self._plot_thresholds(result)
        return result

    @staticmethod
    def _plot_thresholds(result: Any) -> None:
        """RUN/plots/thresholds.png: validation F2 vs one common threshold, per label and overall."""
        from ...engine.plots import plot_bars, plot_lines

        labels = result.meta.classes[0]
        probs, truth = np.stack(result.val_outputs), result.val_set.targets > 0.5
        grid = [round(float(t), 2) for t in np.arange(0.05, 0.96, 0.05)]
        curves = {"all labels (sample F2)": [sample_f2(truth, probs >= t) for t in grid]}
        for j, label in enumerate(labels):
            curves[label] = [float(per_label_f2(truth, probs >= t)[j]) for t in grid]
        plot_lines(grid, curves, result.run / "plots" / "thresholds.png", "F2 vs threshold (validation)",
                   "threshold", "F2")
        plot_bars(result.metrics["per_label_f2"], result.run / "plots" / "per_label_f2.png",
                  "F2 per label at 0.5 (validation)", "F2")

    def score(self, probs: list[np.ndarray], data: LabelledSet, meta: TaskMeta) -> dict[str, Any]:
        """F2 at 0.5 (picks the checkpoint), per-label F2, and F2 after threshold search on these probs."""
        labels = meta.classes[0]
        p = np.stack(probs).astype(np.float64)
        truth = data.targets > 0.5
        pred = p >= DEFAULT_THRESHOLD
        tuned = tune(p, truth, labels, self.threshold_method)
        return {"f2": sample_f2(truth, pred),
                "per_label_f2": {n: float(v) for n, v in zip(labels, per_label_f2(truth, pred))},
                "f2_tuned": tuned["f2_after"], "threshold_search": self.threshold_method,
                "thresholds": tuned["thresholds"]}

    def load_source(self, source: Path, meta: TaskMeta) -> LabelledSet:
        """A folder of images, one image, or a CSV with an ``image`` column (e.g. a label file)."""
        if source.is_file() and source.suffix.lower() == ".csv":
            try:
                frame = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig")
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise FashionlabError(f"{source}: cannot parse CSV ({exc})") from None
            if "image" not in frame.columns:
                raise FashionlabError(f"{at(source, 1)}: header has no 'image' column")
            keys = [name.strip() for name in frame["image"]]
            seen: dict[str, int] = {}
            for line, name in enumerate(keys, start=2):
                if not name:
                    raise FashionlabError(f"{at(source, line)}: empty image name")
                if name in seen:
                    raise FashionlabError(f"{at(source, line)}: duplicate image '{name}' (first on line {seen[name]})")
                seen[name] = line
            paths = resolve_images(source, keys)
        elif source.is_file():
            paths, keys = [source], [source.name]
        elif source.is_dir():
            paths = list_images(source)
            keys = [p.relative_to(source).as_posix() for p in paths]
        else:
            raise FashionlabError(f"{source}: no such file or folder")
        if not paths:
            raise FashionlabError(f"{source}: no images found")
        width = len(meta.classes[0])
        return LabelledSet(paths, np.zeros(len(paths), dtype=np.int64), np.zeros((len(paths), width), np.float32), keys)

    def write_predictions(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        """PROBS CSV ``image,<labels>`` with probabilities to 6 decimals (written atomically)."""
        return _write_matrix(out, data.keys, meta.classes[0], [[f"{v:.6f}" for v in p] for p in probs])

    def write_truth(self, out: Path, data: LabelledSet, meta: TaskMeta) -> Path:
        """The 0/1 labels of ``data`` in the label-file format (``evaluate`` reads it as truth)."""
        return _write_matrix(out, data.keys, meta.classes[0], [[str(int(v > 0.5)) for v in y] for y in data.targets])


def _write_matrix(out: Path, keys: list[str], labels: list[str], rows: list[list[str]]) -> Path:
    with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", *labels])
        for key, row in zip(keys, rows):
            writer.writerow([key, *row])
    return out
