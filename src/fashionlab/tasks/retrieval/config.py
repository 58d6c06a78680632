"""``RetrievalConfig``: the options every task honours plus the street-to-shop retrieval task's own.

The classification family's options are not accepted (a one-line error names them): no frozen-backbone
head stage (the part branches need feature maps), no ``test_imgsz`` (retrieval embeds at ``imgsz``), no
classification losses or mixing. The split by item uses ``split_seed`` when set, else ``seed``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ...config import RunConfig

BRANCHES = ("global", "horizontal", "vertical", "ring")
EPOCH_IMAGES_CAP = 1536


class RetrievalConfig(RunConfig):
    """Every knob of a retrieval run (``--set key=value`` on the CLI)."""

    task: str = "retrieval"
    lr: float = Field(2e-3, gt=0)  # heads; the backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = Field(0.5, gt=0, le=1.0)
    batch: int = Field(32, ge=2)
    label_smoothing: float = Field(0.1, ge=0, lt=1)  # of the ID classification heads
    scale_min: float = Field(0.5, gt=0, le=1)  # RandomResizedCrop area lower bound
    # data
    root: str = ""  # images root; default: <csv folder>/images if it exists, else the CSV's folder
    # model
    branches: list[str] = Field(default_factory=lambda: list(BRANCHES))
    embed_dim: int = Field(128, ge=8, le=2048)  # per part; the embedding concatenates all parts
    stripes: list[int] = Field(default_factory=lambda: [2, 3])  # parts per stripe branch
    rings: int = Field(2, ge=1, le=8)  # square rings from the centre outward
    output_stride: Literal[16, 32] = 16  # 16: dilated last stage, a finer map for stripes and rings
    # keep the backbone's pretrained 1x1 head conv after the last stage (EfficientNet); off by default: it
    # measured no gain on one held-out split of grocery products (README, "On real photos")
    head_conv: bool = False
    # share of the search similarity given to the average-pooled map itself (no trained projection);
    # 0 = the trained parts only, 1 = the (fine-tuned) backbone's pooled features only
    raw_weight: float = Field(0.0, ge=0, le=1)
    # share of the search similarity given to a frozen copy of the pretrained backbone (ImageNet as it came:
    # head conv, stride 32, average-pooled — the features a frozen-feature probe ranks with); its weights are
    # stored in best.pt; costs one more backbone pass per embedded photo; raw_weight + frozen_weight <= 1
    frozen_weight: float = Field(0.5, ge=0, le=1)
    # loss
    triplet_weight: float = Field(1.0, ge=0)  # batch-hard triplet on the normalised embedding; 0 = off
    margin: float = Field(0.3, gt=0)
    k_per_item: int = Field(4, ge=0)  # PK sampling: batch // k items x k images; 0 = plain shuffled batches
    # PK epoch length in images: -1 = the training set's size (every photo about once an epoch), at most
    # EPOCH_IMAGES_CAP (short epochs let the time-budget planner re-plan); 0 = one pass over the items
    # (p x k images per p items: few images when there are few items)
    epoch_images: int = Field(-1, ge=-1)
    shop_anchor: bool = True  # PK batches hold one shop photo of each of their items (consumer photos meet it)
    distractors: bool = True  # validation gallery = every shop photo (training items' too), as in a real shop
    category_head: bool = True  # a small category classifier (used by search --category auto)
    category_weight: float = Field(0.5, ge=0)
    # evaluation
    tta: Literal["none", "flip"] = "flip"  # for the final validation and the run's predictions

    @field_validator("branches")
    @classmethod
    def _known_branches(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in BRANCHES]
        if unknown:
            raise ValueError(f"branch '{unknown[0]}' is not one of {', '.join(BRANCHES)}")
        if not value:
            raise ValueError(f"give at least one branch of {', '.join(BRANCHES)}")
        return [b for b in BRANCHES if b in value]

    @field_validator("stripes")
    @classmethod
    def _stripe_parts(cls, value: list[int]) -> list[int]:
        if not value or any(p < 1 or p > 8 for p in value):
            raise ValueError("stripes: give part counts between 1 and 8, e.g. [2, 3]")
        return value

    @model_validator(mode="after")
    def _similarity_shares(self) -> RetrievalConfig:
        if self.raw_weight + self.frozen_weight > 1:
            raise ValueError(f"raw_weight + frozen_weight must be at most 1 (got {self.raw_weight} + "
                             f"{self.frozen_weight}): they are shares of the search similarity")
        return self
