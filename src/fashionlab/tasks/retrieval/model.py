"""Multi-branch part embedding (MGN-style) on the backbone's last feature map, and its weights file.

Branches, each a list of parts pooled from the map [B, C, H, W]:

- ``global``:     the whole map (1 part);
- ``horizontal``: 2 and 3 stripes of rows (``stripes``), top to bottom;
- ``vertical``:   2 and 3 stripes of columns, left to right;
- ``ring``:       ``rings`` square rings from the centre outward (see ``ring_masks``).

Every part is pooled as avg + max (summed; no parameters), then 1x1 conv -> BN gives its embedding
(``embed_dim``) and, in training, a Linear ID classifier over the training items. The image's
embedding is the L2-normalised concatenation of its parts. An optional category head (Linear on the
pooled map) predicts the garment category for category-restricted search.

``RUN/weights/best.pt`` (format ``fashionlab-retrieval-1``) is a plain dict of tensors + JSON-able
metadata, loadable with ``torch.load(..., weights_only=True)``; the ID classifiers are left out.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import FashionlabError
from ...io import atomic_open, load_torch
from .features import FeatureMap, create_feature_map, last_stage_model

FORMAT = "fashionlab-retrieval-1"
SPEC_KEYS = ("model", "imgsz", "branches", "embed_dim", "stripes", "rings", "output_stride", "categories")
OPTIONAL_SPEC = {"head_conv": False, "raw_weight": 0.0, "frozen_weight": 0.0}  # absent from older weights files


@lru_cache(maxsize=64)
def ring_masks(h: int, w: int, rings: int) -> torch.Tensor:
    """Boolean masks [rings, h, w] that partition the map into square rings, centre first.

    A cell's distance to the centre is its Chebyshev distance with each axis scaled by its half-size
    (so rings stay square-ish on non-square maps); the distinct distances, inner to outer, are spread
    evenly over the rings. A map with fewer distinct distances than rings repeats its outermost ring.
    """
    ys = ((torch.arange(h) + 0.5 - h / 2).abs() / (h / 2))[:, None]
    xs = ((torch.arange(w) + 0.5 - w / 2).abs() / (w / 2))[None, :]
    dist = torch.maximum(ys.expand(h, w), xs.expand(h, w))
    levels, level_of = torch.unique(torch.round(dist * 1e4), return_inverse=True)
    n = len(levels)
    ring_of = level_of * rings // n if n >= rings else level_of
    masks = torch.stack([ring_of == r for r in range(min(rings, n))])
    if n < rings:
        masks = torch.cat([masks, masks[-1:].expand(rings - n, h, w)])
    return masks


def ring_pool(x: torch.Tensor, rings: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, rings]: per ring, mean + max over its cells."""
    masks = ring_masks(x.shape[-2], x.shape[-1], rings).to(x.device)  # [R, H, W]
    flat, m = x.flatten(2), masks.flatten(1)  # [B, C, HW], [R, HW]
    avg = flat @ (m.to(x.dtype) / m.sum(1, keepdim=True)).t()  # [B, C, R]
    neg = torch.finfo(x.dtype).min
    mx = flat[:, :, None, :].masked_fill(~m[None, None], neg).amax(-1)
    return avg + mx


def stripe_pool(x: torch.Tensor, parts: int, axis: str) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, parts]: rows (``horizontal``) or columns (``vertical``), mean + max."""
    size = (parts, 1) if axis == "horizontal" else (1, parts)
    return (F.adaptive_avg_pool2d(x, size) + F.adaptive_max_pool2d(x, size)).flatten(2)


def part_names(branches: list[str], stripes: list[int], rings: int) -> list[str]:
    names: list[str] = []
    for branch in branches:
        if branch == "global":
            names.append("global")
        elif branch == "ring":
            names += [f"ring{rings}_{i}" for i in range(rings)]
        else:
            names += [f"{branch[0]}{p}_{i}" for p in stripes for i in range(p)]
    return names


class RetrievalNet(nn.Module):
    """``forward`` gives the per-part embeddings [B, P, D], the ID logits per part (training nets only)
    and the category logits (or None); ``embed`` gives the normalised embedding [B, P * D]."""

    def __init__(self, backbone: nn.Module, channels: int, branches: list[str], embed_dim: int = 128,
                 stripes: list[int] | None = None, rings: int = 2, n_ids: int = 0, n_categories: int = 0,
                 raw_weight: float = 0.0, frozen: FrozenEmbedding | None = None, frozen_weight: float = 0.0) -> None:
        super().__init__()
        self.backbone, self.branches, self.channels, self.raw_weight = backbone, list(branches), channels, raw_weight
        self.frozen, self.frozen_weight = frozen, (frozen_weight if frozen is not None else 0.0)
        self.stripes, self.rings, self.embed_dim = list(stripes or [2, 3]), rings, embed_dim
        self.parts = part_names(self.branches, self.stripes, rings)
        self.reduce = nn.ModuleList(nn.Conv2d(channels, embed_dim, 1, bias=False) for _ in self.parts)
        self.bn = nn.ModuleList(nn.BatchNorm1d(embed_dim) for _ in self.parts)
        self.classifiers = nn.ModuleList(nn.Linear(embed_dim, n_ids, bias=False) for _ in self.parts) \
            if n_ids else nn.ModuleList()
        self.category = nn.Linear(channels, n_categories) if n_categories else None
        for head in self.classifiers:
            nn.init.normal_(head.weight, std=0.001)

    @property
    def dim(self) -> int:
        return (len(self.parts) * self.embed_dim + (self.channels if self.raw_weight > 0 else 0)
                + (self.frozen.channels if self.frozen is not None else 0))

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, P] in ``self.parts`` order."""
        pooled = []
        for branch in self.branches:
            if branch == "global":
                pooled.append((fmap.mean((2, 3)) + fmap.amax((2, 3)))[:, :, None])
            elif branch == "ring":
                pooled.append(ring_pool(fmap, self.rings))
            else:
                pooled += [stripe_pool(fmap, p, branch) for p in self.stripes]
        return torch.cat(pooled, dim=2)

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        fmap = self.backbone(images)[-1].float()
        pooled = self.pool(fmap)
        parts = torch.stack([bn(conv(pooled[:, :, i, None, None]).flatten(1))
                             for i, (conv, bn) in enumerate(zip(self.reduce, self.bn))], dim=1)
        mean = fmap.mean((2, 3))
        category = self.category(mean) if self.category is not None else None
        return parts, mean, category

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        parts, _, category = self._run(images)
        return parts, [head(parts[:, i]) for i, head in enumerate(self.classifiers)], category

    def descriptor(self, parts: torch.Tensor, mean: torch.Tensor, frozen: torch.Tensor | None = None) -> torch.Tensor:
        """The unit-length search embedding. With ``raw_weight`` r > 0 it also holds the average-pooled map
        itself (no trained projection), with a frozen copy of the pretrained net (``frozen_weight`` f > 0)
        that net's pooled features: cosine = (1 - r - f) x cosine of the parts + r x cosine of the raw map
        + f x cosine of the frozen features, so what the backbone knew before training still counts for
        items it never trained on."""
        pieces = [(F.normalize(parts.flatten(1), dim=1), 1.0 - self.raw_weight - self.frozen_weight)]
        if self.raw_weight > 0:
            pieces.append((F.normalize(mean, dim=1), self.raw_weight))
        if frozen is not None:
            pieces.append((F.normalize(frozen, dim=1), self.frozen_weight))
        if len(pieces) == 1:
            return pieces[0][0]
        return torch.cat([vector * max(weight, 0.0) ** 0.5 for vector, weight in pieces], dim=1)

    def embed_with_category(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts, mean, category = self._run(images)
        frozen = self.frozen(images) if self.frozen is not None else None
        return self.descriptor(parts, mean, frozen), category

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_with_category(images)[0]


class FrozenEmbedding(nn.Module):
    """The pretrained backbone as ImageNet left it, average-pooled (stride 32, head conv kept): the features a
    frozen-feature probe ranks with. Never trained: always in eval mode, no gradients."""

    def __init__(self, model: nn.Module, channels: int, source: str = "") -> None:
        super().__init__()
        self.model, self.channels, self.source = model, channels, source  # source: where its weights came from
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenEmbedding:  # noqa: ARG002 - BatchNorm keeps ImageNet's statistics
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[-1].float().mean((2, 3))


def frozen_embedding(name: str, pretrained: str | None = None) -> FrozenEmbedding:
    """With ``pretrained`` (as in ``create_feature_map``): ImageNet weights; without: an empty module for a
    weights file's state to fill."""
    if pretrained is None:
        return FrozenEmbedding(*last_stage_model(name, 32, head_conv=True))
    feature_map = create_feature_map(name, pretrained, 32, head_conv=True)
    return FrozenEmbedding(feature_map.model, feature_map.channels, feature_map.weights)


def build_net(feature_map: FeatureMap, spec: dict[str, Any], n_ids: int = 0) -> RetrievalNet:
    """The training net: no frozen copy (training and its validation rank with the trained parts; the copy
    joins the embedding in the weights file, see ``save_retrieval``)."""
    return RetrievalNet(feature_map.model, feature_map.channels, spec["branches"], spec["embed_dim"],
                        spec["stripes"], spec["rings"], n_ids, len(spec.get("categories") or []),
                        float(spec.get("raw_weight", 0.0)))


def save_retrieval(path: Path, net: RetrievalNet, spec: dict[str, Any], mean, std,
                   extra: dict[str, Any] | None = None, frozen: FrozenEmbedding | None = None) -> Path:
    """Write best.pt without the ID classifiers (only the embedding is needed to search); with ``frozen``
    (``spec['frozen_weight']`` > 0) the frozen copy's weights too, so loading it needs no download."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items() if not k.startswith("classifiers.")}
    dim = net.dim
    if frozen is not None:
        state |= {f"frozen.{k}": v.detach().cpu().clone() for k, v in frozen.state_dict().items()}
        dim += frozen.channels
    payload = {"format": FORMAT, "task": "retrieval", **spec, "dim": dim, "mean": [float(m) for m in mean],
               "std": [float(s) for s in std], "extra": extra or {}, "state_dict": state}
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


def load_retrieval_payload(path: Path) -> tuple[RetrievalNet, dict[str, Any]]:
    """Rebuild the network from a best.pt written by ``save_retrieval`` (never unpickles code)."""
    payload = load_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        task = payload.get("task") if isinstance(payload, dict) else None
        hint = f" (it holds a '{task}' model)" if task else ""
        raise FashionlabError(f"{path}: not a retrieval weights file{hint}; use a retrieval RUN/weights/best.pt")
    spec = {k: payload[k] for k in SPEC_KEYS} | {k: payload.get(k, v) for k, v in OPTIONAL_SPEC.items()}
    model, channels = last_stage_model(spec["model"], spec["output_stride"], bool(spec["head_conv"]))
    frozen_weight = float(spec["frozen_weight"])
    net = RetrievalNet(model, channels, spec["branches"], spec["embed_dim"], spec["stripes"], spec["rings"], 0,
                       len(spec["categories"] or []), float(spec["raw_weight"]),
                       frozen_embedding(spec["model"]) if frozen_weight > 0 else None, frozen_weight)
    net.load_state_dict(payload["state_dict"], strict=True)
    return net.eval(), {**spec, "dim": payload["dim"], "mean": tuple(payload["mean"]), "std": tuple(payload["std"]),
                        "extra": payload.get("extra", {})}
