"""Batched, streaming prediction with optional test-time augmentation."""
from __future__ import annotations

import signal

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.images import ImageDataset
from ..data.transforms import tta_transform
from ..models.losses import activation
from ..models.net import ClassifierNet
from ..data.labelled import LabelledSet


def ignore_sigint(worker_id: int) -> None:
    """Workers leave Ctrl-C to the main process, which stops after the current batch (engine/signals.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset, batch: int, workers: int, shuffle: bool = False, drop_last: bool = False,
                sampler=None, batch_sampler=None) -> DataLoader:
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=torch.cuda.is_available(), worker_init_fn=ignore_sigint if workers else None)
    return DataLoader(dataset, batch_size=batch, shuffle=shuffle, num_workers=workers, drop_last=drop_last,
                      sampler=sampler, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                      worker_init_fn=ignore_sigint if workers else None)


@torch.no_grad()
def predict_probs(net: ClassifierNet, data: LabelledSet, imgsz: int, mean, std, tta: str = "none",
                  batch: int = 64, workers: int = 2, device: str = "cpu", multilabel: bool = False) -> list[np.ndarray]:
    """Probabilities per image (softmax, or sigmoid for multi-label), trimmed to its task's width.

    TTA views are averaged after the activation.
    """
    transform = tta_transform(imgsz, mean, std, tta)
    dataset = ImageDataset(data.paths, data.task_index.tolist(), transform, draft=int(imgsz / 0.875) + 1)
    net.eval().to(device)
    sizes = net.head.sizes
    out: list[np.ndarray] = []
    for views, task_index in make_loader(dataset, batch, workers):
        n, v = views.shape[:2]
        logits = net(views.flatten(0, 1).to(device), task_index.repeat_interleave(v).to(device))
        probs = activation(multilabel)(logits).view(n, v, -1).mean(1).cpu().numpy()
        out += [p[: sizes[t]] for p, t in zip(probs, task_index.tolist())]
    return out
