"""Training objective: sum of the parts' ID cross-entropies + batch-hard triplet + category CE.

    L = Σ_parts CE_ls(logits_p, item) + λ_t · triplet(ê) + λ_c · CE(category)

with ê the L2-normalised concatenated embedding. Batch-hard triplet (Hermans et al. 2017): for every
anchor, the farthest same-item image and the closest other-item image in the batch,
``max(0, m + d(a, p) - d(a, n))`` with Euclidean distance on unit vectors; anchors lacking a
positive or a negative in the batch are skipped (PK batches give every anchor both).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def batch_hard_triplet(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    dist = torch.cdist(embeddings, embeddings).clamp_min(1e-12)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    valid = positive.any(1) & (~same).any(1)
    if not valid.any():
        return embeddings.sum() * 0.0
    hardest_pos = dist.masked_fill(~positive, 0.0).amax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
    return F.relu(margin + hardest_pos - hardest_neg)[valid].mean()


def retrieval_loss(parts: torch.Tensor, logits: list[torch.Tensor], category_logits: torch.Tensor | None,
                   labels: torch.Tensor, categories: torch.Tensor, label_smoothing: float = 0.0,
                   triplet_weight: float = 0.0, margin: float = 0.3,
                   category_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its terms (floats, for logging). ``categories`` < 0 marks an unknown category."""
    ce = sum(F.cross_entropy(z.float(), labels, label_smoothing=label_smoothing) for z in logits)
    total = ce if logits else parts.sum() * 0.0
    terms = {"id_ce": float(total.detach())}
    if triplet_weight > 0:
        triplet = batch_hard_triplet(F.normalize(parts.flatten(1).float(), dim=1), labels, margin)
        total = total + triplet_weight * triplet
        terms["triplet"] = float(triplet.detach())
    known = categories >= 0
    if category_logits is not None and category_weight > 0 and known.any():
        cat = F.cross_entropy(category_logits[known].float(), categories[known])
        total = total + category_weight * cat
        terms["category_ce"] = float(cat.detach())
    return total, terms
