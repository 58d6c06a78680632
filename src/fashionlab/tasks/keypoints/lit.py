"""The Lightning module for keypoints: masked heatmap/regression loss, validation NE per epoch.

Mirrors ``engine.lit.LitClassifier`` (same optimiser groups, schedules and re-planning hook); the
validation metric is the normalised error, where lower is better.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import lightning.pytorch as pl
import numpy as np
import torch

from ...engine.schedules import lr_lambda
from .config import KeypointsConfig
from .loss_decode import decode, keypoint_loss, to_image_coords
from .model import KeypointNet


class LitKeypoints(pl.LightningModule):
    """``score(coords)`` gets index coordinates [N_val, 24, 2] in val-record order and returns NE;
    ``on_validated(epoch, train_loss, ne, images_per_s, wall_s)`` may return a new epoch total."""

    def __init__(self, net: KeypointNet, cfg: KeypointsConfig, total_steps: int, steps_per_epoch: int,
                 n_val: int, score: Callable[[np.ndarray], float],
                 on_validated: Callable[[int, float, float, float, float], int | None]) -> None:
        super().__init__()
        self.net, self.cfg = net, cfg
        self.total_steps, self.steps_per_epoch = max(1, total_steps), max(1, steps_per_epoch)
        self.score, self.on_validated = score, on_validated
        self._val_coords = np.zeros((n_val, 24, 2))
        self._train_losses: list[float] = []
        self._epoch_clock, self._epoch_images = 0.0, 0
        self.train_images_per_s = float("nan")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def on_train_epoch_start(self) -> None:
        self._epoch_clock, self._epoch_images = time.perf_counter(), 0

    def on_validation_epoch_start(self) -> None:  # runs right after the epoch's last training step
        self.train_images_per_s = self._epoch_images / max(1e-9, time.perf_counter() - self._epoch_clock)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, target = batch
        self._epoch_images += len(images)
        cfg = self.cfg
        loss = keypoint_loss(self(images), target, cfg.head, cfg.imgsz, cfg.output_stride, cfg.sigma,
                             cfg.regression_loss)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self._train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, target = batch
        cfg = self.cfg
        xy = decode(self(images), cfg.head, cfg.imgsz, cfg.output_stride, cfg.decode, cfg.decode_radius)
        coords = to_image_coords(xy, target["box"], cfg.imgsz).cpu().numpy()
        self._val_coords[target["index"].cpu().numpy()] = coords

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not len(self._val_coords):
            return
        ne = float(self.score(self._val_coords.copy()))
        train_loss = float(np.mean(self._train_losses)) if self._train_losses else float("nan")
        self._train_losses = []
        self.log("val_metric", ne, prog_bar=True)
        if self.trainer.is_global_zero:
            wall = time.perf_counter() - self._epoch_clock
            new_total = self.on_validated(self.current_epoch + 1, train_loss, ne, self.train_images_per_s, wall)
            if new_total is not None:
                self.set_total_epochs(new_total)

    def set_total_epochs(self, epochs: int) -> None:
        """Re-plan mid-run (time budget): the LR schedule stretches or shrinks to the new length."""
        self.trainer.fit_loop.max_epochs = epochs
        self.total_steps = max(1, epochs * self.steps_per_epoch)

    def configure_optimizers(self):
        cfg = self.cfg
        groups = [
            {"params": [p for p in self.net.backbone.parameters() if p.requires_grad],
             "lr": cfg.lr * cfg.backbone_lr_mult},
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
