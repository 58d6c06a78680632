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
hooks.py        the training hooks (data, loss step, decoded validation, NE, outputs);
predict.py      flip-test, two-stage, CSV writer
plots.py        curves (lowest NE starred) and the predicted-vs-true overlay
metric.py       the competition's format and NE (owned separately)

One model for all categories is the default (each image's loss covers only its category's points);
``categories: [skirt]`` trains a per-category model, and ``--weights`` may be a folder of such runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...config import RunConfig
from ...engine.hooks import TrainResult
from ..base import Task
from .config import KeypointsConfig
from .hooks import KeypointsHooks


class KeypointsTask(Task):
    name = "keypoints"
    metric = "ne"
    higher_is_better = False
    config_class = KeypointsConfig
    weights_format = "fashionlab-keypoints-1"
    evaluator = "fashionlab.tasks.keypoints.metric:evaluate_keypoints_files"
    synth_generator = "fashionlab.data.synth.keypoints:synth_keypoints"
    serve_adapter = "fashionlab.serve.keypoints:KeypointsAdapter"
    tta = ("none", "flip")
    submit_tta = "flip"
    combine = ("mean",)  # several models: their coordinates are averaged per image

    def hooks(self, cfg: RunConfig) -> KeypointsHooks:
        return KeypointsHooks(cfg)

    def gather_folds(self, cfg: RunConfig, results: list[TrainResult]) -> dict[str, Any]:
        from .dataset import KeypointRecords, write_truth_csv
        from .metric import normalized_error, write_keypoints_csv
        from .predict import as_prediction_set

        run = Path(cfg.out)
        parts: list[KeypointRecords] = [r.val_set for r in results]
        records = KeypointRecords([p for r in parts for p in r.paths], [i for r in parts for i in r.ids],
                                  [c for r in parts for c in r.categories], np.concatenate([r.xy for r in parts]),
                                  np.concatenate([r.v for r in parts]), np.concatenate([r.sizes for r in parts]),
                                  parts[0].source)
        coords = np.concatenate([r.val_outputs for r in results])
        write_keypoints_csv(run / "oof.csv", records.ids, records.categories, coords)
        write_truth_csv(run / "oof_truth.csv", records)
        scores = normalized_error(as_prediction_set(records, coords), records.truth())
        return {"oof_images": len(records), **scores}

    def predict_files(self, weights: Path | list[Path], source: Path, out: Path, tta: str = "none", batch: int = 64,
                      workers: int = 2, device: str = "auto", combine: str = "mean",
                      skip_bad: bool = False) -> Path:
        from .predict import predict_keypoint_files

        return predict_keypoint_files(weights, source, out, tta, batch, workers, device, skip_bad)


__all__ = ["KeypointsConfig", "KeypointsTask"]
