"""Backbone + one linear head per task; logits of other tasks' width are masked out."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MASK_VALUE = -1e4  # finite so fp16 autocast stays finite; softmax weight exp(-1e4) is exactly zero


class MultiHead(nn.Module):
    """Linear heads of different widths, returned as one [B, L_max] tensor per sample's own task."""

    def __init__(self, in_features: int, sizes: list[int]) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.width = max(sizes)
        self.heads = nn.ModuleList(nn.Linear(in_features, n) for n in sizes)
        mask = torch.full((len(sizes), self.width), MASK_VALUE)
        for t, n in enumerate(sizes):
            mask[t, :n] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, features: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        if len(self.heads) == 1:
            return self.heads[0](features)
        out = features.new_zeros(features.shape[0], self.width)
        for t, head in enumerate(self.heads):
            rows = (task_index == t).nonzero(as_tuple=True)[0]
            if rows.numel():
                out[rows, : self.sizes[t]] = head(features[rows]).to(out.dtype)
        return out + self.mask[task_index].to(out.dtype)


class ClassifierNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_features: int, head_sizes: list[int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = MultiHead(num_features, head_sizes)

    def forward(self, images: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images), task_index)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against a target distribution; smoothing spreads mass over the task's own values only.

    loss_i = -sum_j q_ij log softmax(z_i)_j with q = (1 - s) t + s / K_i on the K_i valid values.
    """
    if smoothing > 0:
        valid = (logits > MASK_VALUE / 2).to(targets.dtype)
        targets = (1 - smoothing) * targets + smoothing * valid / valid.sum(1, keepdim=True)
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
