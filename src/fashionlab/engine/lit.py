"""The Lightning module for stage 2: full fine-tuning with a lower backbone learning rate."""
from __future__ import annotations

import time
from collections.abc import Callable

import lightning.pytorch as pl
import numpy as np
import torch

from ..config import RunConfig
from ..models.losses import Objective
from ..models.net import ClassifierNet
from .distributed import gather_shards
from .mixing import mix_batch
from .schedules import lr_lambda


class LitClassifier(pl.LightningModule):
    def __init__(self, net: ClassifierNet, cfg: RunConfig, objective: Objective, total_steps: int,
                 steps_per_epoch: int, score: Callable[[list[np.ndarray]], float],
                 on_validated: Callable[[int, float, float, float, float], int | None]) -> None:
        super().__init__()
        self.net, self.cfg, self.objective = net, cfg, objective
        self._rng = np.random.default_rng(cfg.seed)
        self.total_steps, self.steps_per_epoch = max(1, total_steps), max(1, steps_per_epoch)
        self.score, self.on_validated = score, on_validated
        self._val_probs: list[torch.Tensor] = []
        self._val_tasks: list[torch.Tensor] = []
        self._train_losses: list[float] = []
        self._epoch_clock, self._epoch_images = 0.0, 0
        self.train_images_per_s = float("nan")

    def forward(self, images: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        return self.net(images, task_index)

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else images

    def on_train_epoch_start(self) -> None:
        self._epoch_clock, self._epoch_images = time.perf_counter(), 0

    def on_validation_epoch_start(self) -> None:  # runs right after the epoch's last training step
        self.train_images_per_s = self._epoch_images / max(1e-9, time.perf_counter() - self._epoch_clock)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Lightning only notes a SIGTERM; stop after this batch so `kill PID` ends the run cleanly
        # (best.pt and last.ckpt stay usable; `--resume RUN` continues).
        if getattr(self.trainer, "received_sigterm", False):
            self.trainer.should_stop = True

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, (task_index, targets) = batch
        self._epoch_images += len(images)
        images, targets = mix_batch(images, task_index, targets, self.cfg.mixup, self.cfg.cutmix, self.cfg.mix_prob,
                                    self._rng)
        loss = self.objective(self(self._images(images), task_index), targets)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self._train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, (task_index, _) = batch
        self._val_probs.append(self.objective.activate(self(self._images(images), task_index)).float())
        self._val_tasks.append(task_index)

    def _epoch_val_probs(self) -> list[np.ndarray]:
        """The whole validation set's probabilities, in order, on every rank (each rank scored a shard)."""
        probs, tasks = torch.cat(self._val_probs), torch.cat(self._val_tasks)
        if self.trainer.world_size > 1:
            total = len(self.trainer.val_dataloaders.dataset)
            probs, tasks = gather_shards(self, probs, total), gather_shards(self, tasks, total)
        sizes = self.net.head.sizes
        return [p[: sizes[t]] for p, t in zip(probs.cpu().numpy(), tasks.tolist())]

    def _reduced(self, value: float, op: str) -> float:
        if self.trainer.world_size == 1:
            return value
        return float(self.trainer.strategy.reduce(torch.tensor(value, device=self.device), reduce_op=op))

    def on_validation_epoch_end(self) -> None:
        if not self._val_probs:
            return
        metric = float(self.score(self._epoch_val_probs()))
        # equal-sized shards: the mean of the ranks' mean losses is the loss of the global batch
        train_loss = self._reduced(float(np.mean(self._train_losses)) if self._train_losses else float("nan"), "mean")
        images_per_s = self._reduced(self.train_images_per_s, "sum")
        self._val_probs, self._val_tasks, self._train_losses = [], [], []
        self.log("val_metric", metric, prog_bar=True, sync_dist=self.trainer.world_size > 1)  # equal on all ranks
        if self.trainer.sanity_checking:
            return
        new_total = None
        if self.trainer.is_global_zero:
            wall = time.perf_counter() - self._epoch_clock
            new_total = self.on_validated(self.current_epoch + 1, train_loss, metric, images_per_s, wall)
        if self.trainer.world_size > 1:  # a re-plan must reach every rank, or they stop at different epochs
            new_total = self.trainer.strategy.broadcast(new_total, src=0)
        if new_total is not None:
            self.set_total_epochs(new_total)

    def set_total_epochs(self, epochs: int) -> None:
        """Re-plan mid-run (time budget): the LR schedule stretches or shrinks to the new length."""
        self.trainer.fit_loop.max_epochs = epochs
        self.total_steps = max(1, epochs * self.steps_per_epoch)

    def configure_optimizers(self):
        cfg = self.cfg
        groups = [
            {"params": list(self.net.backbone.parameters()), "lr": cfg.lr * cfg.backbone_lr_mult},
            {"params": list(self.net.head.parameters()), "lr": cfg.lr},
        ]
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
        else:
            optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        warmup = int(cfg.warmup_epochs * self.steps_per_epoch)
        pct = min(0.5, max(0.05, warmup / self.total_steps)) if warmup else 0.25
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_lambda(
            cfg.schedule, self.total_steps, warmup, cfg.step_size * self.steps_per_epoch, pct_start=pct)(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
