"""FashionAI attribute metric (official definition) and the label / submission CSV readers.

Per attribute task, every truth row is scored by the argmax of its predicted probabilities (ties go to
the first index): a 'y' at that index is a hit, an 'n' a miss, and an 'm' (maybe) is not counted. The
counted rows are sorted by that max probability, descending (stable, so ties keep file order), and
AP = mean over the counted rows of the running precision (hits so far / rows so far). ``map`` is the
mean AP over the tasks present in the truth; a task whose rows are all uncounted scores AP 0.0.
``accuracy`` = hits / counted rows over all tasks (0.0 when nothing is counted).

Numpy/pandas only (no torch), so the evaluator runs anywhere.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ...errors import FashionlabError, at

LETTERS = frozenset("ynm")


class _LabelRow(NamedTuple):
    line: int
    path: str
    task: str
    label: str


class _PredRow(NamedTuple):
    line: int
    path: str
    task: str
    probs: np.ndarray


def task_ap(labels: Sequence[str], probs: Sequence[np.ndarray]) -> tuple[float, int, int]:
    """(AP, hits, counted rows) of one task's rows; AP is 0.0 when no row is counted."""
    scores: list[float] = []
    hits: list[bool] = []
    for label, p in zip(labels, probs):
        p = np.asarray(p, dtype=np.float64).ravel()
        idx = int(np.argmax(p))
        letter = label[idx]
        if letter == "m":
            continue
        scores.append(float(p[idx]))
        hits.append(letter == "y")
    if not scores:
        return 0.0, 0, 0
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    hit = np.asarray(hits, dtype=np.float64)[order]
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float(precision.mean()), int(hit.sum()), len(hit)


def attributes_map(rows: Iterable[tuple[str, str, Any]]) -> dict[str, Any]:
    """Score ``(task, truth_label, probs)`` rows: {"map", "accuracy", "per_task": {task: AP}}."""
    by_task: dict[str, tuple[list[str], list[np.ndarray]]] = {}
    for i, (task, label, probs) in enumerate(rows):
        p = np.asarray(probs, dtype=np.float64).ravel()
        if len(p) != len(label):
            raise FashionlabError(f"row {i + 1} (task '{task}'): {len(p)} probabilities; the label '{label}' has "
                                  f"{len(label)} letters")
        labels, probs_list = by_task.setdefault(task, ([], []))
        labels.append(label)
        probs_list.append(p)
    if not by_task:
        raise FashionlabError("no rows to score")
    per_task: dict[str, float] = {}
    hits = counted = 0
    for task in sorted(by_task):
        ap, h, n = task_ap(*by_task[task])
        per_task[task] = ap
        hits += h
        counted += n
    return {
        "map": float(np.mean(list(per_task.values()))),
        "accuracy": hits / counted if counted else 0.0,
        "per_task": per_task,
    }


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text file with their 1-based line numbers."""
    path = Path(path)
    if not path.is_file():
        raise FashionlabError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FashionlabError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _label_rows(path: Path, known_tasks: dict[str, int] | None = None) -> list[_LabelRow]:
    rows: list[_LabelRow] = []
    lengths: dict[str, tuple[int, int]] = {}  # task -> (label length, line that set it)
    seen: dict[tuple[str, str], int] = {}
    for line_no, line in _lines(path):
        where = at(path, line_no)
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 3:
            raise FashionlabError(f"{where}: expected 3 columns path,task,label; found {len(cells)}")
        rel, task, label = cells
        if not rel or not task:
            raise FashionlabError(f"{where}: empty {'path' if not rel else 'task'}")
        if not label:
            raise FashionlabError(f"{where}: empty label")
        bad = next((c for c in label if c not in LETTERS), None)
        if bad is not None:
            raise FashionlabError(f"{where}: label '{label}' has letter '{bad}'; expected y/n/m")
        if "y" not in label:
            raise FashionlabError(f"{where}: label '{label}' has no 'y'")
        if known_tasks is not None:
            if task not in known_tasks:
                raise FashionlabError(f"{where}: unknown task '{task}'; known: {', '.join(sorted(known_tasks))}")
            if len(label) != known_tasks[task]:
                raise FashionlabError(f"{where}: label '{label}' has {len(label)} letters; task '{task}' has "
                                      f"{known_tasks[task]}")
        if task in lengths and lengths[task][0] != len(label):
            n, first = lengths[task]
            raise FashionlabError(f"{where}: label '{label}' has {len(label)} letters; task '{task}' has {n} "
                                  f"(line {first})")
        lengths.setdefault(task, (len(label), line_no))
        if (rel, task) in seen:
            raise FashionlabError(f"{where}: duplicate row for path '{rel}' task '{task}' (first on line "
                                  f"{seen[(rel, task)]})")
        seen[(rel, task)] = line_no
        rows.append(_LabelRow(line_no, rel, task, label))
    if not rows:
        raise FashionlabError(f"{path}: empty file (no label rows)")
    return rows


def read_label_csv(path: str | Path, known_tasks: dict[str, int] | None = None) -> pd.DataFrame:
    """FashionAI ``label.csv`` (no header, ``path,task,labelstring``) as columns path, task, label.

    ``known_tasks`` ({task: number of values}) makes unknown tasks and wrong label lengths errors.
    """
    rows = _label_rows(Path(path), known_tasks)
    return pd.DataFrame([r[1:] for r in rows], columns=["path", "task", "label"])


def task_lines(path: str | Path) -> dict[str, tuple[int, int]]:
    """{task: (rows, first line)} of a ``label.csv``, in order of first appearance."""
    found: dict[str, tuple[int, int]] = {}
    for row in _label_rows(Path(path)):
        count, first = found.get(row.task, (0, row.line))
        found[row.task] = (count + 1, first)
    return found


def _pred_rows(path: Path) -> list[_PredRow]:
    rows: list[_PredRow] = []
    seen: dict[tuple[str, str], int] = {}
    for line_no, line in _lines(path):
        where = at(path, line_no)
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 3:
            raise FashionlabError(f"{where}: expected 3 columns path,task,p0;p1;...; found {len(cells)}")
        rel, task, text = cells
        if not rel or not task:
            raise FashionlabError(f"{where}: empty {'path' if not rel else 'task'}")
        values: list[float] = []
        for cell in text.split(";"):
            try:
                value = float(cell)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                raise FashionlabError(f"{where}: probability '{cell}' is not a number")
            if not 0.0 <= value <= 1.0:
                raise FashionlabError(f"{where}: value '{cell}' is not a probability in [0, 1]")
            values.append(value)
        if (rel, task) in seen:
            raise FashionlabError(f"{where}: duplicate row for path '{rel}' task '{task}' (first on line "
                                  f"{seen[(rel, task)]})")
        seen[(rel, task)] = line_no
        rows.append(_PredRow(line_no, rel, task, np.asarray(values, dtype=np.float64)))
    if not rows:
        raise FashionlabError(f"{path}: empty file (no prediction rows)")
    return rows


def read_submission_csv(path: str | Path) -> pd.DataFrame:
    """A FashionAI submission (no header, ``path,task,p0;p1;...``) as columns path, task, probs."""
    rows = _pred_rows(Path(path))
    return pd.DataFrame({"path": [r.path for r in rows], "task": [r.task for r in rows],
                         "probs": [r.probs for r in rows]})


def evaluate_attributes_files(pred_path: str | Path, truth_path: str | Path) -> dict[str, Any]:
    """Join truth rows with predictions by (path, task) and score them; extra predictions are ignored."""
    pred_path, truth_path = Path(pred_path), Path(truth_path)
    truth = _label_rows(truth_path)
    pred = {(r.path, r.task): r for r in _pred_rows(pred_path)}
    scored: list[tuple[str, str, np.ndarray]] = []
    for row in truth:
        match = pred.get((row.path, row.task))
        if match is None:
            raise FashionlabError(f"{at(truth_path, row.line)}: path '{row.path}' task '{row.task}' has no "
                                  f"prediction in {pred_path}")
        if len(match.probs) != len(row.label):
            raise FashionlabError(f"{at(pred_path, match.line)}: path '{row.path}' has {len(match.probs)} "
                                  f"probabilities; the label has {len(row.label)} ({at(truth_path, row.line)})")
        scored.append((row.task, row.label, match.probs))
    return attributes_map(scored)
