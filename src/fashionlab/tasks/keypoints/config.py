"""``KeypointsConfig``: the options every task honours plus the keypoint task's own.

The classification family's options are not accepted (a one-line error names them): no frozen-backbone
head stage (the heatmap head needs spatial features, not cached pooled ones), no ``scale_min``
(RandomResizedCrop would cut points off; ``affine_scale`` replaces it), no ``test_imgsz`` (keypoints
validate and predict at ``imgsz``), no mixing or label smoothing.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ...config import RunConfig
from .metric import CATEGORIES


class KeypointsConfig(RunConfig):
    """Every knob of a keypoints run (``--set key=value`` on the CLI)."""

    task: str = "keypoints"
    # model
    head: Literal["heatmap", "regression"] = "heatmap"
    output_stride: Literal[2, 4, 8] = 4  # heatmap cell size in input pixels
    head_channels: int = Field(64, ge=8, le=512)  # FPN width of the heatmap head
    sigma: float = Field(1.5, gt=0, le=10)  # Gaussian target spread, in heatmap cells
    decode: Literal["soft_argmax", "argmax"] = "soft_argmax"
    decode_radius: int = Field(4, ge=0, le=64)  # soft-argmax window around the peak, in cells; 0 = whole map
    regression_loss: Literal["l1", "mse"] = "l1"
    # data
    categories: list[str] = Field(default_factory=list)  # train on these categories only (default: all five)
    train_occluded: bool = True  # v=0 points are trained (their position is annotated); v=-1 never
    # augmentation (hflip and color_jitter come from RunConfig)
    rotate: float = Field(15.0, ge=0, le=180)  # degrees, uniform in [-rotate, rotate]
    affine_scale: float = Field(0.15, ge=0, lt=1)  # zoom uniform in [1 - s, 1 + s]
    shift: float = Field(0.05, ge=0, le=0.5)  # translation, fraction of the image side
    blur: float = Field(0.1, ge=0, le=1)  # probability of a Gaussian blur
    noise: float = Field(0.1, ge=0, le=1)  # probability of Gaussian noise
    # two-stage prediction
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)  # dropout before the regression head
    two_stage: bool = False
    crop_margin: float = Field(0.15, ge=0, le=1)  # box margin, fraction of the box side, on each side

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"category '{unknown[0]}' is not one of {', '.join(CATEGORIES)}")
        return sorted(set(value), key=CATEGORIES.index)
