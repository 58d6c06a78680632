"""Lightning callbacks chosen by the config: resume checkpoint, early stopping, EMA, SWA."""
from __future__ import annotations

from typing import Any

import torch

from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging, ModelCheckpoint, WeightAveraging

from ..config import RunConfig
from .checkpoint_io import AtomicCheckpointIO
from .run_files import RunFiles


class LateSWA(WeightAveraging):
    """Stochastic weight averaging: an equal average of the weights at the end of each epoch from
    ``start_epoch`` on. Validation sees the averaged weights, so ``best.pt`` picks them when better."""

    def __init__(self, start_epoch: int) -> None:
        super().__init__(use_buffers=True)
        self.start_epoch = start_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return epoch_idx is not None and epoch_idx >= self.start_epoch


def unfreeze_last(backbone: torch.nn.Module, share: float) -> None:
    """Train only the last ``share`` of the backbone's parameter tensors; freeze the earlier ones."""
    params = list(backbone.parameters())
    trainable = int(len(params) * share)
    for i, param in enumerate(params):
        param.requires_grad_(i >= len(params) - trainable)


class StagedUnfreeze(Callback):
    """Staged fine-tuning: the epochs are split into ``stages``; stage s trains the last s/N of the
    backbone's (unfrozen share of) parameter tensors, and the backbone LR is multiplied by
    ``lr_decay`` at every new stage. The earliest ``frozen_fraction`` of tensors stays frozen."""

    def __init__(self, stages: int, epochs: int, frozen_fraction: float, lr_decay: float) -> None:
        self.stages, self.epochs, self.frozen_fraction, self.lr_decay = stages, max(1, epochs), frozen_fraction, lr_decay
        self._base: list[float] | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        stage = min(self.stages, 1 + trainer.current_epoch * self.stages // self.epochs)
        unfreeze_last(pl_module.net.backbone, (1 - self.frozen_fraction) * stage / self.stages)
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        if self._base is None:
            self._base = list(scheduler.base_lrs)
        scheduler.base_lrs[0] = self._base[0] * self.lr_decay ** (stage - 1)  # group 0 = backbone


def build_callbacks(cfg: RunConfig, files: RunFiles, epochs: int) -> list[Any]:
    callbacks: list[Any] = [ModelCheckpoint(dirpath=str(files.weights), filename="last", save_top_k=1, monitor=None,
                                            enable_version_counter=False)]
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(monitor="val_metric", mode="max", patience=cfg.patience))
    if cfg.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    elif cfg.swa:
        callbacks.append(LateSWA(start_epoch=max(0, int(epochs * 0.75) - 1)))
    if cfg.stages > 1 or cfg.frozen_fraction > 0:
        callbacks.append(StagedUnfreeze(cfg.stages, epochs, cfg.frozen_fraction, cfg.stage_lr_decay))
    return callbacks


def build_trainer(cfg: RunConfig, files: RunFiles, epochs: int, device: str, callbacks: list[Any],
                  remaining_s: float, resuming: bool, find_unused: bool = True):
    """The one Lightning Trainer every training loop uses: GPU AMP, CSV (+TensorBoard) logs, and
    ``max_time`` as the hard stop of a time budget (not when resuming: the plan is already set).

    ``cfg.devices * cfg.nodes > 1``: DDP (NCCL on GPUs, gloo on CPU), SyncBatchNorm on GPUs; the loop
    shards its data itself (engine/distributed.py), so Lightning must not replace the samplers.
    ``find_unused``: some parameters may get no gradient in a step (per-task heads, frozen stages)."""
    from datetime import timedelta

    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    use_gpu = device.startswith("cuda")
    world = cfg.devices * cfg.nodes
    strategy: Any = "auto"
    if world > 1:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(find_unused_parameters=find_unused)
    loggers: list[Any] = [CSVLogger(str(files.run), name="logs", version="")]
    if cfg.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(files.run), name="tensorboard", version=""))
    return pl.Trainer(
        max_epochs=epochs, accelerator="gpu" if use_gpu else "cpu", devices=cfg.devices, num_nodes=cfg.nodes,
        strategy=strategy, sync_batchnorm=world > 1 and use_gpu and not cfg.freeze_bn, use_distributed_sampler=False,
        precision="16-mixed" if use_gpu and cfg.amp else "32-true", logger=loggers, callbacks=callbacks,
        max_time=timedelta(seconds=max(1.0, remaining_s)) if cfg.time_budget > 0 and not resuming else None,
        num_sanity_val_steps=0, enable_model_summary=False, log_every_n_steps=5, default_root_dir=str(files.run),
        plugins=[AtomicCheckpointIO()],  # last.ckpt written beside itself and renamed (issue 18)
    )
