"""Embedded synthetic datasets in the competitions' own layouts (drawn with PIL; no downloads).

Every generator is a pure, seeded function ``f(out, ..., seed=0) -> out``: the same arguments give
byte-identical files. The labels are visible properties of the drawings, so a small ImageNet
backbone learns them quickly; they are synthetic, for demos and tests, not benchmarks.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from ...errors import FashionlabError
from .attributes import ATTRIBUTE_TASKS, synth_attributes
from .keypoints import synth_keypoints
from .retrieval import synth_retrieval
from .styles import STYLE_LABELS, synth_styles

SYNTH: dict[str, Callable[..., Path]] = {
    "attributes": synth_attributes,
    "styles": synth_styles,
    "retrieval": synth_retrieval,
    "keypoints": synth_keypoints,
}


def synth(task: str, out: Path, **kwargs: Any) -> Path:
    """Generate the synthetic set of ``task`` under ``out`` and return ``out``."""
    if task not in SYNTH:
        raise FashionlabError(f"no synthetic data for task {task!r}; valid: {', '.join(SYNTH)}")
    make = SYNTH[task]
    try:
        inspect.signature(make).bind(out, **kwargs)
    except TypeError as exc:
        raise FashionlabError(f"synth {task}: {exc}") from None
    return make(Path(out), **kwargs)


__all__ = ["ATTRIBUTE_TASKS", "STYLE_LABELS", "SYNTH", "synth", "synth_attributes", "synth_keypoints",
           "synth_retrieval", "synth_styles"]
