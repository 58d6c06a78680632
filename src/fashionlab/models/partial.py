"""Partial fine-tuning on cached feature maps: run the frozen early blocks once, train the rest many epochs.

An EfficientNet splits into a ``stem`` (``conv_stem``, ``bn1``, ``blocks[:at]``) and a ``tail``
(``blocks[at:]``, ``conv_head``, ``bn2``, pooling). With the stem frozen, its output for a photo never
changes, so it is computed once per photo (and per view: the mirror image, a larger size) and kept as
float16 maps; training then runs only the tail, at the resolution of the cached maps. For
efficientnet_lite0 at 224 px cut at ``at=5``, the maps are 112 x 14 x 14 (44 KB per view in float16) and
the tail is about a third of the network's multiply-adds — a step at 224 px costs about what a full
fine-tuning step costs at 112-128 px, with the detail of 224 px photos.

``MapAugment`` augments cached maps: a random crop (the maps of a slightly larger photo cropped to the
training map size) and the mirrored view chosen at random. ``fit_tail`` trains a ``TailClassifier`` on
cached maps (AdamW, warm-up then cosine, label smoothing, an EMA of the weights) and ``predict_tail``
averages the views it is given (the mirrored one: flip TTA for free).

Tasks are slices of one output vector: row i's logits are ``[lo[i], hi[i])`` and its target an index
into the whole vector (classification: one slice for every row; FashionAI attributes: one per task).
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV2
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
    """Random crop of cached maps to ``crop`` cells and a random choice of the view: the mirrored one with
    chance ``hflip`` (maps cached with ``flip=True``), and any further cached views (crops) each as likely as
    the whole photo; ``crop=None`` keeps the whole map."""

    crop: int | None = None
    hflip: float = 0.5

    def __call__(self, maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if maps.dim() == 5:  # [B, V, C, h, w]: the photo, its mirror, then any crops; pick a view
            view = (torch.rand(maps.shape[0], generator=generator) < self.hflip).long()
            if maps.shape[1] > 2:  # each crop as likely as the whole photo (mirrored or not)
                pick = torch.randint(0, maps.shape[1] - 1, (maps.shape[0],), generator=generator)
                view = torch.where(pick > 0, pick + 1, view)
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


def sliced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                         smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of each row over its own slice ``[lo, hi)`` of the outputs."""
    total = logits.new_zeros(())
    for a, b in sorted(set(zip(lo.tolist(), hi.tolist()))):
        rows = ((lo == a) & (hi == b)).nonzero(as_tuple=True)[0]
        total = total + F.cross_entropy(logits[rows, a:b], target[rows] - a, label_smoothing=smoothing,
                                        reduction="sum")
    return total / len(target)


@dataclass
class TailRecipe:
    """How ``fit_tail`` trains; the defaults are the recipe lab's (benchmarks/recipe_lab.py)."""

    steps: int
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # share of the steps with a linear warm-up; then cosine to zero
    smoothing: float = 0.1
    ema: float = 0.99  # decay per step of the weights' moving average; 0 = off
    crop: int | None = None  # MapAugment's crop (maps cached from a larger photo)
    mirror_maps: bool = False  # no cached mirrored view: flip the maps themselves (an approximation)

    def lr_at(self, step: int) -> float:
        warm = int(self.steps * self.warmup)
        if step < warm:
            return self.lr * (step + 1) / warm
        return self.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, self.steps - warm)))


def fit_tail(net: TailClassifier, maps: torch.Tensor, target: Sequence[int], lo: Sequence[int], hi: Sequence[int],
             recipe: TailRecipe, generator: torch.Generator | None = None) -> nn.Module:
    """Train ``net`` on cached ``maps`` ([N, C, h, w], or [N, 2, C, h, w] with mirrored views) for
    ``recipe.steps`` batches; returns the model to predict with (the EMA copy when ``recipe.ema``)."""
    n = len(maps)
    if not (len(target) == len(lo) == len(hi) == n):
        raise ValueError("maps, target, lo and hi differ in length")
    target_t, lo_t, hi_t = (torch.as_tensor(np.asarray(v), dtype=torch.long) for v in (target, lo, hi))
    batch = min(recipe.batch, n)
    optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    ema = ModelEmaV2(net, decay=recipe.ema) if recipe.ema > 0 else None
    augment = MapAugment(crop=recipe.crop)
    order, pos = torch.randperm(n, generator=generator), 0
    net.train()
    for step in range(recipe.steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=generator), 0
        index = order[pos:pos + batch]
        pos += batch
        x = augment(maps[index], generator)
        if recipe.mirror_maps:
            mirror = torch.rand(len(x), generator=generator) < 0.5
            x[mirror] = x[mirror].flip(-1)
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(step)
        loss = sliced_cross_entropy(net(x), target_t[index], lo_t[index], hi_t[index], recipe.smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(net)
    net.eval()
    return ema.module.eval() if ema is not None else net


@torch.no_grad()
def predict_tail(net: nn.Module, maps: torch.Tensor, lo: Sequence[int], hi: Sequence[int], crop: int | None = None,
                 batch: int = 64) -> list[np.ndarray]:
    """Softmax over each row's slice; with mirrored views ([N, 2, C, h, w]) the views' probabilities are
    averaged (flip TTA). ``crop``: evaluate the centre crop (maps cached larger than the training crop)."""
    net.eval()
    views = [maps] if maps.dim() == 4 else [maps[:, v] for v in range(maps.shape[1])]
    out: list[np.ndarray] = []
    for start in range(0, len(maps), batch):
        probs = [net(centre(v[start:start + batch], crop)) for v in views]
        for j in range(probs[0].shape[0]):
            a, b = int(lo[start + j]), int(hi[start + j])
            out.append(torch.stack([p[j, a:b].softmax(0) for p in probs]).mean(0).numpy())
    return out
