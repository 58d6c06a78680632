"""Partial fine-tuning on cached feature maps: run the frozen early blocks once, train the rest many epochs.

An EfficientNet splits into a ``stem`` (``conv_stem``, ``bn1``, ``blocks[:at]``) and a ``tail``
(``blocks[at:]``, ``conv_head``, ``bn2``, pooling). With the stem frozen, its output for a photo never
changes, so it is computed once per photo (and per view: the mirror image, a larger size) and kept as
float16 maps; training then runs only the tail, at the resolution of the cached maps. For
efficientnet_lite0 at 224 px cut at ``at=5``, the maps are 112 x 14 x 14 (44 KB per view in float16) and
the tail is about a third of the network's multiply-adds — a step at 224 px costs about what a full
fine-tuning step costs at 112-128 px, with the detail of 224 px photos.

``MapAugment`` augments cached maps: a random crop (the maps of a slightly larger photo cropped to the
training map size) and the mirrored view chosen at random.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data.memory import normalise, resize_batch
from ..errors import FashionlabError


@dataclass
class SplitNet:
    stem: nn.Module  # frozen; cached once per view
    tail: nn.Module  # trained: maps [B, C, h, w] -> pooled features [B, num_features]
    channels: int  # channels of the cached maps
    reduction: int  # input pixels per map cell (stride of the stem)
    num_features: int


def split_backbone(model: nn.Module, at: int) -> SplitNet:
    """Split a timm EfficientNet-style backbone (``conv_stem``, ``bn1``, ``blocks``, ``conv_head``,
    ``bn2``, ``global_pool``; built with ``num_classes=0``) before ``blocks[at]``."""
    needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool")
    missing = [n for n in needed if not hasattr(model, n)]
    if missing:
        raise FashionlabError(f"{type(model).__name__}: partial fine-tuning needs an EfficientNet-style backbone "
                              f"(no {', '.join(missing)})")
    blocks = list(model.blocks)
    if not 0 < at < len(blocks):
        raise FashionlabError(f"cut at={at}: the backbone has {len(blocks)} stages; choose 1..{len(blocks) - 1}")
    stem = nn.Sequential(model.conv_stem, model.bn1, *blocks[:at])
    tail = nn.Sequential(*blocks[at:], model.conv_head, model.bn2, model.global_pool)
    with torch.no_grad():
        probe = stem.eval()(torch.zeros(1, 3, 64, 64))
    return SplitNet(stem, tail, probe.shape[1], 64 // probe.shape[-1], model.num_features)


class _TorchStem:
    def __init__(self, stem: nn.Module) -> None:
        self.stem = stem.eval().to(memory_format=torch.channels_last)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class _OnnxStem:
    """The stem through ONNX Runtime (2-4x faster than eager PyTorch for inference on CPU)."""

    def __init__(self, stem: nn.Module, size: int, threads: int | None) -> None:
        import onnxruntime as ort

        fd, path = tempfile.mkstemp(suffix=".onnx")
        os.close(fd)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(stem.eval(), (torch.zeros(2, 3, size, size),), path, input_names=["x"],
                                  output_names=["maps"], dynamic_axes={"x": {0: "b"}, "maps": {0: "b"}},
                                  opset_version=17, do_constant_folding=True, dynamo=False)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if threads:
                options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        finally:
            os.unlink(path)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.contiguous().numpy()})[0])


def cache_maps(stem: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], size: int,
               flip: bool = False, batch: int = 64, runtime: str = "torch", threads: int | None = None) -> torch.Tensor:
    """Stem maps of uint8 ``images`` [N, 3, H, W] resized to ``size``: float16 [N, C, h, w], or
    [N, 2, C, h, w] with ``flip`` (index 1: the mirrored photo). ``runtime``: torch | onnx."""
    if runtime not in ("torch", "onnx"):
        raise FashionlabError(f"runtime '{runtime}': choose torch or onnx")
    run = _OnnxStem(stem, size, threads) if runtime == "onnx" else _TorchStem(stem)
    chunks = []
    for start in range(0, len(images), batch):
        x = normalise(resize_batch(images[start:start + batch], size), mean, std,
                      channels_last=runtime == "torch")
        maps = run(x).half()
        if flip:
            maps = torch.stack([maps, run(x.flip(-1)).half()], 1)
        chunks.append(maps.contiguous())
    return torch.cat(chunks)


@dataclass
class MapAugment:
    """Random crop of cached maps to ``crop`` cells and a random choice of the mirrored view
    (maps cached with ``flip=True``); ``crop=None`` keeps the whole map."""

    crop: int | None = None
    hflip: float = 0.5

    def __call__(self, maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if maps.dim() == 5:  # [B, 2, C, h, w]: pick the view
            view = (torch.rand(maps.shape[0], generator=generator) < self.hflip).long()
            maps = maps[torch.arange(maps.shape[0]), view]
        if self.crop is None or self.crop >= maps.shape[-1]:
            return maps.float()
        n, _, h, w = maps.shape
        ys = torch.randint(0, h - self.crop + 1, (n,), generator=generator).tolist()
        xs = torch.randint(0, w - self.crop + 1, (n,), generator=generator).tolist()
        return torch.stack([maps[i, :, y:y + self.crop, x:x + self.crop] for i, (y, x) in enumerate(zip(ys, xs))]).float()


def centre(maps: torch.Tensor, crop: int | None) -> torch.Tensor:
    """The deterministic counterpart of ``MapAugment`` for evaluation: the centre crop of the plain view."""
    if maps.dim() == 5:
        maps = maps[:, 0]
    if crop is None or crop >= maps.shape[-1]:
        return maps.float()
    off = (maps.shape[-1] - crop) // 2
    return maps[..., off:off + crop, off:off + crop].float()


class TailClassifier(nn.Module):
    """The trainable tail plus one linear layer over all outputs (tasks are slices of it)."""

    def __init__(self, tail: nn.Module, num_features: int, width: int, drop: float = 0.2) -> None:
        super().__init__()
        self.tail = tail
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(num_features, width)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.tail(maps.contiguous(memory_format=torch.channels_last))))
