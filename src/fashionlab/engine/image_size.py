"""Choose the training image size from the photos themselves, then from the time budget."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.images import image_size
from ..errors import FashionlabError

CANDIDATES = (96, 112, 128, 160, 192, 224)


def native_size(paths: Sequence[Path], sample: int = 64, seed: int = 0) -> int:
    """Median long side of a sample of images (headers only, no decoding)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paths), size=min(sample, len(paths)), replace=False) if len(paths) else []
    sides = []
    for i in chosen:
        try:
            sides.append(max(image_size(paths[int(i)])))
        except FashionlabError:  # a bad image is reported by check_images, not here
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


def test_size(train_size: int, scale_min: float, step: int = 16) -> int:
    """The size to validate and predict at after training on RandomResizedCrop(scale=(scale_min, 1)).

    A random crop covering a share s of the image, resized to ``train_size``, magnifies objects by
    1/sqrt(s); a whole-image resize at test time does not, so objects look smaller than in training
    (Touvron et al., "Fixing the train-test resolution discrepancy", 2019). Testing at ``train_size``
    times the mean magnification, rounded to ``step``, restores the apparent object size. Measured on
    TrashNet, efficientnet_lite0 fine-tuned at 128 px: val accuracy 0.863 at 128 px, 0.885 at 144 px.
    """
    if scale_min >= 0.999:
        return train_size
    mean_side = 2 / 3 * (1 - scale_min ** 1.5) / (1 - scale_min)  # E[sqrt(s)], s ~ U(scale_min, 1)
    size = train_size / mean_side
    return max(train_size, int(round(size / step)) * step)
