"""``AttributesConfig``: the classification family's options plus FashionAI's label letters and tasks."""
from __future__ import annotations

from pydantic import Field

from ..classifier.config import ClassifierConfig


class AttributesConfig(ClassifierConfig):
    task: str = "attributes"
    label_smoothing: float = Field(0.1, ge=0, lt=1)  # single-label softmax heads only
    maybe_weight: float = Field(0.5, ge=0, le=1)  # target mass of an 'm' letter relative to 'y'
    multitask: bool = True  # false: one model per attribute task, in RUN/<task>/
    tasks: list[str] = Field(default_factory=list)  # train only these tasks (default all)
