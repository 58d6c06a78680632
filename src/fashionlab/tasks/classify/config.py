"""``ClassifyConfig``: the classification family's options plus a severity (cost) matrix."""
from __future__ import annotations

from pydantic import Field

from ..classifier.config import ClassifierConfig


class ClassifyConfig(ClassifierConfig):
    task: str = "classify"
    label_smoothing: float = Field(0.1, ge=0, lt=1)  # single-label softmax heads only
    cost_matrix: list[list[float]] | str | None = None  # K×K severities (rows truth, cols predicted) or CSV
    cost_weight: float = Field(1.0, ge=0)
