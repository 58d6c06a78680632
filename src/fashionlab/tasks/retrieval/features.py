"""The retrieval branches read the backbone's last feature map (see ``fashionlab.models.features``).

``output_stride=16`` dilates the last stage instead of striding it: a map twice as fine (8x8 at
128 px) for the stripe and ring branches, with the same weights.

``head_conv=True`` keeps the backbone's own pretrained 1x1 head convolution (+ BatchNorm and activation;
EfficientNet's ``conv_head``/``bn2``, 320 -> 1280 channels for efficientnet_lite0) after the last stage.
``features_only`` drops it, so without it the branches start from the last stage and a randomly
initialised projection — the ImageNet features a frozen-feature baseline uses are then never seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import nn

from ...models.features import create_feature_backbone, feature_model, head_conv_of


@dataclass
class FeatureMap:
    """``model(x)`` returns a one-element list: the last stage's map with ``channels`` channels."""

    model: nn.Module
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str


class StageWithHead(nn.Module):
    """The last stage's map followed by the head convolution: ``model(x)`` -> ``[head(last map)]``."""

    def __init__(self, stages: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.stages, self.head = stages, head

    def forward(self, x):  # noqa: ANN001, ANN201 - the same call as a features_only model
        return [self.head(self.stages(x)[-1])]


def last_stage_model(name: str, output_stride: int = 32, head_conv: bool = False) -> tuple[nn.Module, int]:
    """Randomly initialised last-stage model (``features_only``, plus the head conv) and its channels."""
    stages = feature_model(name, (-1,), output_stride)
    channels = int(stages.feature_info.channels()[-1])
    if not head_conv:
        return stages, channels
    head = head_conv_of(timm.create_model(name, pretrained=False, num_classes=0))
    assert head is not None, "head_conv is only stored for models that have one"
    return StageWithHead(stages, head), int(head[0].out_channels)


def create_feature_map(name: str, pretrained: str = "auto", output_stride: int = 32,
                       head_conv: bool = False) -> FeatureMap:
    """Build ``name`` cut after its last stage (with ``head_conv``: after its head convolution, when the
    architecture has one); ``pretrained`` as in ``create_backbone``."""
    pyramid = create_feature_backbone(name, pretrained, (-1,), output_stride, keep_head=head_conv)
    head = pyramid.head
    if head is None:
        return FeatureMap(pyramid.model, int(pyramid.channels[-1]), pyramid.mean, pyramid.std, pyramid.weights)
    return FeatureMap(StageWithHead(pyramid.model, head), int(head[0].out_channels), pyramid.mean, pyramid.std,
                      pyramid.weights)
