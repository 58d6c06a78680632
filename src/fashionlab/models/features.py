"""Feature maps (timm ``features_only``) with the same weights ``create_backbone`` would load.

``create_backbone`` knows every weight source (the offline ImageNet package, whose tensors map onto
timm in order; timm's hub; a local file; none) but builds a pooled model. timm's ``features_only``
variant of the same architecture holds a subset of those tensors under the same names
(efficientnet_lite0: all but ``conv_head``/``bn2``), so they are copied over by name. Keypoints use
the whole pyramid; retrieval the last stage (optionally dilated: ``output_stride=16``).
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import nn

from ..errors import FashionlabError
from .backbone import create_backbone


@dataclass
class FeatureBackbone:
    """``model(x)`` returns one map per level (``channels``, ``reductions``)."""

    model: nn.Module
    channels: list[int]
    reductions: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str
    head: nn.Module | None = None  # with ``keep_head``: the backbone's pretrained 1x1 head conv + BN, if any


def head_conv_of(model: nn.Module) -> nn.Module | None:
    """EfficientNet-style ``conv_head`` + ``bn2`` (the part ``features_only`` drops), or None."""
    if hasattr(model, "conv_head") and hasattr(model, "bn2"):
        return nn.Sequential(model.conv_head, model.bn2)
    return None


def feature_model(name: str, out_indices: tuple[int, ...] | None = None, output_stride: int = 32) -> nn.Module:
    """Randomly initialised ``features_only`` model (weights are loaded by the caller)."""
    extra = {"out_indices": out_indices} if out_indices is not None else {}
    if output_stride != 32:
        extra["output_stride"] = output_stride
    try:
        return timm.create_model(name, pretrained=False, features_only=True, **extra)
    except Exception as exc:  # noqa: BLE001 - timm raises various errors for models without feature maps
        raise FashionlabError(f"model '{name}' cannot give feature maps (timm features_only, output stride "
                              f"{output_stride}: {exc})") from None


def create_feature_backbone(name: str, pretrained: str = "auto", out_indices: tuple[int, ...] | None = None,
                            output_stride: int = 32, keep_head: bool = False) -> FeatureBackbone:
    """Build ``name`` as feature maps; ``pretrained`` as in ``create_backbone``."""
    full = create_backbone(name, pretrained)  # validates the name and loads the weights
    model = feature_model(name, out_indices, output_stride)
    own, source = model.state_dict(), full.model.state_dict()
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
    return FeatureBackbone(model, list(info.channels()), list(info.reduction()), full.mean, full.std, full.weights,
                           head_conv_of(full.model) if keep_head else None)
