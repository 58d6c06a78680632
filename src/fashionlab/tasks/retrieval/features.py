"""The backbone's last feature map: timm ``features_only`` with the weights ``create_backbone`` loads.

``models.backbone.create_backbone`` knows every weight source (the offline ImageNet package, whose
tensors map onto timm in order; timm's hub; a local file; none) but builds a pooled model. timm's
``features_only`` variant of the same architecture, cut after the last stage, holds a subset of those
tensors under the same names (efficientnet_lite0: all but ``conv_head``/``bn2``), so they are copied
by name. ``output_stride=16`` dilates the last stage instead of striding it: a map twice as fine
(8x8 at 128 px) for the stripe and ring branches, with the same weights. (The keypoints task has the
same helper for a whole pyramid; a candidate for ``fashionlab/models/``.)
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import nn

from ...errors import FashionlabError
from ...models.backbone import create_backbone


@dataclass
class FeatureMap:
    """``model(x)`` returns a one-element list: the last stage's map with ``channels`` channels."""

    model: nn.Module
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str


def last_stage_model(name: str, output_stride: int = 32) -> nn.Module:
    """Randomly initialised ``features_only`` model giving the last stage only."""
    try:
        return timm.create_model(name, pretrained=False, features_only=True, out_indices=(-1,),
                                 output_stride=output_stride)
    except Exception as exc:  # noqa: BLE001 - timm raises various errors for models without feature maps
        raise FashionlabError(f"model '{name}' cannot give a feature map with output stride {output_stride} "
                              f"(timm features_only: {exc})") from None


def create_feature_map(name: str, pretrained: str = "auto", output_stride: int = 32) -> FeatureMap:
    """Build ``name`` cut after its last stage; ``pretrained`` as in ``create_backbone``."""
    full = create_backbone(name, pretrained)  # validates the name and loads the weights
    model = last_stage_model(name, output_stride)
    own, source = model.state_dict(), full.model.state_dict()
    mapped = {}
    for key in own:
        for candidate in (key, key.removeprefix("model."), f"model.{key}"):
            if candidate in source and source[candidate].shape == own[key].shape:
                mapped[key] = source[candidate]
                break
    if len(mapped) != len(own):
        missing = next(k for k in own if k not in mapped)
        raise FashionlabError(f"model '{name}': cannot map weights onto its feature map (no '{missing}')")
    model.load_state_dict(mapped, strict=True)
    return FeatureMap(model, int(model.feature_info.channels()[-1]), full.mean, full.std, full.weights)
