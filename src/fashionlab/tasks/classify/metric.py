"""Single-label metrics: accuracy, per-class recall, confusion matrix (numpy only)."""
from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (truth, pred), 1)
    return matrix


def classification_report(truth: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """accuracy = share of rows whose predicted class equals the truth; per-class recall alongside."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    matrix = confusion_matrix(truth, pred, len(classes))
    support = matrix.sum(1)
    recall = np.divide(np.diag(matrix), support, out=np.zeros(len(classes)), where=support > 0)
    return {
        "accuracy": float((truth == pred).mean()) if len(truth) else 0.0,
        "per_class_recall": {c: float(r) for c, r in zip(classes, recall)},
        "confusion_matrix": matrix.tolist(),
    }
