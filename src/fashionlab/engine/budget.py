"""Plan a run to fit a wall-clock budget from measured step times."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

log = logging.getLogger(__name__)


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


_clock_start: list[float] = []


def count_budget_from(start: float) -> None:
    """Make the next training run's time budget start at ``start`` (a ``time.perf_counter()`` value).

    The CLI passes the moment the process imported fashionlab, so ``--time-budget 480`` bounds the
    whole command (torch imports and start-up included), not only the training loop.
    """
    _clock_start[:] = [start]


def budget_clock_start() -> float:
    """Start of this run's budget: a start set by ``count_budget_from`` (used once), else now."""
    return _clock_start.pop() if _clock_start else time.perf_counter()


def plan_epochs(budget_s: float, elapsed_s: float, n_train: int, n_val: int, train_s_per_image: float,
                infer_s_per_image: float, max_epochs: int | None = None, safety: float = 0.9,
                reserve_s: float | None = None) -> BudgetPlan:
    """Whole fine-tune epochs (each = one pass over train + one validation) that fit the time left.

    ``reserve_s`` keeps room for the final evaluation of the best checkpoint and writing outputs
    (default: one validation pass + 5 s). ``safety`` absorbs step-time noise; Lightning's
    ``max_time`` enforces the hard limit anyway.
    """
    reserve = n_val * infer_s_per_image + 5.0 if reserve_s is None else reserve_s
    remaining = budget_s - elapsed_s - reserve
    epoch_s = n_train * train_s_per_image + n_val * infer_s_per_image
    epochs = max(0, math.floor(remaining * safety / epoch_s)) if epoch_s > 0 else 0
    reason = f"{remaining:.0f}s left after {elapsed_s:.0f}s spent; one epoch ≈ {epoch_s:.1f}s"
    if max_epochs is not None and epochs > max_epochs:
        epochs, reason = max_epochs, reason + f"; capped at epochs={max_epochs}"
    return BudgetPlan(epochs, train_s_per_image, infer_s_per_image, epoch_s, remaining, reserve, reason)


def typical_epoch_s(epoch_times: list[float]) -> float:
    """Median of the last three epoch times: one epoch slowed by another process must not cut the plan
    (measured: a 91 s epoch among 32 s ones shrank a 13-epoch plan to 5 and left half the budget unused);
    two slow epochs in a row do."""
    return max(float(np.median(epoch_times[-3:])), 1e-3)


@dataclass
class Replanner:
    """Re-plans the number of epochs after each validated epoch so the run ends inside the budget.

    Shrinks whenever the plan would overrun; extends only in the first half of the plan, where
    stretching the LR schedule barely changes it, and only by a tenth of the plan or more.
    ``epoch_times`` starts with the planner's estimate.
    """

    epochs: int
    deadline: float  # time.perf_counter() value by which training must end
    max_epochs: int | None = None
    epoch_times: list[float] = field(default_factory=list)
    unit: str = "epoch"  # what is counted, for the log line (the tail stage counts blocks of steps)

    @classmethod
    def from_plan(cls, epochs: int, deadline: float, max_epochs: int | None, plan: dict | None) -> "Replanner":
        """Seeded with the plan's epoch-time estimate (``plan.json``'s ``epoch_s``), when there is one."""
        return cls(epochs, deadline, max_epochs, [plan["epoch_s"]] if plan and plan.get("epoch_s") else [])

    def after_epoch(self, epoch: int, wall_s: float, now: float | None = None) -> int | None:
        """The new epoch total, or None when the plan stands."""
        self.epoch_times.append(wall_s)
        now = time.perf_counter() if now is None else now
        fits = epoch + max(0, int((self.deadline - now) * 0.97 // typical_epoch_s(self.epoch_times)))
        fits = min(fits, self.max_epochs) if self.max_epochs is not None else fits
        # extend by at least a tenth: re-planning 27 -> 28 -> 27 epochs only jitters the LR schedule
        extend = fits >= self.epochs + max(1, self.epochs // 10) and epoch <= max(2, self.epochs // 2)
        if fits < self.epochs or extend:
            log.info("re-planned after %s %d (%.1fs): %d %ss in all", self.unit, epoch, wall_s, fits, self.unit)
            self.epochs = fits
            return fits
        return None
