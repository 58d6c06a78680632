"""Severity (cost) matrices: rows = true class, columns = predicted class, 0 on the diagonal.

Given inline in the config (``cost_matrix: [[0, 0.1], [1, 0]]``, classes in sorted-name order) or as a
CSV whose header row and first column name the classes (any order; reordered to the data's classes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import FashionlabError


def read_cost_csv(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        frame = pd.read_csv(path, index_col=0)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FashionlabError(f"{path}: cannot read cost matrix ({exc})") from None
    rows, cols = [str(r) for r in frame.index], [str(c) for c in frame.columns]
    if rows != cols and sorted(rows) == sorted(cols):
        frame = frame.loc[:, rows]
    elif rows != cols:
        raise FashionlabError(f"{path}: row names {rows} and column names {cols} must be the same classes")
    try:
        values = frame.to_numpy(dtype=np.float64)
    except ValueError:
        raise FashionlabError(f"{path}: cost matrix has non-numeric cells") from None
    return rows, values


def resolve_cost_matrix(spec: list[list[float]] | str | None, classes: list[str]) -> np.ndarray | None:
    """Validate and return the K×K matrix in the order of ``classes`` (None when no matrix is set)."""
    if spec is None:
        return None
    source = "cost_matrix"
    if isinstance(spec, str):
        source = spec
        names, matrix = read_cost_csv(Path(spec))
        missing, extra = sorted(set(classes) - set(names)), sorted(set(names) - set(classes))
        if missing or extra:
            raise FashionlabError(f"{spec}: class names do not match the data: missing {missing}, unknown {extra}")
        order = [names.index(c) for c in classes]
        matrix = matrix[np.ix_(order, order)]
    else:
        try:
            matrix = np.asarray(spec, dtype=np.float64)
        except ValueError:
            raise FashionlabError("cost_matrix: rows must all have the same length") from None
    k = len(classes)
    if matrix.shape != (k, k):
        raise FashionlabError(f"{source}: cost matrix is {'×'.join(map(str, matrix.shape))}, expected {k}×{k} "
                              f"for classes {classes}")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        i, j = np.argwhere(~np.isfinite(matrix) | (matrix < 0))[0]
        raise FashionlabError(f"{source}: entry [{classes[i]}, {classes[j]}] = {matrix[i, j]}; severities must be "
                              "finite and >= 0")
    if np.diag(matrix).any():
        raise FashionlabError(f"{source}: the diagonal (a correct prediction) must cost 0")
    return matrix


def mean_cost(truth: np.ndarray, pred: np.ndarray, matrix: np.ndarray) -> float:
    """Expected cost of the predictions: mean over images of C[true, predicted]."""
    return float(matrix[truth, pred].mean()) if len(truth) else 0.0
