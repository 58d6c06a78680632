"""Plan a run to fit a wall-clock budget from measured step times."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class BudgetPlan:
    epochs: int
    train_s_per_image: float
    infer_s_per_image: float
    epoch_s: float
    remaining_s: float
    reserve_s: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def plan_epochs(budget_s: float, elapsed_s: float, n_train: int, n_val: int, train_s_per_image: float,
                infer_s_per_image: float, max_epochs: int | None = None, safety: float = 0.9) -> BudgetPlan:
    """Whole fine-tune epochs (each = one pass over train + one validation) that fit the time left.

    ``reserve`` keeps room for the final evaluation of the best checkpoint and writing outputs.
    ``safety`` absorbs step-time noise; Lightning's ``max_time`` enforces the hard limit anyway.
    """
    reserve = n_val * infer_s_per_image + 5.0
    remaining = budget_s - elapsed_s - reserve
    epoch_s = n_train * train_s_per_image + n_val * infer_s_per_image
    epochs = max(0, math.floor(remaining * safety / epoch_s)) if epoch_s > 0 else 0
    reason = f"{remaining:.0f}s left after {elapsed_s:.0f}s spent; one epoch ≈ {epoch_s:.1f}s"
    if max_epochs is not None and epochs > max_epochs:
        epochs, reason = max_epochs, reason + f"; capped at epochs={max_epochs}"
    return BudgetPlan(epochs, train_s_per_image, infer_s_per_image, epoch_s, remaining, reserve, reason)
