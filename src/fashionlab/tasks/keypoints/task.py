"""keypoints: FashionAI garment keypoints (24 named points, five categories), scored by normalised error.

``fashionlab train keypoints --data DIR_OR_CSV --out RUN`` and ``fashionlab predict keypoints
--weights RUN/weights/best.pt --source DIR_OR_CSV --out PRED.csv [--tta flip]`` reach this task
through ``Task.fit`` and ``Task.predict_files``. The folder, one idea per module:

config.py       KeypointsConfig (head, sigma, output_stride, train_occluded, categories, two_stage, ...)
dataset.py      CSV/folder readers with line-numbered errors, stratified split, the torch dataset
augment.py      coordinate conventions, affine/flip with left/right name swapping, crop boxes
features.py     timm features_only backbone with the offline ImageNet weights
model.py        FPN heatmap head / regression head, weights file (format fashionlab-keypoints-1)
loss_decode.py  Gaussian targets, masked losses, soft-argmax / argmax decoding, flip-test merging
lit.py, train.py  the Lightning loop and the run folder;  predict.py  flip-test, two-stage, CSV writer
plots.py        curves (lowest NE starred) and the predicted-vs-true overlay
metric.py       the competition's format and NE (owned separately)

One model for all categories is the default (each image's loss covers only its category's points);
``categories: [skirt]`` trains a per-category model, and ``--weights`` may be a folder of such runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import Task
from .config import KeypointsConfig


class KeypointsTask(Task):
    name = "keypoints"
    metric = "ne"  # lower is better; the keypoints loop handles the direction itself
    config_class = KeypointsConfig

    def fit(self, cfg: KeypointsConfig, resume: bool = False) -> Any:  # type: ignore[override]
        from .train import train_keypoints

        return train_keypoints(cfg, resume=resume)

    def predict_files(self, weights: Path, source: Path, out: Path, tta: str = "none", batch: int = 64,
                      workers: int = 2, device: str = "auto", skip_bad: bool = False) -> Path:
        from .predict import predict_keypoint_files

        return predict_keypoint_files(weights, source, out, tta, batch, workers, device, skip_bad)


__all__ = ["KeypointsConfig", "KeypointsTask"]
