"""The retrieval branches read the backbone's last feature map (see ``fashionlab.models.features``).

``output_stride=16`` dilates the last stage instead of striding it: a map twice as fine (8x8 at
128 px) for the stripe and ring branches, with the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...models.features import create_feature_backbone, feature_model


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
    return feature_model(name, (-1,), output_stride)


def create_feature_map(name: str, pretrained: str = "auto", output_stride: int = 32) -> FeatureMap:
    """Build ``name`` cut after its last stage; ``pretrained`` as in ``create_backbone``."""
    pyramid = create_feature_backbone(name, pretrained, (-1,), output_stride)
    return FeatureMap(pyramid.model, int(pyramid.channels[-1]), pyramid.mean, pyramid.std, pyramid.weights)
