"""Lightning callbacks chosen by the config: resume checkpoint, early stopping, EMA, SWA."""
from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint, WeightAveraging

from ..config import RunConfig
from .run_files import RunFiles


class LateSWA(WeightAveraging):
    """Stochastic weight averaging: an equal average of the weights at the end of each epoch from
    ``start_epoch`` on. Validation sees the averaged weights, so ``best.pt`` picks them when better."""

    def __init__(self, start_epoch: int) -> None:
        super().__init__(use_buffers=True)
        self.start_epoch = start_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return epoch_idx is not None and epoch_idx >= self.start_epoch


def build_callbacks(cfg: RunConfig, files: RunFiles, epochs: int) -> list[Any]:
    callbacks: list[Any] = [ModelCheckpoint(dirpath=str(files.weights), filename="last", save_top_k=1, monitor=None,
                                            enable_version_counter=False)]
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(monitor="val_metric", mode="max", patience=cfg.patience))
    if cfg.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    elif cfg.swa:
        callbacks.append(LateSWA(start_epoch=max(0, int(epochs * 0.75) - 1)))
    return callbacks
