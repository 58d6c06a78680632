"""Stage 1 of fine-tuning: train the new head on cached features of the frozen backbone.

Extracting features once and fitting the linear heads on them is far faster than running the frozen
backbone every epoch (the head sees the same features each time, without augmentation).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data.images import ImageDataset
from ..data.transforms import eval_transform
from ..models.losses import Objective
from ..models.net import ClassifierNet
from ..data.labelled import LabelledSet
from .predictor import make_loader
from .schedules import lr_lambda


@dataclass
class HeadStageResult:
    best_metric: float
    best_epoch: int
    history: list[dict]
    extract_s: float
    infer_s_per_image: float


@torch.no_grad()
def extract_features(net: ClassifierNet, data: LabelledSet, imgsz: int, mean, std, batch: int, workers: int,
                     device: str) -> torch.Tensor:
    unique = list(dict.fromkeys(data.paths))  # resampled sets repeat images: extract each once
    position = {path: i for i, path in enumerate(unique)}
    dataset = ImageDataset(unique, list(range(len(unique))), eval_transform(imgsz, mean, std))
    net.backbone.eval().to(device)
    fmt = torch.channels_last if next(net.backbone.parameters()).is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    chunks = [net.backbone(images.to(device).contiguous(memory_format=fmt)).float().cpu()
              for images, _ in make_loader(dataset, batch, workers)]
    if not chunks:
        return torch.zeros(0, net.head.neck_features)
    return torch.cat(chunks)[torch.as_tensor([position[p] for p in data.paths], dtype=torch.long)]


def _head_probs(net: ClassifierNet, feats: torch.Tensor, task_index: torch.Tensor,
                objective: Objective) -> list[np.ndarray]:
    sizes = net.head.sizes
    probs = objective.activate(net.head(feats, task_index)).numpy()
    return [p[: sizes[t]] for p, t in zip(probs, task_index.tolist())]


def fit_heads(head: torch.nn.Module, feats: torch.Tensor, task_index: torch.Tensor, targets: torch.Tensor,
              objective: Objective, epochs: int, lr: float, weight_decay: float, seed: int, schedule: str = "onecycle",
              after_epoch: Callable[[int, float], None] | None = None, batch: int = 256) -> float:
    """AdamW on cached features, ``schedule`` over all steps, shuffled batches drawn with ``seed``; calls
    ``after_epoch(epoch, mean loss)`` after each epoch and returns the last epoch's mean loss. Batches go
    to the head's device; ``feats`` may stay on the CPU."""
    device = next(head.parameters()).device
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, epochs * max(1, -(-len(feats) // batch))))
    generator = torch.Generator().manual_seed(seed)
    mean_loss = float("nan")
    for epoch in range(1, epochs + 1):
        losses = []
        for chunk in torch.randperm(len(feats), generator=generator).split(batch):
            loss = objective(head(feats[chunk].to(device), task_index[chunk].to(device)), targets[chunk].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        mean_loss = float(np.mean(losses))
        if after_epoch is not None:
            after_epoch(epoch, mean_loss)
    return mean_loss


def train_head(net: ClassifierNet, train: LabelledSet, val: LabelledSet, score: Callable[[list[np.ndarray]], float],
               imgsz: int, mean, std, epochs: int, lr: float, weight_decay: float, objective: Objective, batch: int,
               workers: int, device: str, seed: int = 0) -> HeadStageResult:
    """Fit ``net.head`` on frozen features; leaves the best head (by ``score`` on val) in ``net``."""
    start = time.perf_counter()
    f_train = extract_features(net, train, imgsz, mean, std, batch, workers, device)
    f_val = extract_features(net, val, imgsz, mean, std, batch, workers, device)
    extract_s = time.perf_counter() - start
    infer = extract_s / max(1, len(train) + len(val))
    head = net.head.cpu().train()
    t_val = torch.as_tensor(val.task_index)
    best_metric, best_epoch, best_state, history = -np.inf, 0, copy.deepcopy(head.state_dict()), []

    def after_epoch(epoch: int, train_loss: float) -> None:
        nonlocal best_metric, best_epoch, best_state
        head.eval()
        with torch.no_grad():
            metric = score(_head_probs(net, f_val, t_val, objective)) if len(val) else -train_loss
        head.train()
        history.append({"stage": "head", "epoch": epoch, "train_loss": train_loss, "val_metric": metric})
        if metric > best_metric:
            best_metric, best_epoch, best_state = metric, epoch, copy.deepcopy(head.state_dict())

    fit_heads(head, f_train, torch.as_tensor(train.task_index), torch.as_tensor(train.targets), objective, epochs, lr,
              weight_decay, seed, "onecycle", after_epoch)
    head.load_state_dict(best_state)
    head.eval()
    return HeadStageResult(float(best_metric), best_epoch, history, extract_s, infer)
