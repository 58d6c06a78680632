"""Training objectives on soft targets, all masked to each sample's own task values.

Notation: z logits, p = softmax(z) over the sample's valid values, q the target distribution
(one-hot, label-smoothed, 'm'-softened or mixed by mixup/CutMix), C a K×K severity matrix.

- ce:     L = -Σ_j q_j log p_j
- focal:  L = -Σ_j q_j (1 - p_j)^γ log p_j            (Lin et al., generalised to soft targets)
- cost:   L += λ Σ_i Σ_j q_i C[i, j] p_j               (expected severity of the classes the sample
                                                     is pushed toward; 0 when all mass is on the truth)
- multi-label (styles): bce  L = mean_j BCE(σ(z_j), y_j);  focal  L = mean_j α_t (1 - p_t)^γ BCE.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .net import MASK_VALUE


def smooth_targets(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """q = (1 - s) t + s / K_i over the K_i valid values of each sample's task."""
    if smoothing <= 0:
        return targets
    valid = (logits > MASK_VALUE / 2).to(targets.dtype)
    return (1 - smoothing) * targets + smoothing * valid / valid.sum(1, keepdim=True)


def soft_focal(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    log_p = F.log_softmax(logits.float(), dim=1)
    weight = (1 - log_p.exp()).clamp(min=0) ** gamma
    return -(targets * weight * log_p).sum(1).mean()


def expected_cost(logits: torch.Tensor, targets: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    probs = F.softmax(logits.float(), dim=1)
    return ((targets @ cost) * probs).sum(1).mean()


def multilabel_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str, gamma: float,
                    alpha: float | None) -> torch.Tensor:
    logits, targets = logits.float(), targets.float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if kind == "bce":
        return bce.mean()
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = (1 - p_t) ** gamma * bce
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()


@dataclass
class Objective:
    """What the engine minimises and how logits become probabilities, for one task and config."""

    loss_kind: str = "ce"  # ce | focal | bce (multi-label)
    smoothing: float = 0.0
    gamma: float = 2.0
    alpha: float | None = None
    multilabel: bool = False
    cost: torch.Tensor | None = None
    cost_weight: float = 1.0

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            return multilabel_loss(logits, targets, "focal" if self.loss_kind == "focal" else "bce",
                                   self.gamma, self.alpha)
        q = smooth_targets(logits, targets, self.smoothing)
        if self.loss_kind == "focal":
            loss = soft_focal(logits, q, self.gamma)
        else:
            loss = -(q * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
        if self.cost is not None:
            loss = loss + self.cost_weight * expected_cost(logits, targets, self.cost.to(logits.device))
        return loss

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float()) if self.multilabel else logits.float().softmax(1)

    @classmethod
    def from_config(cls, cfg, multilabel: bool = False, cost: np.ndarray | None = None) -> "Objective":
        return cls(cfg.loss, getattr(cfg, "label_smoothing", 0.0), cfg.focal_gamma, cfg.focal_alpha, multilabel,
                   torch.as_tensor(cost, dtype=torch.float32) if cost is not None else None,
                   getattr(cfg, "cost_weight", 1.0))


def activation(multilabel: bool):
    return (lambda z: torch.sigmoid(z.float())) if multilabel else (lambda z: z.float().softmax(1))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Plain soft-target cross-entropy with smoothing over the valid values only."""
    return Objective("ce", smoothing)(logits, targets)
