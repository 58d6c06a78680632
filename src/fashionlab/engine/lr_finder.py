"""Learning-rate range test (Smith 2015): raise the LR exponentially over a few hundred steps and plot
the smoothed loss; the suggestion is the LR of the steepest descent, divided by nothing — read the plot."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FashionlabError
from ..io import atomic_open, write_json
from .devices import resolve_device
from .hooks import FitHooks, move_to
from .image_size import native_size, size_for_photos
from .predictor import make_loader


def lr_range_test(hooks: FitHooks, out: Path, start_lr: float = 1e-6, end_lr: float = 1.0, steps: int = 100,
                  smoothing: float = 0.9) -> dict[str, Any]:
    """Train a throw-away copy with LR growing from ``start_lr`` to ``end_lr`` using the task's own
    training step; write ``out`` (PNG) and JSON beside it."""
    cfg = hooks.cfg
    hooks.load_data()
    if cfg.imgsz is None:
        cfg.imgsz = size_for_photos(native_size(hooks.train_paths(), seed=cfg.seed))
    hooks.check_imgsz(cfg.imgsz)
    device = resolve_device(cfg.device)
    net = copy.deepcopy(hooks.build_model()).to(device).train()
    dataset, _ = hooks.datasets(cfg.imgsz)
    loader = hooks.train_loader(dataset, 0, 1) or make_loader(dataset, cfg.batch, cfg.workers, shuffle=True,
                                                              drop_last=len(dataset) > cfg.batch)
    optimizer = (torch.optim.SGD(net.parameters(), lr=start_lr, momentum=cfg.momentum) if cfg.optimizer == "sgd"
                 else torch.optim.AdamW(net.parameters(), lr=start_lr, weight_decay=cfg.weight_decay))
    factor = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    step = 0
    while step < steps:
        for batch in loader:
            lr = start_lr * factor ** step
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, _ = hooks.loss_step(net, move_to(batch, device))
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
