"""The classification family's training hooks (attributes, classify, styles): one or several softmax
heads (or sigmoid outputs) on a timm backbone, an optional head stage on frozen features, the
automatic image size, and the FixRes test size for validation and prediction."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.images import ImageDataset, check_images
from ...data.labelled import LabelledSet
from ...data.transforms import eval_transform, train_transform
from ...engine.checkpoint import load_weights, save_weights
from ...engine.head_stage import train_head
from ...engine.tail_stage import MAX_CACHE_BYTES, cache_bytes, supports_tail, train_tail
from ...engine.hooks import FitHooks, HeadStage, TrainResult
from ...engine.image_size import test_size
from ...engine.mixing import mix_batch
from ...engine.predictor import predict_probs
from ...engine.run_files import RunFiles
from ...errors import FashionlabError
from ...models.backbone import create_backbone
from ...models.losses import Objective
from ...models.net import ClassifierNet
from .config import ClassifierConfig

log = logging.getLogger(__name__)
# options of the full fine-tune alone (the tail stage has its own tail_* options and honours the rest:
# loss, label_smoothing, mixup, cutmix, mix_prob, hflip, weight_decay, batch)
FINETUNE_ONLY = ("drop_rate", "imgsz", "test_imgsz", "epochs", "optimizer", "lr", "backbone_lr_mult", "momentum", "schedule",
                 "step_size", "stages", "frozen_fraction", "stage_lr_decay", "warmup_epochs", "ema_decay", "swa",
                 "save_top_k", "patience", "val_every", "scale_min", "color_jitter", "freeze_bn", "min_epochs")


def _targets(data: LabelledSet) -> list[tuple[int, np.ndarray]]:
    return list(zip(data.task_index.tolist(), data.targets))


class ClassifierHooks(FitHooks):
    has_head_stage = True
    auto_size = True

    def __init__(self, task, cfg: ClassifierConfig) -> None:
        super().__init__(cfg)
        self.task = task
        self.metric, self.higher_is_better = task.metric, task.higher_is_better
        self.rng = np.random.default_rng(cfg.seed)  # mixup/CutMix draws
        # as the user gave them: the engine later fills in imgsz (auto size) on the same config object
        self._given = {name: getattr(cfg, name) for name in FINETUNE_ONLY}
        self.objective: Objective | None = None

    # -- data ------------------------------------------------------------------------------------
    def load_data(self) -> None:
        cfg = self.cfg
        train_set, val_set, self.meta = self.task.load_train(cfg)
        self.train_set = train_set.subset(check_images(train_set.paths, cfg.skip_bad))
        self.val_set = val_set.subset(check_images(val_set.paths, cfg.skip_bad))
        if len(self.train_set) == 0:
            raise FashionlabError(f"{cfg.data}: no training images left")
        self.find_unused = len(self.meta.head_sizes) > 1

    def data_summary(self) -> dict[str, Any]:
        meta = self.meta

        def counts(data: LabelledSet) -> dict[str, int]:
            names = [f"{meta.tasks[t]}:{meta.classes[t][int(y.argmax())]}" if len(meta.tasks) > 1
                     else meta.classes[0][int(y.argmax())] for t, y in zip(data.task_index, data.targets)]
            return dict(sorted(Counter(names).items()))

        summary = {"train_images": self.n_train, "val_images": self.n_val, "tasks": meta.tasks,
                   "train_counts": counts(self.train_set), "val_counts": counts(self.val_set)}
        return {**summary, **self.task.data_summary_extra()}

    # -- model and batches -----------------------------------------------------------------------
    def build_model(self) -> ClassifierNet:
        cfg = self.cfg
        backbone = create_backbone(cfg.model, cfg.pretrained, cfg.drop_rate)
        log.info("backbone %s, weights: %s", cfg.model, backbone.weights)
        net = ClassifierNet(backbone.model, backbone.num_features, self.meta.head_sizes, cfg.head, cfg.head_hidden)
        self.objective = Objective.from_config(cfg, self.task.multilabel, self.task.cost_matrix(cfg, self.meta))
        if cfg.channels_last:  # measured on 2 CPU cores: 37.5 vs 21.5 train img/s for efficientnet_lite0 at 112 px
            net.to(memory_format=torch.channels_last)
        self.mean, self.std = backbone.mean, backbone.std
        self._net = net
        return net

    def eval_imgsz(self, imgsz: int) -> int:
        """Fine-tuned weights validate and predict at the train crops' scale (FixRes)."""
        return self.cfg.test_imgsz or test_size(imgsz, self.cfg.scale_min)

    def datasets(self, imgsz: int):
        cfg = self.cfg
        train_tf = train_transform(imgsz, self.mean, self.std, cfg.scale_min, cfg.hflip, cfg.color_jitter)
        if getattr(cfg, "recolour", 0.0) > 0:  # garment recolouring (styles option), before the usual transform
            from ...data.recolour import Recolour, RecolourDataset

            recolour = Recolour(cfg.recolour, mask_dir=cfg.recolour_masks or None, seed=cfg.seed)
            train_ds = RecolourDataset(self.train_set.paths, _targets(self.train_set), train_tf, recolour)
        else:
            train_ds = ImageDataset(self.train_set.paths, _targets(self.train_set), train_tf)
        rows = list(zip(self.val_set.task_index.tolist(), range(self.n_val)))
        val_ds = ImageDataset(self.val_set.paths, rows, eval_transform(self.eval_imgsz(imgsz), self.mean, self.std))
        return train_ds, val_ds

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else images

    def loss_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        images, (task_index, targets) = batch
        cfg = self.cfg
        images, targets = mix_batch(images, task_index, targets, cfg.mixup, cfg.cutmix, cfg.mix_prob, self.rng)
        return self.objective(net(self._images(images), task_index), targets), len(images)

    def val_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, (task_index, index) = batch
        return index, self.objective.activate(net(self._images(images), task_index))

    def probs_of(self, outputs: np.ndarray) -> list[np.ndarray]:
        sizes = self.meta.head_sizes
        return [row[: sizes[t]] for row, t in zip(outputs, self.val_set.task_index.tolist())]

    def score(self, outputs: np.ndarray) -> float:
        return float(self.task.score(self.probs_of(outputs), self.val_set, self.meta)[self.metric])

    # -- first stage: the tail on cached maps, or the heads on cached pooled features --------------
    def _first_stage(self, net: torch.nn.Module | None = None) -> str:
        """The stage that will run: the configured one, or 'head' when the tail cannot (backbone, memory)."""
        cfg = self.cfg
        if cfg.first_stage != "tail":
            return cfg.first_stage
        if not hasattr(self, "_tail_ok"):
            net = net or self._net
            why = supports_tail(net, cfg.tail_from)
            if not why and cache_bytes(net, cfg.tail_from, cfg.tail_imgsz, self.n_train,
                                       2 + cfg.tail_crops) > MAX_CACHE_BYTES:
                why = f"{self.n_train} photos' maps at {cfg.tail_imgsz} px do not fit in memory"
            if why:
                log.warning("first stage: the linear head instead of the tail (%s)", why)
            self._tail_ok = not why
        return "tail" if self._tail_ok else "head"

    def head_stage_share(self) -> float:
        return self.cfg.tail_share if self._first_stage() == "tail" else 0.0

    def head_stage_s(self, train_s_per_image: float) -> float:
        if self._first_stage() == "tail":
            return self.cfg.time_budget * self.cfg.tail_share
        if self._first_stage() == "head" and self.cfg.head_epochs > 0:
            return (self.n_train + self.n_val) * train_s_per_image / 3
        return 0.0

    def _warn_unused_finetune_options(self) -> None:
        """One line naming the options set away from their defaults that only the fine-tune stage reads,
        when the tail stage takes the whole time budget (no fine-tune stage follows)."""
        cfg = self.cfg
        if cfg.tail_share < 1:
            return
        fields = type(cfg).model_fields
        unused = [name for name, value in self._given.items() if value != fields[name].default]
        if unused:
            log.warning("%s: only the fine-tune stage reads %s, and this run has none (the tail stage takes the "
                        "whole time budget); set tail_share below 1 or first_stage=none to use %s",
                        ", ".join(unused), "it" if len(unused) == 1 else "them", "it" if len(unused) == 1 else "them")

    def _score_probs(self, probs: list[np.ndarray]) -> float:
        return float(self.task.score(probs, self.val_set, self.meta)[self.metric])

    def head_stage(self, net: torch.nn.Module, imgsz: int, device: str, seconds: float | None) -> HeadStage | None:
        cfg = self.cfg
        stage = self._first_stage(net)
        if stage == "tail":
            if seconds is not None:  # keep time to write the run's files afterwards (scoring: train_tail reserves it)
                seconds -= 5.0
                self._warn_unused_finetune_options()
            mixing = cfg.mixup > 0 or cfg.cutmix > 0

            def mix(maps: torch.Tensor, task_index: torch.Tensor, targets: torch.Tensor):
                return mix_batch(maps, task_index, targets, cfg.mixup, cfg.cutmix, cfg.mix_prob, self.rng)

            tail = train_tail(net, self.train_set, self.val_set, self._score_probs, self.objective, cfg.tail_imgsz,
                              self.mean, self.std, cfg.tail_from, seconds, cfg.tail_epochs, cfg.tail_lr,
                              max(cfg.weight_decay, 0.01), cfg.tail_ema, cfg.batch, cfg.workers, device, cfg.seed,
                              cfg.tail_probe_epochs, cfg.head_lr, cfg.hflip, mix if mixing else None,
                              cfg.tail_drop_rate, cfg.tail_crops, cfg.tail_crop_scale)
            return HeadStage(tail.best_metric, tail.best_epoch, tail.history, tail.infer_s_per_image, tail.imgsz, "tail")
        if stage != "head" or cfg.head_epochs <= 0:
            return None

        head = train_head(net, self.train_set, self.val_set, self._score_probs, imgsz, self.mean, self.std, cfg.head_epochs,
                          cfg.head_lr, cfg.weight_decay, self.objective, cfg.batch * 2, cfg.workers, device, cfg.seed)
        return HeadStage(head.best_metric, head.best_epoch, head.history, head.infer_s_per_image)

    # -- files -----------------------------------------------------------------------------------
    def save_weights(self, path: Path, net: torch.nn.Module, imgsz: int, info: dict[str, Any]) -> None:
        save_weights(path, net, self.task.name, self.meta, self.cfg.model, imgsz, self.mean, self.std, info,
                     self.task.multilabel)

    def finish(self, files: RunFiles, device: str) -> TrainResult:
        """Score the best checkpoint on validation; write predictions, probabilities and truth."""
        cfg, task, meta, val_set = self.cfg, self.task, self.meta, self.val_set
        loaded = load_weights(files.best, device)
        metrics: dict[str, Any] = {"best": loaded.info}
        probs: list[np.ndarray] = []
        if len(val_set):
            probs = predict_probs(loaded.net, val_set, loaded.imgsz, loaded.mean, loaded.std, "none",
                                  cfg.batch * 2, cfg.workers, device, task.multilabel)
            metrics.update(task.score(probs, val_set, meta))
            task.write_predictions(files.predictions / "val.csv", val_set, probs, meta)
            task.write_probabilities(files.predictions / "val_probs.csv", val_set, probs, meta)
            task.write_truth(files.predictions / "val_truth.csv", val_set, meta)
        if meta.tasks == ["class"]:
            metrics["classes"] = meta.classes[0]
        return TrainResult(files.run, files.best, metrics, val_set, probs, meta)
