"""``ClassifierConfig``: the shared options plus those of the classification family (attributes,
classify, styles): the frozen-backbone head stage, the automatic image size under a budget, test size,
losses, mixing and the head's shape."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...config import RunConfig


class ClassifierConfig(RunConfig):
    """Every knob of a classification-style run (``--set key=value`` on the CLI)."""

    test_imgsz: int | None = Field(None, ge=32, le=1024)  # validation/prediction size; None: imgsz scaled
    # up by the train crops' mean zoom (FixRes), e.g. 128 -> 144 with scale_min 0.5
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # held out for validation (0: train on every photo)
    drop_rate: float = Field(0.2, ge=0.0, lt=1.0)
    # stage 1, on features cached once: "tail" trains the backbone's last blocks + heads on cached maps
    # (engine/tail_stage.py), "head" the heads alone on pooled features, "none" skips it
    first_stage: Literal["tail", "head", "none"] = "tail"
    tail_from: int = Field(5, ge=1)  # the tail starts at backbone block N (efficientnet_lite0 has 7)
    tail_imgsz: int = Field(224, ge=32, le=1024)  # size of the photos the cached maps come from
    tail_share: float = Field(1.0, gt=0, le=1)  # with a time budget: its share for the tail stage (the rest
    # fine-tunes the whole network at imgsz)
    tail_epochs: int = Field(15, ge=1)  # without a time budget: passes over the cached training maps
    tail_lr: float = Field(1e-3, gt=0)
    tail_ema: float = Field(0.99, ge=0, lt=1)  # EMA decay per step of the tail stage's weights
    tail_drop_rate: float = Field(0.0, ge=0.0, lt=1.0)  # dropout before the heads in the tail stage (0.2 scored
    # 0.9003 and 0.9120 against 0.9296 and 0.9208 on clothing-256 seeds 0 and 1 at 480 s)
    tail_crops: int = Field(0, ge=0, le=8)  # random-resized crops of each training photo cached beside it and
    # its mirror: more distinct views for the tail's many passes (each costs one more caching pass; 2 scored
    # 0.8878 and 0.8828 against the default's 0.9002 and 0.8953 on TrashNet seeds 0 and 1 at 480 s)
    tail_crop_scale: float = Field(0.5, gt=0, le=1)  # the crops' smallest area share of the photo
    tail_probe_epochs: int = Field(20, ge=0)  # a copy of the heads fitted on the frozen tail's pooled features
    # (a linear probe) is the tail stage's first candidate for best.pt: a run cut short keeps it (0: off)
    head_epochs: int = Field(30, ge=0)  # first_stage head: epochs on cached pooled features
    head_lr: float = Field(3e-3, gt=0)
    min_epochs: int = Field(6, ge=1)  # with a budget and auto imgsz: shrink images until this many fit
    loss: Literal["ce", "focal", "bce"] = "ce"  # bce: multi-label tasks; focal works for both
    focal_gamma: float = Field(2.0, ge=0)
    focal_alpha: float | None = Field(None, ge=0, le=1)  # multi-label focal: weight of positives
    mixup: float = Field(0.0, ge=0)  # Beta(α, α) for mixup; 0 = off
    cutmix: float = Field(0.0, ge=0)  # Beta(α, α) for CutMix; 0 = off
    mix_prob: float = Field(1.0, ge=0, le=1)  # share of batches mixed when mixup/cutmix is on
    head: Literal["linear", "se"] = "linear"  # se: squeeze-excitation gating of pooled features
    head_hidden: int = Field(0, ge=0)  # >0: FC hidden -> BN -> ReLU -> FC per head
    scale_min: float = Field(0.5, gt=0, le=1)  # RandomResizedCrop area lower bound
