"""Keypoint networks (heatmap head on an FPN, or DeepPose-style regression) and their weights file.

``RUN/weights/best.pt`` is a plain dict of tensors plus JSON-able metadata (format
``fashionlab-keypoints-1``), loadable with ``torch.load(..., weights_only=True)``; the metadata is
everything needed to rebuild the network and decode its output.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import FashionlabError
from ...io import atomic_open, load_torch
from .features import FeatureBackbone, feature_model

FORMAT = "fashionlab-keypoints-1"
N_POINTS = 24
SPEC_KEYS = ("model", "head", "imgsz", "output_stride", "head_channels", "sigma", "decode", "decode_radius",
             "regression_loss", "two_stage", "crop_margin", "categories", "drop_rate")


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class HeatmapHead(nn.Module):
    """FPN top-down path from the coarsest level to ``stride``, then 3x3 conv + 1x1 to one map per point.

    One 3x3 conv (not two): at stride 4 each costs about a third of efficientnet_lite0's own compute."""

    def __init__(self, channels: list[int], reductions: list[int], stride: int, width: int,
                 n_points: int = N_POINTS) -> None:
        super().__init__()
        levels = [i for i, r in enumerate(reductions) if r >= stride] or [len(reductions) - 1]
        self.levels, self.stride = levels, stride
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i], width, 1) for i in levels)
        self.fuse = _conv_bn_relu(width, width)
        self.out = nn.Conv2d(width, n_points, 1)
        nn.init.normal_(self.out.weight, std=0.001)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        maps = [lat(features[i]) for lat, i in zip(self.lateral, self.levels)]
        top = maps[-1]
        for lower in reversed(maps[:-1]):
            top = lower + F.interpolate(top, size=lower.shape[-2:], mode="nearest")
        if tuple(top.shape[-2:]) != size:
            top = F.interpolate(top, size=size, mode="bilinear", align_corners=False)
        return self.out(self.fuse(top))


class RegressionHead(nn.Module):
    """DeepPose-style: global average pool of the coarsest map -> dropout -> FC -> 24 x (x, y) in [0, 1]."""

    def __init__(self, in_channels: int, drop_rate: float = 0.0, n_points: int = N_POINTS) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_channels, n_points * 2)
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.constant_(self.fc.bias, 0.5)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        pooled = features[-1].float().mean((2, 3))
        return self.fc(self.drop(pooled)).view(len(pooled), -1, 2)


class KeypointNet(nn.Module):
    """Backbone feature pyramid + one head; ``forward`` gives heatmap logits [B, 24, S/r, S/r] or
    normalised coordinates [B, 24, 2] (``head`` attribute says which)."""

    def __init__(self, backbone: nn.Module, channels: list[int], reductions: list[int], head: str = "heatmap",
                 imgsz: int = 256, stride: int = 4, width: int = 64, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.backbone, self.head_kind, self.imgsz, self.stride = backbone, head, imgsz, stride
        if head == "heatmap":
            self.head: nn.Module = HeatmapHead(channels, reductions, stride, width)
        else:
            self.head = RegressionHead(channels[-1], drop_rate)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.head_kind == "heatmap":
            h, w = images.shape[-2:]
            return self.head(features, (h // self.stride, w // self.stride))
        return self.head(features)


def build_net(backbone: FeatureBackbone, spec: dict[str, Any]) -> KeypointNet:
    return KeypointNet(backbone.model, backbone.channels, backbone.reductions, spec["head"], spec["imgsz"],
                       spec["output_stride"], spec["head_channels"], spec.get("drop_rate", 0.0))


def spec_from_config(cfg: Any) -> dict[str, Any]:
    """The JSON-able options a checkpoint must remember (from a KeypointsConfig)."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in ((k, getattr(cfg, k)) for k in SPEC_KEYS)}


@dataclass
class LoadedKeypoints:
    net: KeypointNet
    spec: dict[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    info: dict[str, Any]
    path: Path


def save_keypoints(path: Path, net: KeypointNet, spec: dict[str, Any], mean, std,
                   extra: dict[str, Any] | None = None) -> Path:
    payload = {"format": FORMAT, "task": "keypoints", **spec, "mean": [float(m) for m in mean],
               "std": [float(s) for s in std], "extra": extra or {},
               "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def load_keypoints(path: str | Path, device: str = "cpu") -> LoadedKeypoints:
    """Rebuild the network from a best.pt written by ``save_keypoints`` (never unpickles code)."""
    path = Path(path)
    payload = load_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        task = payload.get("task") if isinstance(payload, dict) else None
        hint = f" (it holds a '{task}' model)" if task else ""
        raise FashionlabError(f"{path}: not a keypoints weights file{hint}; use a keypoints RUN/weights/best.pt")
    from .config import KeypointsConfig

    # an option added after the file was written takes its default (decoding options only, so far)
    spec = {k: payload.get(k, KeypointsConfig.model_fields[k].get_default(call_default_factory=True))
            for k in SPEC_KEYS}
    model = feature_model(spec["model"])
    info = model.feature_info
    net = KeypointNet(model, list(info.channels()), list(info.reduction()), spec["head"], spec["imgsz"],
                      spec["output_stride"], spec["head_channels"], spec.get("drop_rate", 0.0))
    net.load_state_dict(payload["state_dict"], strict=True)
    net.eval().to(device)
    return LoadedKeypoints(net, spec, tuple(payload["mean"]), tuple(payload["std"]), payload.get("extra", {}), path)
