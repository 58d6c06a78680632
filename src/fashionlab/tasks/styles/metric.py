"""Multi-label style metric: sample-averaged F2, as sklearn ``fbeta_score(beta=2, average="samples",
zero_division=0)``, plus per-label F2 (``average=None``), in numpy only.

Per sample (or per label): F2 = 5·tp / (5·tp + 4·fn + fp); when tp + fn + fp = 0 (nothing true and
nothing predicted) the score is 0, which is sklearn's ``zero_division=0``. A label is predicted when its
probability >= its threshold (default 0.5).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import FashionlabError, at

DEFAULT_THRESHOLD = 0.5
BETA = 2.0


def _binary(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 2:
        raise FashionlabError(f"{name}: expected a 2-D (samples x labels) matrix, got shape {arr.shape}")
    return arr.astype(bool)


def _counts(y_true: Any, y_pred: Any, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, p = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise FashionlabError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    tp = (t & p).sum(axis).astype(np.float64)
    fn = (t & ~p).sum(axis).astype(np.float64)
    fp = (~t & p).sum(axis).astype(np.float64)
    return tp, fn, fp


def _fbeta(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, beta: float = BETA) -> np.ndarray:
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    return np.divide((1 + b2) * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def sample_f2(y_true: Any, y_pred: Any) -> float:
    """Mean over samples of each sample's F2 (empty truth and empty prediction score 0)."""
    scores = _fbeta(*_counts(y_true, y_pred, axis=1))
    if scores.size == 0:
        raise FashionlabError("no samples to score")
    return float(scores.mean())


def per_label_f2(y_true: Any, y_pred: Any) -> np.ndarray:
    """F2 of each label (column) over all samples; a label never true nor predicted scores 0."""
    return _fbeta(*_counts(y_true, y_pred, axis=0))


def _header(path: Path) -> list[str]:
    if not path.is_file():
        raise FashionlabError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as exc:
        raise FashionlabError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not header or not any(h.strip() for h in header):
        raise FashionlabError(f"{path}: empty file (expected a header image,<label1>,...)")
    header = [h.strip() for h in header]
    if header[0] != "image":
        raise FashionlabError(f"{at(path, 1)}: first column must be 'image', found '{header[0]}'")
    if len(header) < 2:
        raise FashionlabError(f"{at(path, 1)}: no label columns after 'image'")
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if not name:
            raise FashionlabError(f"{at(path, 1)}: column {i} has an empty name")
        if name in seen:
            raise FashionlabError(f"{at(path, 1)}: duplicate column '{name}' (columns {seen[name]} and {i})")
        seen[name] = i
    return header


def read_label_matrix(path: str | Path, binary: bool = False) -> tuple[list[str], list[str], np.ndarray]:
    """CSV ``image,<label1>,...`` -> (images, labels, float matrix [images x labels]).

    ``binary=True`` (truth files): every value must be 0 or 1; otherwise values are probabilities in [0, 1].
    """
    path = Path(path)
    header = _header(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, header=0,
                            names=header, index_col=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            n, line, saw = found.groups()
            raise FashionlabError(f"{at(path, int(line))}: {saw} columns; the header has {n}") from None
        raise FashionlabError(f"{path}: cannot parse CSV ({str(exc).strip().splitlines()[-1]})") from None
    frame.index = np.arange(len(frame)) + 2  # 1-based file line of each row
    blank = frame.apply(lambda col: col.fillna("").astype(str).str.strip() == "").all(axis=1)
    frame = frame.loc[~blank]
    if frame.empty:
        raise FashionlabError(f"{path}: no data rows after the header")
    images = frame["image"].astype(str).str.strip()
    empty = images == ""
    if empty.any():
        raise FashionlabError(f"{at(path, int(images.index[empty.argmax()]))}: empty image name")
    first: dict[str, int] = {}
    for line, name in images.items():
        if name in first:
            raise FashionlabError(f"{at(path, int(line))}: duplicate image '{name}' (first on line {first[name]})")
        first[name] = int(line)
    labels = header[1:]
    cells = frame[labels]
    values = cells.apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce")).to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if binary:
        bad |= ~np.isin(values, (0.0, 1.0))
    else:
        bad |= (values < 0) | (values > 1)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raw = cells.iat[r, c]
        where = f"{at(path, int(cells.index[r]))} column '{labels[c]}'"
        if raw is None or raw != raw or not str(raw).strip():
            raise FashionlabError(f"{where}: empty or missing cell")
        if not np.isfinite(values[r, c]):
            raise FashionlabError(f"{where}: value '{raw}' is not a number")
        expected = "0 or 1" if binary else "a probability in [0, 1]"
        raise FashionlabError(f"{where}: value '{raw}' is not {expected}")
    return list(images), labels, values


def _first(items: list[str] | set[str], n: int = 5) -> str:
    items = sorted(items)
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def read_thresholds(path: str | Path, labels: list[str]) -> np.ndarray:
    """JSON ``{label: threshold}``; labels it omits keep 0.5, labels not in ``labels`` are an error."""
    path = Path(path)
    if not path.is_file():
        raise FashionlabError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise FashionlabError(f"{at(path, exc.lineno)}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise FashionlabError(f"{path}: expected a JSON object {{label: threshold}}")
    unknown = set(data) - set(labels)
    if unknown:
        raise FashionlabError(f"{path}: unknown label(s) {_first(unknown)}; not in the truth header")
    out = np.full(len(labels), DEFAULT_THRESHOLD)
    for i, label in enumerate(labels):
        if label not in data:
            continue
        value = data[label]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise FashionlabError(f"{path}: threshold for '{label}' is {value!r}; expected a number in [0, 1]")
        out[i] = float(value)
    return out


def evaluate_styles_files(pred_path: str | Path, truth_path: str | Path,
                          thresholds_path: str | Path | None = None) -> dict[str, Any]:
    """Probabilities vs 0/1 labels (same ``image,<labels>`` header; rows matched by image name)."""
    pred_path, truth_path = Path(pred_path), Path(truth_path)
    t_images, t_labels, truth = read_label_matrix(truth_path, binary=True)
    p_images, p_labels, probs = read_label_matrix(pred_path, binary=False)
    if set(t_labels) != set(p_labels):
        missing, extra = set(t_labels) - set(p_labels), set(p_labels) - set(t_labels)
        parts = ([f"missing {_first(missing)}"] if missing else []) + ([f"extra {_first(extra)}"] if extra else [])
        raise FashionlabError(f"{pred_path} line 1: label columns differ from {truth_path}: {'; '.join(parts)}")
    if set(t_images) != set(p_images):
        missing, extra = set(t_images) - set(p_images), set(p_images) - set(t_images)
        parts = ([f"no prediction for {_first(missing)}"] if missing else []) + \
                ([f"images not in the truth: {_first(extra)}"] if extra else [])
        raise FashionlabError(f"{pred_path}: images differ from {truth_path}: {'; '.join(parts)}")
    row = {name: i for i, name in enumerate(p_images)}
    col = {name: j for j, name in enumerate(p_labels)}
    probs = probs[np.ix_([row[n] for n in t_images], [col[n] for n in t_labels])]
    thresholds = np.full(len(t_labels), DEFAULT_THRESHOLD) if thresholds_path is None \
        else read_thresholds(thresholds_path, t_labels)
    pred = probs >= thresholds[None, :]
    per_label = per_label_f2(truth, pred)
    return {"f2": sample_f2(truth, pred), "per_label_f2": {n: float(v) for n, v in zip(t_labels, per_label)}}
