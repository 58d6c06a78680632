"""Photos decoded once into a uint8 tensor, augmented as whole batches in the training process.

On a 2-core CPU, data-loader workers compete with the model for the same cores, and every epoch
re-decodes the same JPEGs. Small training sets (a few thousand photos at <= 224 px: 3,400 photos at
160 px are 260 MB) fit in memory as uint8: decode them once (``decode_images``), then augment a whole
batch at once with one ``affine_grid`` + ``grid_sample`` (``BatchAugment``: random-resized crop, flip,
optional brightness/contrast/saturation jitter) — no worker processes, no per-image Python.

``BatchAugment`` also resamples to any output size, so progressive resizing needs no re-decode:
keep the cache at the largest size and ask for smaller batches early on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .images import load_rgb

cv2.setNumThreads(1)


def _decode_one(path: Path, size: int) -> np.ndarray:
    image = load_rgb(path, draft=size)  # JPEG draft: the decoder downscales by DCT to >= size first
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def decode_images(paths: Sequence[Path], size: int, threads: int = 1) -> torch.Tensor:
    """Every image once, resized (squashed) to ``size`` x ``size``: a [N, 3, size, size] uint8 tensor.

    An unreadable file raises ``FashionlabError`` naming it (``load_rgb``). ``threads`` > 1 decodes in
    a thread pool (PIL and OpenCV release the GIL)."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)

    def put(i: int) -> None:
        out[i] = torch.from_numpy(_decode_one(paths[i], size)).permute(2, 0, 1)

    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, range(len(paths))))
    else:
        for i in range(len(paths)):
            put(i)
    return out


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              channels_last: bool = True) -> torch.Tensor:
    """uint8 (or 0-255 float) [B, 3, H, W] -> normalised float32, channels_last by default."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1) * 255.0
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1) * 255.0
    out = (images.float() - m) / s
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


@dataclass
class BatchAugment:
    """Random-resized crop (area ``scale``, aspect ``ratio``), horizontal flip and colour jitter, per image,
    computed for the whole batch in one resampling pass. Output: float 0-255, [B, 3, size, size]."""

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    jitter: float = 0.0  # brightness/contrast/saturation factors drawn from [1 - j, 1 + j]

    def __call__(self, images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = images.shape[0]
        r = torch.rand(n, 5, generator=generator)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * r[:, 0]
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * r[:, 1])
        w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width / image width
        h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = (1 - w) * (2 * r[:, 2] - 1)  # crop centre in [-1, 1] coordinates, crop kept inside
        cy = (1 - h) * (2 * r[:, 3] - 1)
        flip = torch.where(r[:, 4] < self.hflip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
        out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.jitter > 0:
            out = self._jitter(out, generator)
        return out

    def _jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        f = 1 + self.jitter * (2 * torch.rand(n, 3, 1, 1, 1, generator=generator) - 1)
        x = x * f[:, 0]  # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * f[:, 1] + mean  # contrast
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * f[:, 2] + grey  # saturation
        return x.clamp(0, 255)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Deterministic resize of a uint8/float batch (evaluation at another size than the cache's)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images.float()
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
