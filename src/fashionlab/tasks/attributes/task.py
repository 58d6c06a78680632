"""attributes: FashionAI attribute tags, one softmax head per task on a shared backbone.

Label letters become soft targets: 'y' has mass 1, 'm' (maybe) has mass ``maybe_weight``, 'n' none,
normalised to sum to one. With ``maybe_weight: 0`` a maybe is ignored; the official metric never
counts a prediction that lands on an 'm'.
"""
from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...config import RunConfig
from ...data.images import list_images
from ...data.labelled import LabelledSet, TaskMeta
from ...errors import FashionlabError
from ...io import atomic_open
from ..classifier.task import ClassifierTask
from .config import AttributesConfig
from .metric import attributes_map, read_label_csv, task_lines
from .submission import write_submission

log = logging.getLogger(__name__)
MIN_TASK_IMAGES = 2  # fewer rows cannot train a head worth having: almost always a typo in label.csv
LABEL_FILE = Path("Annotations") / "label.csv"
QUESTION_FILES = (Path("Tests") / "question.csv", Path("question.csv"))


def declared_tasks(root: Path | None) -> set[str]:
    """Tasks named by ``<task> letter order: ...`` lines of a CLASSES.md beside the data."""
    if root is None or not (root / "CLASSES.md").is_file():
        return set()
    lines = (root / "CLASSES.md").read_text(encoding="utf-8").splitlines()
    return {m.group(1) for m in (re.match(r"^(\S+) letter order:", line.strip()) for line in lines) if m}


def check_task_names(csv: Path, root: Path, allowed: list[str] | None) -> None:
    """Catch a task-name typo before it trains an extra head.

    A task with fewer than ``MIN_TASK_IMAGES`` rows is an error naming it and its first line. A task
    that is neither a FashionAI task, nor declared in CLASSES.md beside the data, nor listed in the
    ``tasks:`` allow-list is a warning with the rows per task (and the closest known name).
    """
    from ...data.synth.attributes import ATTRIBUTE_TASKS

    found = task_lines(csv)
    if allowed:
        found = {t: v for t, v in found.items() if t in allowed}
    known = set(ATTRIBUTE_TASKS) | declared_tasks(root) | set(allowed or [])
    for task, (count, line) in found.items():
        if count < MIN_TASK_IMAGES:
            close = difflib.get_close_matches(task, sorted((known | set(found)) - {task}), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise FashionlabError(f"{csv} line {line}: task '{task}' has {count} image(s) (at least "
                                  f"{MIN_TASK_IMAGES} are needed to train its head){hint}")
    unknown = [t for t in found if t not in known]
    if unknown:
        counts = ", ".join(f"{t} {n}" for t, (n, _) in sorted(found.items()))
        close = {t: difflib.get_close_matches(t, sorted(known), n=1) for t in unknown}
        hints = "; ".join(f"'{t}' (line {found[t][1]}) is not a FashionAI task nor declared in CLASSES.md"
                          + (f", did you mean '{close[t][0]}'?" if close[t] else "") for t in unknown)
        log.warning("%s: %s. Rows per task: %s. Declare it in CLASSES.md or pass tasks: [...] to train only "
                    "the tasks you mean.", csv, hints, counts)


def value_names(task: str, n_values: int, root: Path | None = None) -> list[str]:
    """Official FashionAI names when known, names from a CLASSES.md beside the data, else v0..vK."""
    from ...data.synth.attributes import ATTRIBUTE_TASKS

    names = ATTRIBUTE_TASKS.get(task)
    if names is None and root is not None and (root / "CLASSES.md").is_file():
        for line in (root / "CLASSES.md").read_text(encoding="utf-8").splitlines():
            match = re.match(rf"^{re.escape(task)} letter order:\s*(.+)$", line.strip())
            if match:
                names = [n.strip() for n in match.group(1).split(",")]
    if names is None or len(names) != n_values:
        names = [f"v{i}" for i in range(n_values)]
    return list(names)


def soft_target(label: str, width: int, maybe_weight: float) -> np.ndarray:
    mass = np.array([1.0 if c == "y" else maybe_weight if c == "m" else 0.0 for c in label], np.float32)
    out = np.zeros(width, dtype=np.float32)
    out[: len(label)] = mass / mass.sum()
    return out


def resolve_label_file(data: Path) -> tuple[Path, Path]:
    """Accept the release root (holding Annotations/label.csv) or the CSV itself; return (csv, root)."""
    if data.is_dir():
        if (data / LABEL_FILE).is_file():
            return data / LABEL_FILE, data
        raise FashionlabError(f"{data}: no {LABEL_FILE} (expected the FashionAI layout)")
    root = data.parent.parent if data.parent.name == "Annotations" else data.parent
    return data, root


class AttributesTask(ClassifierTask):
    name = "attributes"
    metric = "map"
    config_class = AttributesConfig
    evaluator = "fashionlab.tasks.attributes.metric:evaluate_attributes_files"
    synth_generator = "fashionlab.data.synth.attributes:synth_attributes"
    synth_count_arg = "n_per_task"

    def fit(self, cfg: RunConfig, resume: bool = False) -> Any:
        """``multitask: false`` trains one model per task in RUN/<task>/ (predict/submit accept RUN)."""
        if cfg.multitask or resume:
            return super().fit(cfg, resume)
        csv, root = resolve_label_file(Path(cfg.data))
        check_task_names(csv, root, cfg.tasks)
        tasks = cfg.tasks or sorted(read_label_csv(csv)["task"].unique())
        budget = cfg.time_budget / len(tasks)
        return [ClassifierTask.fit(self, cfg.model_copy(update={
            "tasks": [t], "out": str(Path(cfg.out) / t), "time_budget": budget, "multitask": True})) for t in tasks]

    def _labelled(self, frame: pd.DataFrame, root: Path, meta: TaskMeta, maybe_weight: float) -> LabelledSet:
        index = {t: i for i, t in enumerate(meta.tasks)}
        width = max(meta.head_sizes)
        task_index = np.array([index[t] for t in frame["task"]], dtype=np.int64)
        targets = np.stack([soft_target(lab, width, maybe_weight) for lab in frame["label"]]) \
            if len(frame) else np.zeros((0, width), np.float32)
        return LabelledSet([root / p for p in frame["path"]], task_index, targets, list(frame["path"]),
                           {"task": list(frame["task"]), "label": list(frame["label"])})

    def load_train(self, cfg: RunConfig) -> tuple[LabelledSet, LabelledSet, TaskMeta]:
        csv, root = resolve_label_file(Path(cfg.data))
        frame = read_label_csv(csv)
        if cfg.tasks:
            unknown = sorted(set(cfg.tasks) - set(frame["task"]))
            if unknown:
                raise FashionlabError(f"{csv}: tasks {unknown} not in the labels ({sorted(frame['task'].unique())})")
            frame = frame[frame["task"].isin(cfg.tasks)].reset_index(drop=True)
        check_task_names(csv, root, cfg.tasks)
        tasks = sorted(frame["task"].unique())
        sizes = {t: len(frame.loc[frame["task"] == t, "label"].iloc[0]) for t in tasks}
        meta = TaskMeta(tasks, [value_names(t, sizes[t], root) for t in tasks])
        full = self._labelled(frame, root, meta, cfg.maybe_weight)
        if cfg.val_data:
            v_csv, v_root = resolve_label_file(Path(cfg.val_data))
            known = {t: sizes[t] for t in tasks}
            val_frame = read_label_csv(v_csv, known_tasks=None if cfg.tasks else known)
            if cfg.tasks:  # the allow-list applies to validation too; then the widths must agree
                val_frame = val_frame[val_frame["task"].isin(cfg.tasks)].reset_index(drop=True)
                for task, label in zip(val_frame["task"], val_frame["label"]):
                    if len(label) != sizes[task]:
                        raise FashionlabError(f"{v_csv}: task '{task}' has {len(label)} values, {sizes[task]} in {csv}")
            return full, self._labelled(val_frame, v_root, meta, cfg.maybe_weight), meta
        strata = [f"{t}:{lab.find('y')}" for t, lab in zip(frame["task"], frame["label"])]
        train_idx, val_idx = self.split(cfg, strata)
        return full.subset(train_idx), full.subset(val_idx), meta

    def score(self, probs: list[np.ndarray], data: LabelledSet, meta: TaskMeta) -> dict[str, Any]:
        rows = list(zip(data.extra["task"], data.extra["label"], probs))
        return attributes_map(rows)

    def load_source(self, source: Path, meta: TaskMeta) -> LabelledSet:
        """A label/question CSV (``path,task[,...]``), a release root holding one, or ``Images/<task>/``."""
        known = set(meta.tasks)
        if source.is_dir():
            for rel in (LABEL_FILE, *QUESTION_FILES):
                if (source / rel).is_file():
                    return self.load_source(source / rel, meta)
            images = source / "Images" if (source / "Images").is_dir() else source
            rows = [(p.relative_to(source).as_posix(), p.parent.name) for p in list_images(images)]
            rows = [r for r in rows if r[1] in known]
            if not rows:
                raise FashionlabError(f"{source}: no images under Images/<task>/ for tasks {sorted(known)}")
            root = source
        else:
            root = source.parent.parent if source.parent.name in ("Annotations", "Tests") else source.parent
            rows = _read_questions(source)
        frame = pd.DataFrame(rows, columns=["path", "task"])
        bad = frame.loc[~frame["task"].isin(known)]
        if len(bad):
            line = int(bad.index[0]) + 1
            raise FashionlabError(f"{source} line {line}: task '{bad['task'].iloc[0]}' is not one this model knows "
                                  f"({', '.join(meta.tasks)})")
        width = max(meta.head_sizes)
        index = {t: i for i, t in enumerate(meta.tasks)}
        return LabelledSet([root / p for p in frame["path"]], np.array([index[t] for t in frame["task"]]),
                           np.zeros((len(frame), width), np.float32), list(frame["path"]),
                           {"task": list(frame["task"])})

    def write_predictions(self, out: Path, data: LabelledSet, probs: list[np.ndarray], meta: TaskMeta) -> Path:
        return write_submission(out, data.keys, data.extra["task"], probs)

    def write_truth(self, out: Path, data: LabelledSet, meta: TaskMeta) -> Path:
        with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
            for path, task, label in zip(data.keys, data.extra["task"], data.extra["label"]):
                handle.write(f"{path},{task},{label}\n")
        return out


def _read_questions(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise FashionlabError(f"{path}: no such file")
    rows: list[tuple[str, str]] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise FashionlabError(f"{path} line {line_no}: expected path,task[,...]")
        rows.append((cells[0].strip(), cells[1].strip()))
    if not rows:
        raise FashionlabError(f"{path}: no rows")
    return rows
