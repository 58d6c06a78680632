"""The baseline: the fine-tune loop a user writes by hand with timm + torch (no fashionlab engine).

Same backbone and offline ImageNet weights as fashionlab, the same image size, split and wall-clock
budget. What a careful user would write: torchvision transforms on PIL images (RandomResizedCrop,
flip, colour jitter), AdamW at 1e-3, cross-entropy, a cosine schedule over the epochs that fit the budget (planned
from the first epoch's time), one classifier over all outputs; for FashionAI attributes the logits
of the other tasks are masked out so each row is a softmax over its own task's values.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fashionlab.models.backbone import create_backbone


@dataclass
class Item:
    path: Path
    target: int  # index into the concatenated outputs
    lo: int = 0  # this row's slice of the outputs (attributes: its task's values)
    hi: int = 0


class PlainSet(Dataset):
    def __init__(self, items: list[Item], tf) -> None:
        self.items, self.tf = items, tf

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        return self.tf(Image.open(item.path).convert("RGB")), item.target, item.lo, item.hi


def _masked(logits: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    cols = torch.arange(logits.shape[1])[None]
    return logits.masked_fill((cols < lo[:, None]) | (cols >= hi[:, None]), -1e4)


def transforms_for(imgsz: int, mean, std, jitter: float = 0.2):
    """The same augmentation as fashionlab's defaults (crop scale 0.5-1, flip, colour jitter 0.2)."""
    train = transforms.Compose([transforms.RandomResizedCrop(imgsz, scale=(0.5, 1.0)), transforms.RandomHorizontalFlip(),
                                transforms.ColorJitter(jitter, jitter, jitter, jitter / 4),
                                transforms.ToTensor(), transforms.Normalize(mean, std)])
    test = transforms.Compose([transforms.Resize((imgsz, imgsz)), transforms.ToTensor(), transforms.Normalize(mean, std)])
    return train, test


def plain_model(width: int, model: str = "efficientnet_lite0") -> tuple[nn.Module, tuple, tuple]:
    backbone = create_backbone(model)
    return nn.Sequential(backbone.model, nn.Linear(backbone.num_features, width)), backbone.mean, backbone.std


@torch.no_grad()
def predict(model: nn.Module, items: list[Item], tf, batch: int, workers: int) -> list[np.ndarray]:
    model.eval()
    out: list[np.ndarray] = []
    for images, _, lo, hi in DataLoader(PlainSet(items, tf), batch_size=batch * 2, num_workers=workers):
        probs = _masked(model(images), lo, hi).softmax(1).numpy()
        out += [p[a:b] for p, a, b in zip(probs, lo.tolist(), hi.tolist())]
    return out


def finetune_in_budget(train_items: list[Item], val_items: list[Item], width: int, imgsz: int, budget_s: float,
                       batch: int = 32, workers: int = 2, lr: float = 1e-3, seed: int = 0,
                       also_at: int | None = None) -> tuple[list[np.ndarray], dict]:
    """Train until the budget (minus the time the final prediction needs) is spent; predict ``val_items``.

    ``also_at``: predict again at that size, after the budget (``info["probs_also_at"]``), to show what
    testing at fashionlab's larger test size alone would give the plain loop."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model, mean, std = plain_model(width)
    train_tf, test_tf = transforms_for(imgsz, mean, std)
    loader = DataLoader(PlainSet(train_items, train_tf), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=len(train_items) > batch, persistent_workers=workers > 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    total_steps, step, epochs, epoch_s = None, 0, 0, 0.0
    # inference is ~3x cheaper than a training step per image; keep that reserve for the final prediction
    while True:
        epoch_start = time.perf_counter()
        model.train()
        for images, target, lo, hi in loader:
            if total_steps is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
            loss = loss_fn(_masked(model(images), lo, hi), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if time.perf_counter() - started > budget_s:
                break
        epochs += 1
        epoch_s = time.perf_counter() - epoch_start
        reserve = epoch_s * len(val_items) / max(1, len(train_items)) / 3 + 5
        left = budget_s - (time.perf_counter() - started) - reserve
        if total_steps is None:  # planned once, from the first epoch (it ran at the constant starting LR)
            planned = epochs + max(0, int(left // epoch_s))
            total_steps = max(1, (planned - epochs) * len(loader))
            step = 0
        if left < epoch_s:
            break
    probs = predict(model, val_items, test_tf, batch, workers)
    info = {"epochs": epochs, "epoch_s": round(epoch_s, 1), "seconds": round(time.perf_counter() - started, 1)}
    if also_at and also_at != imgsz:
        info["probs_also_at"] = predict(model, val_items, transforms_for(also_at, mean, std)[1], batch, workers)
    return probs, info


def images_per_second(train_items: list[Item], width: int, imgsz: int, batch: int, workers: int,
                      epochs: int = 2) -> float:
    """Steady-state training throughput of the plain loop (the last epoch's images/s)."""
    model, mean, std = plain_model(width)
    train_tf, _ = transforms_for(imgsz, mean, std)
    loader = DataLoader(PlainSet(train_items, train_tf), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    ips = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for images, target, lo, hi in loader:
            loss = loss_fn(_masked(model(images), lo, hi), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(images)
        ips = seen / (time.perf_counter() - start)
    return ips
