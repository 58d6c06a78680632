"""Mixup and CutMix on soft targets; pairs are only formed between samples of the same task."""
from __future__ import annotations

import numpy as np
import torch


def mix_batch(images: torch.Tensor, task_index: torch.Tensor, targets: torch.Tensor, mixup: float, cutmix: float,
              prob: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return mixed (images, targets). With both enabled, each batch picks one of the two at random.

    mixup: x = λ x_a + (1-λ) x_b; CutMix pastes a box of x_b covering (1-λ) of the area; in both the
    target is λ q_a + (1-λ) q_b with λ ~ Beta(α, α) (CutMix λ corrected to the box actually pasted).
    """
    if (mixup <= 0 and cutmix <= 0) or rng.random() > prob or len(images) < 2:
        return images, targets
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    perm = torch.as_tensor(rng.permutation(len(images)))
    same = (task_index == task_index[perm]).to(images.dtype)  # never mix two different attribute tasks
    if use_cutmix:
        h, w = images.shape[-2:]
        cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        mixed = images.clone()
        keep = same.view(-1, 1, 1, 1)
        mixed[..., y0:y1, x0:x1] = keep * images[perm][..., y0:y1, x0:x1] + (1 - keep) * images[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        weight = (lam + (1 - lam) * (1 - same)).view(-1, 1, 1, 1)  # lam where mixed, 1 where not
        mixed = weight * images + (1 - weight) * images[perm]
    lam_row = (lam + (1 - lam) * (1 - same)).view(-1, 1).to(targets.dtype)
    return mixed, lam_row * targets + (1 - lam_row) * targets[perm]
