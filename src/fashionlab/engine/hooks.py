"""The contract between the one training loop (``engine/fit.py``) and a task.

The loop owns everything every task shares — run folder, resume, time budget and re-planning,
speed probe, Lightning (DDP, AMP, EMA/SWA, staged unfreezing, early stopping), best and top-k
checkpoints, clean stop on a signal, sweep reports — and asks the task only for what differs: its
data, model, training step, validation outputs and score, weights file and final outputs. As in
Ultralytics, a task subclasses ``FitHooks`` and overrides a few small methods; the engine never
imports a task.

Validation: ``val_step`` returns ``(index, outputs)`` for a batch of the validation set (the row
positions and one output row per image); the loop gathers them in order into one array ``[n_val, ...]``
on every rank and passes it to ``score``. ``score`` returns the metric named ``metric``, compared in
the direction ``higher_is_better``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import RunConfig
from .run_files import RunFiles


@dataclass
class TrainResult:
    run: Path
    best: Path
    metrics: dict[str, Any]
    val_set: Any = None  # what the best checkpoint was scored on (K-fold gathers these)
    val_outputs: Any = None  # the task's validation outputs for ``val_set`` (probabilities, coordinates, ...)
    meta: Any = None
    rank: int = 0  # data-parallel rank; only rank 0 scores, writes files and fills ``metrics``


@dataclass
class HeadStage:
    """What an optional frozen-backbone head stage reports back to the loop."""

    best_metric: float
    best_epoch: float
    history: list[dict]
    infer_s_per_image: float
    imgsz: int | None = None  # where its weights predict (None: the run's imgsz)
    stage: str = "head"


class FitHooks:
    """One training run of one task, as the loop sees it. ``cfg`` is the run's validated config."""

    metric: str = ""
    higher_is_better: bool = True
    has_head_stage: bool = False  # ``head_stage`` trains the head on frozen features before fine-tuning
    auto_size: bool = False  # the loop may shrink ``imgsz`` so that ``min_epochs`` fit the time budget
    find_unused: bool = False  # DDP: some parameters may get no gradient in a step (e.g. per-task heads)

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.mean: tuple[float, ...] = (0.485, 0.456, 0.406)
        self.std: tuple[float, ...] = (0.229, 0.224, 0.225)

    # -- data: called before the run folder exists, so bad data leaves nothing behind ------------
    def load_data(self) -> None:
        """Read, check and split the data (``cfg.data``, ``cfg.val_data``, ``cfg.folds``/``fold``)."""
        raise NotImplementedError

    # ``load_data`` sets ``train_set`` and ``val_set``: sized collections with a ``paths`` list
    train_set: Any = None
    val_set: Any = None

    @property
    def n_train(self) -> int:
        return len(self.train_set)

    @property
    def n_val(self) -> int:
        return len(self.val_set)

    def train_paths(self) -> Sequence[Path]:
        """Training images (the automatic image size reads a sample of their headers)."""
        return self.train_set.paths

    def data_summary(self) -> dict[str, Any]:
        """``RUN/data.json``."""
        return {"train_images": self.n_train, "val_images": self.n_val}

    def check_imgsz(self, imgsz: int) -> None:
        """Raise a one-line error when the model cannot run at ``imgsz``."""

    # -- model and batches -----------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        """The network (with a ``backbone`` attribute); set ``self.mean``/``self.std``."""
        raise NotImplementedError

    def datasets(self, imgsz: int) -> tuple[Dataset, Dataset]:
        """Training and validation datasets at ``imgsz`` (validation items carry their row index)."""
        raise NotImplementedError

    def train_loader(self, dataset: Dataset, rank: int, world: int) -> DataLoader | None:
        """A task's own training loader (e.g. P×K batches); None: the loop's shuffled, sharded one."""
        return None

    def loss_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """One training step's loss and image count; ``batch`` is on the device. The time-budget probe
        times exactly this step."""
        raise NotImplementedError

    def val_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row index [B], outputs [B, ...])`` of a validation batch (``net`` in eval mode)."""
        raise NotImplementedError

    def score(self, outputs: np.ndarray) -> float:
        """The validation metric of the outputs of every validation row, in order."""
        raise NotImplementedError

    def eval_imgsz(self, imgsz: int) -> int:
        """Where fine-tuned weights validate and predict (classifiers: the FixRes test size)."""
        return imgsz

    def final_eval_s(self, infer_s_per_image: float) -> float:
        """Seconds to keep in the budget for ``finish`` (scoring the best weights, writing outputs)."""
        return self.n_val * infer_s_per_image + 5.0

    # -- optional stage before fine-tuning --------------------------------------------------------
    def head_stage(self, net: torch.nn.Module, imgsz: int, device: str, seconds: float | None) -> HeadStage | None:
        """``seconds``: the time it may take (None: no time budget)."""
        return None

    def head_stage_s(self, train_s_per_image: float) -> float:
        """Estimated seconds of the head stage at the current size (its feature pass)."""
        return 0.0

    def head_stage_share(self) -> float:
        """The share of a time budget the head stage takes by design (1: all of it, no fine-tuning after;
        the loop then skips its speed probe). 0: the stage is sized by ``head_stage_s``."""
        return 0.0

    # -- files -----------------------------------------------------------------------------------
    def save_weights(self, path: Path, net: torch.nn.Module, imgsz: int, info: dict[str, Any]) -> None:
        """Write a weights file that ``predict`` loads with ``weights_only=True``."""
        raise NotImplementedError

    def finish(self, files: RunFiles, device: str) -> TrainResult:
        """Score ``files.best`` on validation and write the run's outputs (metrics go in the result;
        the loop adds timing and writes ``metrics.json``)."""
        raise NotImplementedError


def move_to(batch: Any, device: str | torch.device) -> Any:
    """Tensors of a (nested) batch moved to ``device``; other leaves unchanged."""
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch
