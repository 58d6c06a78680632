"""A timm ``features_only`` backbone with the same weights ``create_backbone`` would load.

``models.backbone.create_backbone`` builds a pooled, classifier-less model and knows every weight
source (offline ImageNet package, timm hub, a local file, none). timm's ``features_only`` variant of
the same architecture holds a subset of those tensors under the same names (efficientnet_lite0: all
but ``conv_head``/``bn2``), so the weights are copied over by name. Candidate to move to
``fashionlab/models/`` once another task needs feature maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import nn

from ...errors import FashionlabError
from ...models.backbone import create_backbone


@dataclass
class FeatureBackbone:
    """Feature-pyramid extractor: ``model(x)`` returns one map per level (``channels``, ``reductions``)."""

    model: nn.Module
    channels: list[int]
    reductions: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str


def feature_model(name: str) -> nn.Module:
    """Randomly initialised ``features_only`` model (weights are loaded by the caller)."""
    try:
        return timm.create_model(name, pretrained=False, features_only=True)
    except Exception as exc:  # noqa: BLE001 - timm raises various errors for models without feature maps
        raise FashionlabError(f"model '{name}' cannot give feature maps (timm features_only: {exc})") from None


def create_feature_backbone(name: str, pretrained: str = "auto") -> FeatureBackbone:
    """Build ``name`` as a feature pyramid; ``pretrained`` as in ``create_backbone``."""
    full = create_backbone(name, pretrained)  # validates the name and loads the weights
    model = feature_model(name)
    own = model.state_dict()
    source = full.model.state_dict()
    mapped = {}
    for key in own:
        for candidate in (key, key.removeprefix("model."), f"model.{key}"):
            if candidate in source and source[candidate].shape == own[key].shape:
                mapped[key] = source[candidate]
                break
    if len(mapped) != len(own):
        missing = next(k for k in own if k not in mapped)
        raise FashionlabError(f"model '{name}': cannot map weights onto its feature maps (no '{missing}')")
    model.load_state_dict(mapped, strict=True)
    info = model.feature_info
    return FeatureBackbone(model, list(info.channels()), list(info.reduction()), full.mean, full.std, full.weights)
