"""The keypoints task's training hooks: FashionAI CSV records, heatmap/regression network, masked loss,
decoded validation coordinates scored by NE (lower is better).

The run folder is the engine's: config.yaml, data.json, history.csv, state.json, weights/best.pt
(lowest validation NE so far), weights/last.ckpt, metrics.json, plots/curves.png,
plots/keypoints_overlay.png, predictions/val.csv and predictions/val_truth.csv (so
``fashionlab evaluate keypoints --pred ... --truth RUN/predictions/val_truth.csv`` re-scores the run).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.images import check_images
from ...data.labelled import stratified_kfold, stratified_split
from ...engine.hooks import FitHooks, TrainResult
from ...engine.run_files import RunFiles
from ...errors import FashionlabError
from .augment import KeypointAugment
from .config import KeypointsConfig
from .dataset import KeypointDataset, KeypointRecords, read_records, write_truth_csv
from .features import create_feature_backbone
from .loss_decode import decode, keypoint_loss, to_image_coords
from .metric import normalized_error, write_keypoints_csv
from .model import build_net, load_keypoints, save_keypoints, spec_from_config
from .plots import plot_overlay
from .predict import as_prediction_set, clip_to_images, predict_records

log = logging.getLogger(__name__)


def split(records: KeypointRecords, cfg: KeypointsConfig) -> tuple[KeypointRecords, KeypointRecords]:
    """Train/val by category: fold ``cfg.fold`` of ``cfg.folds``, else a ``val_fraction`` share (seed: split_seed)."""
    if cfg.folds > 1:
        train, val = stratified_kfold(records.categories, cfg.folds, cfg.fold, cfg.data_seed)
    else:
        train, val = stratified_split(records.categories, cfg.val_fraction, cfg.data_seed)
    return records.subset(train), records.subset(val)


class KeypointsHooks(FitHooks):
    metric = "ne"
    higher_is_better = False

    def __init__(self, cfg: KeypointsConfig) -> None:
        super().__init__(cfg)

    def load_data(self) -> None:
        cfg = self.cfg
        records = read_records(Path(cfg.data), cfg.categories, cfg.skip_bad)
        if cfg.val_data and cfg.folds <= 1:
            train, val = records, read_records(Path(cfg.val_data), cfg.categories, cfg.skip_bad)
        else:
            train, val = split(records, cfg)
        self.train_set = train.subset(check_images(train.paths, cfg.skip_bad))
        self.val_set = val.subset(check_images(val.paths, cfg.skip_bad))
        if not len(self.train_set):
            raise FashionlabError(f"{cfg.data}: no training rows left")
        if not len(self.val_set):
            raise FashionlabError(f"{cfg.data}: no validation rows (set val_fraction > 0 or --val-data)")
        self.truth = self.val_set.truth()
        normalized_error(self.truth, self.truth)  # raises, naming the file, when nothing in val can be scored

    def data_summary(self) -> dict[str, Any]:
        def points(rec: KeypointRecords) -> dict[str, int]:
            return {"visible": int((rec.v == 1).sum()), "occluded": int((rec.v == 0).sum())}

        train, val = self.train_set, self.val_set
        return {"train_images": len(train), "val_images": len(val),
                "train_counts": dict(sorted(Counter(train.categories).items())),
                "val_counts": dict(sorted(Counter(val.categories).items())),
                "train_points": points(train), "val_points": points(val)}

    def check_imgsz(self, imgsz: int) -> None:
        if imgsz % self.cfg.output_stride:
            raise FashionlabError(f"imgsz {imgsz} must be a multiple of output_stride {self.cfg.output_stride}")

    def build_model(self) -> torch.nn.Module:
        cfg = self.cfg
        backbone = create_feature_backbone(cfg.model, cfg.pretrained)
        log.info("backbone %s (feature maps), weights: %s", cfg.model, backbone.weights)
        self.spec = spec_from_config(cfg)
        net = build_net(backbone, self.spec)
        if cfg.channels_last:
            net.to(memory_format=torch.channels_last)
        self.mean, self.std = backbone.mean, backbone.std
        return net

    def datasets(self, imgsz: int):
        cfg = self.cfg
        self.spec = spec_from_config(cfg)  # imgsz is part of the spec
        augment = KeypointAugment(cfg.rotate, cfg.affine_scale, cfg.shift, cfg.hflip, cfg.blur, cfg.noise,
                                  cfg.color_jitter, seed=cfg.seed)
        train_ds = KeypointDataset(self.train_set, imgsz, self.mean, self.std, augment, cfg.train_occluded,
                                   crop_prob=0.5 if cfg.two_stage else 0.0, crop_margin=cfg.crop_margin)
        return train_ds, KeypointDataset(self.val_set, imgsz, self.mean, self.std)

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else images

    def loss_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        images, target = batch
        cfg = self.cfg
        return keypoint_loss(net(self._images(images)), target, cfg.head, cfg.imgsz, cfg.output_stride, cfg.sigma,
                             cfg.regression_loss), len(images)

    def val_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, target = batch
        cfg = self.cfg
        xy = decode(net(self._images(images)), cfg.head, cfg.imgsz, cfg.output_stride, cfg.decode, cfg.decode_radius)
        return target["index"], to_image_coords(xy, target["box"], cfg.imgsz)

    def score(self, outputs: np.ndarray) -> float:
        coords = clip_to_images(outputs.astype(np.float64), self.val_set.sizes)
        return float(normalized_error(as_prediction_set(self.val_set, coords), self.truth)["ne"])

    def final_eval_s(self, infer_s_per_image: float) -> float:
        """``finish`` predicts val several times: as configured, flip-test (2 views), the other decoder."""
        cfg = self.cfg
        passes = (4 if cfg.head == "heatmap" else 3) * (2 if cfg.two_stage else 1)
        return self.n_val * passes * infer_s_per_image + 5.0

    def save_weights(self, path: Path, net: torch.nn.Module, imgsz: int, info: dict[str, Any]) -> None:
        save_keypoints(path, net, self.spec, self.mean, self.std, info)

    def finish(self, files: RunFiles, device: str) -> TrainResult:
        """Score the best weights on validation (as configured, plus flip-test and the other decoder);
        write the val prediction/truth CSVs and the overlay plot."""
        cfg, val_set = self.cfg, self.val_set
        model = load_keypoints(files.best, device)

        def evaluate(**kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
            coords = predict_records(model, val_set, batch=cfg.batch * 2, workers=cfg.workers, device=device, **kwargs)
            return coords, normalized_error(as_prediction_set(val_set, coords), self.truth)

        coords, scores = evaluate()
        metrics: dict[str, Any] = {**scores, "ne_flip": evaluate(tta="flip")[1]["ne"]}
        if cfg.head == "heatmap":
            other = "argmax" if cfg.decode == "soft_argmax" else "soft_argmax"
            metrics[f"ne_{other}"] = evaluate(method=other)[1]["ne"]
        if cfg.two_stage:
            metrics["ne_single_stage"] = evaluate(two_stage=False)[1]["ne"]
        metrics["best"] = model.info
        write_keypoints_csv(files.predictions / "val.csv", val_set.ids, val_set.categories, coords)
        write_truth_csv(files.predictions / "val_truth.csv", val_set)
        plot_overlay(val_set, coords, files.plots / "keypoints_overlay.png")
        return TrainResult(files.run, files.best, metrics, val_set, coords)
