"""Geometry that keeps keypoints right: resize, affine, flip with left/right swapping, crop boxes.

Coordinate conventions (one place for all of them):

* **index** coordinates, as in the FashionAI CSV: pixel ``i`` has its centre at ``i``; a horizontal
  flip maps ``x -> W - 1 - x``. Albumentations' ``Affine`` and ``HorizontalFlip`` use this convention
  (checked: a Gaussian blob stays on its point to < 0.05 px), so augmentation runs on index coordinates.
* **continuous** coordinates = index + 0.5: pixel ``i`` covers ``[i, i + 1)``. Resizing by ``s`` maps
  ``x -> x * s`` exactly, and heatmap cell ``j`` (stride ``r``) has its centre at ``(j + 0.5) * r``.
  The model's inputs/outputs and the heatmap targets use this convention.

Albumentations does not know point names: after a flip the left point sits where the right one was, so
the columns of every ``FLIP_PAIRS`` pair are swapped (``swap_left_right``). A point pushed out of the
image by an augmentation is reported in ``inside`` and masked out of the loss, never silently clamped.
"""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from .metric import FLIP_PAIRS, KEYPOINT_NAMES

_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
FLIP_PERM: np.ndarray = np.arange(len(KEYPOINT_NAMES))
for _left, _right in FLIP_PAIRS:
    FLIP_PERM[_INDEX[_left]], FLIP_PERM[_INDEX[_right]] = _INDEX[_right], _INDEX[_left]


def swap_left_right(values: np.ndarray | torch.Tensor, axis: int = 0):
    """Reorder the 24 points along ``axis`` so that every left point takes its right partner's place."""
    index = FLIP_PERM if isinstance(values, np.ndarray) else torch.as_tensor(FLIP_PERM, device=values.device)
    return values[(slice(None),) * (axis % values.ndim) + (index,)]


def hflip_points(xy: np.ndarray, width: int) -> np.ndarray:
    """Mirror index-coordinate points ``[..., 24, 2]`` in an image ``width`` wide and swap left/right names."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] = width - 1 - out[..., 0]
    return swap_left_right(out, axis=out.ndim - 2)


def resize_with_points(image: np.ndarray, xy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size`` x ``size`` (aspect not kept) and move index-coordinate points with it."""
    h, w = image.shape[:2]
    shrink = size < min(h, w)
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] = (out[..., 0] + 0.5) * size / w - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * size / h - 0.5
    return resized, out


def inside_image(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """True where an index-coordinate point lies on a pixel of the image."""
    x, y = xy[..., 0], xy[..., 1]
    return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5) & np.isfinite(x) & np.isfinite(y)


def box_around(xy: np.ndarray, mask: np.ndarray, width: int, height: int, margin: float,
               min_side: float = 8.0) -> tuple[int, int, int, int]:
    """Square crop box ``(x0, y0, x1, y1)`` (pixel edges) around the masked points plus ``margin`` of the
    box side on each side, clipped to the image; the whole image when no point is masked in."""
    if not np.any(mask):
        return 0, 0, width, height
    pts = xy[np.asarray(mask, dtype=bool)] + 0.5  # continuous
    lo, hi = pts.min(0), pts.max(0)
    side = max(float((hi - lo).max()) * (1 + 2 * margin), min_side)
    centre = (lo + hi) / 2
    x0, y0 = np.floor(centre - side / 2).astype(int)
    x1, y1 = np.ceil(centre + side / 2).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:  # degenerate (points outside the image): fall back to the whole image
        return 0, 0, width, height
    return int(x0), int(y0), int(x1), int(y1)


class KeypointAugment:
    """Random affine (rotation, zoom, shift), blur, noise, colour, then horizontal flip with name swap.

    ``__call__(image, xy, weight)`` takes an image, index-coordinate points ``[24, 2]`` and their loss
    weights ``[24]``; returns the augmented image, the moved points, the weights (swapped with the
    points on a flip, zero where a point left the image) and ``inside`` (bool ``[24]``).
    """

    def __init__(self, rotate: float = 15.0, scale: float = 0.15, shift: float = 0.05, hflip: float = 0.5,
                 blur: float = 0.1, noise: float = 0.1, color_jitter: float = 0.2, seed: int | None = 0) -> None:
        steps: list = []
        if rotate > 0 or scale > 0 or shift > 0:
            steps.append(A.Affine(scale=(1 - scale, 1 + scale), translate_percent=(-shift, shift),
                                  rotate=(-rotate, rotate), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0))
        if blur > 0:
            steps.append(A.GaussianBlur(blur_limit=(3, 5), p=blur))
        if noise > 0:
            steps.append(A.GaussNoise(std_range=(0.02, 0.08), p=noise))
        if color_jitter > 0:
            j = color_jitter
            steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(0.5, j / 4), p=0.8))
        self.pipeline = A.Compose(steps, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
                                  seed=seed)
        self.hflip = hflip
        self.rng = np.random.default_rng(seed)
        self._worker: int | None = None

    def _reseed_in_worker(self) -> None:
        """DataLoader workers are forked copies with the same RNG state: give each its own seed."""
        info = torch.utils.data.get_worker_info()
        if info is not None and info.seed != self._worker:
            self._worker = info.seed
            cv2.setNumThreads(1)  # the workers already run in parallel; OpenCV threads would oversubscribe
            seed = int(info.seed % 2**32)
            self.pipeline.set_random_seed(seed)
            self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, xy: np.ndarray,
                 weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._reseed_in_worker()
        weight = np.asarray(weight, dtype=np.float32)
        h, w = image.shape[:2]
        safe = np.nan_to_num(np.asarray(xy, dtype=np.float64), nan=0.0)
        out = self.pipeline(image=image, keypoints=safe)
        image, moved = out["image"], np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)
        if self.hflip > 0 and self.rng.random() < self.hflip:
            image = np.ascontiguousarray(image[:, ::-1])
            moved, weight = hflip_points(moved, w), swap_left_right(weight)
        inside = inside_image(moved, w, h)
        return image, moved, np.where(inside, weight, 0.0).astype(np.float32), inside
