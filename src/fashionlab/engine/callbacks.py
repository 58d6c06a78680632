"""Lightning callbacks chosen by the config (resume checkpoint, early stopping, EMA, SWA, staged
unfreezing), the per-epoch scoring callback, and the one Trainer builder."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging, ModelCheckpoint, WeightAveraging

from ..config import RunConfig
from .checkpoint_io import AtomicCheckpointIO
from .hooks import FitHooks
from .run_files import RunFiles

# on_validated(epoch, train_loss, metric, images_per_s, wall_s) -> a new epoch total, or None
OnValidated = Callable[[int, float, float, float, float], "int | None"]


class EpochEnd(Callback):
    """Scores each validation epoch with the task's ``score`` and hands it to ``on_validated`` (best and
    top-k checkpoints, history, re-plan). It must come before the weight-averaging callbacks: Lightning
    calls callbacks in order, and theirs swaps the raw weights back in ``on_validation_epoch_end`` —
    placed first, this one scores and saves the averaged weights that were validated."""

    def __init__(self, hooks: FitHooks, on_validated: OnValidated) -> None:
        self.hooks, self.on_validated = hooks, on_validated

    def _reduced(self, trainer, module, value: float, op: str) -> float:
        if trainer.world_size == 1:
            return value
        return float(trainer.strategy.reduce(torch.tensor(value, device=module.device), reduce_op=op))

    def on_train_epoch_start(self, trainer, module) -> None:
        self._validated = False

    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        outputs = module.collected_outputs(self.hooks.n_val)
        if outputs is not None:  # every rank holds every row: the same value everywhere
            self._validated = True
            self._epoch_done(trainer, module, float(self.hooks.score(outputs)))

    def on_train_epoch_end(self, trainer, module) -> None:
        if not self._validated:  # no validation set, or not a validation epoch (val_every): done here
            module.train_images_per_s = module.epoch_images / max(1e-9, time.perf_counter() - module.epoch_clock)
            self._epoch_done(trainer, module, float("nan"))

    def _epoch_done(self, trainer, module, metric: float) -> None:
        losses = module.train_losses
        # equal-sized shards: the mean of the ranks' mean losses is the loss of the global batch
        train_loss = self._reduced(trainer, module, float(np.mean(losses)) if losses else float("nan"), "mean")
        images_per_s = self._reduced(trainer, module, module.train_images_per_s, "sum")
        module.train_losses = []
        if metric == metric:
            module.log("val_metric", metric, prog_bar=True, sync_dist=trainer.world_size > 1)
        new_total = None
        if trainer.is_global_zero:
            wall = time.perf_counter() - module.epoch_clock
            new_total = self.on_validated(trainer.current_epoch + 1, train_loss, metric, images_per_s, wall)
        if trainer.world_size > 1:  # a re-plan must reach every rank, or they stop at different epochs
            new_total = trainer.strategy.broadcast(new_total, src=0)
        if new_total is not None:
            module.set_total_epochs(new_total)


class ValidationCadence(Callback):
    """Validate every ``every`` epochs and always on the last planned epoch (the plan may change)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        due = epoch % self.every == 0 or epoch >= trainer.fit_loop.max_epochs
        trainer.check_val_every_n_epoch = 1 if due else 10**9


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


def build_callbacks(cfg: RunConfig, files: RunFiles, epochs: int, epoch_end: EpochEnd) -> list[Any]:
    """``epoch_end`` first: it must score before the averaging callbacks swap weights back."""
    callbacks: list[Any] = [epoch_end, ModelCheckpoint(dirpath=str(files.weights), filename="last", save_top_k=1,
                                                       monitor=None, enable_version_counter=False)]
    if cfg.patience > 0:
        mode = "max" if epoch_end.hooks.higher_is_better else "min"
        callbacks.append(EarlyStopping(monitor="val_metric", mode=mode, patience=cfg.patience))
    if cfg.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    elif cfg.swa:
        callbacks.append(LateSWA(start_epoch=max(0, int(epochs * 0.75) - 1)))
    if cfg.val_every > 1:
        callbacks.append(ValidationCadence(cfg.val_every))
    if cfg.stages > 1 or cfg.frozen_fraction > 0:
        callbacks.append(StagedUnfreeze(cfg.stages, epochs, cfg.frozen_fraction, cfg.stage_lr_decay))
    return callbacks


def build_trainer(cfg: RunConfig, files: RunFiles, epochs: int, device: str, callbacks: list[Any],
                  remaining_s: float, find_unused: bool = True, steps_per_epoch: int = 5):
    """The one Lightning Trainer: GPU AMP, CSV (+TensorBoard) logs, and ``max_time`` as the hard stop of
    a time budget (a resumed run's budget counts from the resuming command's start).

    ``cfg.devices * cfg.nodes > 1``: DDP (NCCL on GPUs, gloo on CPU), SyncBatchNorm on GPUs; the loop
    shards its data itself (engine/distributed.py), so Lightning must not replace the samplers.
    ``find_unused``: some parameters may get no gradient in a step (per-task heads, frozen stages)."""
    import logging
    from datetime import timedelta

    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    # Lightning sets its loggers to INFO when imported (hardware lines, a "litlogger" tip, "fit stopped");
    # the loop prints one line per epoch instead. Warnings still show.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)

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
        max_time=timedelta(seconds=max(1.0, remaining_s)) if cfg.time_budget > 0 else None,
        num_sanity_val_steps=0, enable_model_summary=False, log_every_n_steps=max(1, min(5, steps_per_epoch)),
        default_root_dir=str(files.run), enable_progress_bar=False,  # one line per epoch instead (engine/fit.py)
        plugins=[AtomicCheckpointIO()],  # last.ckpt written beside itself and renamed (issue 18)
    )
