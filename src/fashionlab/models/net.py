"""Backbone + one head per task; logits beyond a task's width are masked out."""
from __future__ import annotations

import torch
from torch import nn

MASK_VALUE = -1e4  # finite so fp16 autocast stays finite; softmax weight exp(-1e4) is exactly zero


class SEGate(nn.Module):
    """Squeeze-excitation on the pooled feature vector: f * sigmoid(W2 relu(W1 f)), a light attention block."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, max(8, channels // reduction)), nn.ReLU(inplace=True),
                                nn.Linear(max(8, channels // reduction), channels), nn.Sigmoid())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features * self.fc(features)


def _task_head(in_features: int, n: int, hidden: int) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_features, n)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, n))


class MultiHead(nn.Module):
    """Heads of different widths, returned as one [B, L_max] tensor per sample's own task."""

    def __init__(self, in_features: int, sizes: list[int], kind: str = "linear", hidden: int = 0) -> None:
        super().__init__()
        self.sizes, self.kind, self.hidden, self.neck_features = list(sizes), kind, hidden, in_features
        self.width = max(sizes)
        self.neck = SEGate(in_features) if kind == "se" else nn.Identity()
        self.heads = nn.ModuleList(_task_head(in_features, n, hidden) for n in sizes)
        mask = torch.full((len(sizes), self.width), MASK_VALUE)
        for t, n in enumerate(sizes):
            mask[t, :n] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    def config(self) -> dict:
        return {"kind": self.kind, "hidden": self.hidden}

    def forward(self, features: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        features = self.neck(features)
        if len(self.heads) == 1:
            return self.heads[0](features)
        out = features.new_zeros(features.shape[0], self.width)
        for t, head in enumerate(self.heads):
            rows = (task_index == t).nonzero(as_tuple=True)[0]
            if rows.numel():
                out[rows, : self.sizes[t]] = head(features[rows]).to(out.dtype)
        return out + self.mask[task_index].to(out.dtype)


class ClassifierNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_features: int, head_sizes: list[int], head: str = "linear",
                 hidden: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = MultiHead(num_features, head_sizes, head, hidden)

    def forward(self, images: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images), task_index)
