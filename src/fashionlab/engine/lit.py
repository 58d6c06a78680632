"""The one LightningModule: a task's training step and validation outputs, the shared optimiser.

Scoring, checkpoints and re-planning happen in ``callbacks.EpochEnd``, which Lightning calls before
the weight-averaging callbacks swap the raw weights back: what is scored is what is saved.
"""
from __future__ import annotations

import time

import lightning.pytorch as pl
import numpy as np
import torch

from .distributed import gather_shards
from .hooks import FitHooks
from .schedules import lr_lambda


class LitTask(pl.LightningModule):
    def __init__(self, net: torch.nn.Module, hooks: FitHooks, total_steps: int, steps_per_epoch: int) -> None:
        super().__init__()
        self.net, self.hooks, self.cfg = net, hooks, hooks.cfg
        self.total_steps, self.steps_per_epoch = max(1, total_steps), max(1, steps_per_epoch)
        self._val_index: list[torch.Tensor] = []
        self._val_outputs: list[torch.Tensor] = []
        self.train_losses: list[float] = []
        self.epoch_clock, self.epoch_images = 0.0, 0
        self.train_images_per_s = float("nan")

    def forward(self, *args):
        return self.net(*args)

    def on_train_epoch_start(self) -> None:
        self.epoch_clock, self.epoch_images = time.perf_counter(), 0

    def on_validation_epoch_start(self) -> None:  # runs right after the epoch's last training step
        self.train_images_per_s = self.epoch_images / max(1e-9, time.perf_counter() - self.epoch_clock)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Lightning only notes a SIGTERM; stop after this batch so `kill PID` ends the run cleanly
        # (best.pt and last.ckpt stay usable; `--resume RUN` continues).
        if getattr(self.trainer, "received_sigterm", False):
            self.trainer.should_stop = True

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, n_images = self.hooks.loss_step(self.net, batch)
        self.epoch_images += n_images
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        index, outputs = self.hooks.val_step(self.net, batch)
        self._val_index.append(index.detach().long())
        self._val_outputs.append(outputs.detach().float())

    def collected_outputs(self, n_val: int) -> np.ndarray | None:
        """This epoch's validation outputs of every rank, as one array in row order; None if none."""
        if not self._val_outputs:
            return None
        index, outputs = torch.cat(self._val_index), torch.cat(self._val_outputs)
        self._val_index, self._val_outputs = [], []
        if self.trainer.world_size > 1:  # equal-length shards (the sampler pads): gather every rank's rows
            index, outputs = gather_shards(self, index, len(index) * self.trainer.world_size), \
                gather_shards(self, outputs, len(outputs) * self.trainer.world_size)
        out = np.zeros((n_val, *outputs.shape[1:]), dtype=np.float32)
        out[index.cpu().numpy()] = outputs.cpu().numpy()
        return out

    def set_total_epochs(self, epochs: int) -> None:
        """Re-plan mid-run (time budget): the LR schedule stretches or shrinks to the new length."""
        self.trainer.fit_loop.max_epochs = epochs
        self.total_steps = max(1, epochs * self.steps_per_epoch)

    def configure_optimizers(self):
        cfg = self.cfg
        backbone = list(self.net.backbone.parameters())
        in_backbone = {id(p) for p in backbone}
        groups = [  # group 0 = backbone (staged unfreezing scales its LR)
            {"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult},
            {"params": [p for p in self.net.parameters() if id(p) not in in_backbone], "lr": cfg.lr},
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
