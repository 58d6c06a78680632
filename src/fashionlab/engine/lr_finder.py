"""Learning-rate range test (Smith 2015): raise the LR exponentially over a few hundred steps and plot
the smoothed loss; the suggestion is the LR of the steepest descent, divided by nothing — read the plot."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RunConfig
from ..data.images import ImageDataset
from ..data.transforms import train_transform
from ..errors import FashionlabError
from ..io import atomic_open, write_json
from ..tasks import get_task
from .image_size import native_size, size_for_photos
from .predictor import make_loader
from .trainer import _targets, build_model, resolve_device


def lr_range_test(cfg: RunConfig, out: Path, start_lr: float = 1e-6, end_lr: float = 1.0, steps: int = 100,
                  smoothing: float = 0.9) -> dict[str, Any]:
    """Train a throw-away copy with LR growing from ``start_lr`` to ``end_lr``; write ``out`` (PNG) and JSON."""
    task = get_task(cfg.task)
    train_set, _, meta = task.load_train(cfg)
    if cfg.imgsz is None:
        cfg.imgsz = size_for_photos(native_size(train_set.paths, seed=cfg.seed))
    device = resolve_device(cfg.device)
    net, objective, mean, std = build_model(cfg, task, meta)
    net = copy.deepcopy(net).to(device).train()
    dataset = ImageDataset(train_set.paths, _targets(train_set), train_transform(cfg.imgsz, mean, std, cfg.scale_min,
                                                                                 cfg.hflip, cfg.color_jitter))
    loader = make_loader(dataset, cfg.batch, cfg.workers, shuffle=True, drop_last=len(dataset) > cfg.batch)
    optimizer = (torch.optim.SGD(net.parameters(), lr=start_lr, momentum=cfg.momentum) if cfg.optimizer == "sgd"
                 else torch.optim.AdamW(net.parameters(), lr=start_lr, weight_decay=cfg.weight_decay))
    factor = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    step = 0
    while step < steps:
        for images, (task_index, targets) in loader:
            lr = start_lr * factor ** step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = objective(net(images.to(device), task_index.to(device)), targets.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            avg = smoothing * avg + (1 - smoothing) * loss.item()
            smoothed = avg / (1 - smoothing ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            step += 1
            if step >= steps or not math.isfinite(smoothed) or smoothed > 4 * best:
                step = steps
                break
    if len(losses) < 3:
        raise FashionlabError(f"{cfg.data}: too few batches for a learning-rate range test")
    slopes = np.gradient(np.array(losses), np.log10(np.array(lrs)))
    suggestion = float(lrs[int(np.argmin(slopes[: max(1, int(len(slopes) * 0.9))]))])
    _plot(lrs, losses, suggestion, out)
    result = {"suggested_lr": suggestion, "lrs": lrs, "losses": losses, "plot": str(out)}
    write_json(out.with_suffix(".json"), result)
    return result


def _plot(lrs: list[float], losses: list[float], suggestion: float, out: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="red", linestyle="--", label=f"steepest descent: {suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    with atomic_open(out, "wb") as handle:
        handle.write(buffer.getvalue())
