"""``StylesConfig``: the classification family's options plus the multi-label styles task's own options.

Defaults differ from ClassifierConfig where multi-label needs it: ``loss: bce`` (``ce`` is read as ``bce``
too; ``focal`` is the multi-label focal loss with ``focal_gamma``/``focal_alpha``) and
``head_hidden: 256`` (backbone -> FC 256 -> BN -> ReLU -> FC K).

Resampling (training split only, seeded by ``seed``): a label is *rare* when its training count is at
or below the ``rare_quantile`` quantile of the label counts and *frequent* when at or above the
``1 - rare_quantile`` quantile. An image carrying a rare label is repeated ``upsample_rare`` times
(a fraction repeats with that probability: 2.5 = twice, a third time half the time); an image whose
labels are all frequent (or that has none) is kept with probability ``downsample_frequent``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..classifier.config import ClassifierConfig


class StylesConfig(ClassifierConfig):
    """Every knob of a styles run (``--set key=value`` on the CLI)."""

    task: str = "styles"
    loss: Literal["ce", "focal", "bce"] = "bce"  # multi-label: ce is read as bce
    head_hidden: int = Field(256, ge=0)  # FC hidden -> BN -> ReLU -> FC K
    # resampling of the training split
    upsample_rare: float = Field(1.0, ge=1.0, le=20.0)  # repeat factor of images with a rare label; 1 = off
    downsample_frequent: float = Field(1.0, gt=0.0, le=1.0)  # keep ratio of all-frequent images; 1 = off
    rare_quantile: float = Field(0.25, gt=0.0, lt=0.5)
    # per-label thresholds tuned on validation after training (RUN/thresholds.json)
    threshold_search: Literal["greedy", "lbfgs", "none"] = "greedy"
    # garment recolouring augmentation (fashionlab.data.recolour)
    recolour: float = Field(0.0, ge=0.0, le=1.0)  # probability per training image; 0 = off
    recolour_masks: str = ""  # folder of <image stem>.png garment masks; empty: GrabCut
