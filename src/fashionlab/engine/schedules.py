"""Learning-rate schedules as step -> multiplier functions (used through torch's LambdaLR)."""
from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("onecycle", "cosine", "step", "cyclic", "constant")


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int = 0, step_every: int = 1,
              pct_start: float = 0.25) -> Callable[[int], float]:
    """Multiplier of the base LR at ``step``.

    onecycle: linear rise from 1/25 to 1 over ``pct_start`` of the steps, then cosine to ~0 (Smith's
    one-cycle without momentum cycling). cosine: optional linear warm-up, then cosine to 0.
    step: x0.1 every ``step_every`` steps. cyclic: triangular cycles between 0.1 and 1 with a
    half-cycle of ``step_every`` steps (Smith's CLR). constant: 1. Robust to tiny step counts.
    """
    total = max(1, total_steps)
    if schedule == "onecycle":
        rise = max(1, int(round(total * pct_start)))

        def onecycle(step: int) -> float:
            if step < rise:
                return 0.04 + 0.96 * step / rise
            progress = min(1.0, (step - rise) / max(1, total - rise))
            return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * progress))

        return onecycle

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))))
        if schedule == "step":
            return 0.1 ** (step // max(1, step_every))
        if schedule == "cyclic":
            position = (step - warmup_steps) / max(1, step_every)
            return 0.1 + 0.9 * (1 - abs(position % 2 - 1))
        return 1.0

    return factor
