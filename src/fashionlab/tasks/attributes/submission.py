"""FashionAI submission: ``path,task,p0;p1;...`` per row, 8 decimals, no header, one file."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...io import atomic_open


def format_probs(probs: np.ndarray) -> str:
    return ";".join(f"{p:.8f}" for p in np.asarray(probs, dtype=np.float64))


def write_submission(out: Path, paths: Sequence[str], tasks: Sequence[str], probs: Sequence[np.ndarray]) -> Path:
    with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
        for path, task, p in zip(paths, tasks, probs):
            handle.write(f"{path},{task},{format_probs(p)}\n")
    return Path(out)
