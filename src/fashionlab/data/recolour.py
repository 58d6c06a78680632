"""Garment recolouring: shift the hue and scale the saturation of the garment, leave the background.

The garment region comes from a user mask ``<mask_dir>/<image stem>.png`` (white = garment; resized
to the image when the sizes differ), else from OpenCV GrabCut seeded with a centred box covering
``box`` (70 %) of the image area, run on a copy downscaled to at most ``grabcut_side`` (96) pixels
for ``iterations`` (2) rounds and upscaled back. Masks are cached per image path (at the small size)
inside each process. Pixels outside the mask are returned bit-for-bit unchanged.

Use: ``Recolour(prob, hue_shift, sat_scale, mask_dir, seed)(image, path)`` before the train transform
(``RecolourDataset`` does that); ``preview_recolour`` writes a PNG grid to check the masks.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from ..errors import FashionlabError
from ..io import atomic_open
from .images import ImageDataset, list_images, load_rgb


def centre_box(height: int, width: int, box: float) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a centred rectangle covering ``box`` of the area, at least 1 px from each edge."""
    side = float(np.sqrt(box))
    bw, bh = max(1, min(width - 2, round(width * side))), max(1, min(height - 2, round(height * side)))
    return (width - bw) // 2, (height - bh) // 2, bw, bh


def shrink(image: np.ndarray, max_side: int, min_side: int = 1) -> np.ndarray:
    """Downscale (area interpolation) so the longer side is at most ``max_side``; never upscale."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image
    size = (max(min_side, round(w * scale)), max(min_side, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def grabcut_mask(image: np.ndarray, box: float = 0.7, max_side: int = 96, iterations: int = 2) -> np.ndarray:
    """Foreground (garment) mask [h, w] bool of ``image`` at its size, scaled to at most ``max_side``."""
    small = shrink(image, max_side, min_side=3)
    sh, sw = small.shape[:2]
    x, y, bw, bh = centre_box(sh, sw, box)
    mask = np.zeros((sh, sw), np.uint8)
    try:
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, (x, y, bw, bh), np.zeros((1, 65), np.float64),
                    np.zeros((1, 65), np.float64), iterations, cv2.GC_INIT_WITH_RECT)
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    except cv2.error:  # e.g. a flat image GrabCut cannot model: fall back to the seed box
        fg = np.zeros((sh, sw), bool)
        fg[y:y + bh, x:x + bw] = True
    return fg


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR) > 127


def read_mask(path: Path) -> np.ndarray:
    """White = garment; decoded by the image policy (EXIF orientation, 16-bit, pixel cap) like the photo."""
    try:
        mask = load_rgb(path)
    except FashionlabError as err:
        why = str(err).removeprefix(f"{path}: ")
        raise FashionlabError(f"{path}: cannot decode garment mask (expected a grayscale PNG, white = garment; "
                              f"{why})") from None
    return mask.mean(axis=2) > 127


def recolour_pixels(image: np.ndarray, mask: np.ndarray, hue_deg: float, sat: float) -> np.ndarray:
    """Hue + ``hue_deg`` degrees, saturation x ``sat`` inside ``mask``; other pixels untouched."""
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in [0, 360), S, V in [0, 1]
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_deg, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0.0, 1.0)
    rgb = np.clip(np.rint(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0), 0, 255).astype(np.uint8)
    return np.where(mask[..., None], rgb, image)


class Recolour:
    """With probability ``prob``, recolour the garment of an RGB uint8 image (see the module docstring).

    Random draws depend on (seed, image path, call count in this process): reproducible, and
    different between data-loader workers because they see different paths.
    """

    def __init__(self, prob: float = 0.5, hue_shift: tuple[float, float] = (-90.0, 90.0),
                 sat_scale: tuple[float, float] = (0.6, 1.4), mask_dir: str | Path | None = None, seed: int = 0,
                 box: float = 0.7, grabcut_side: int = 96, iterations: int = 2, cache_size: int = 4096) -> None:
        if not 0.0 <= prob <= 1.0:
            raise FashionlabError(f"recolour probability {prob} is not in [0, 1]")
        if hue_shift[0] > hue_shift[1] or sat_scale[0] > sat_scale[1] or sat_scale[0] < 0:
            raise FashionlabError(f"recolour: bad ranges hue_shift={hue_shift}, sat_scale={sat_scale}")
        self.mask_dir = Path(mask_dir) if mask_dir else None
        if self.mask_dir is not None and not self.mask_dir.is_dir():
            raise FashionlabError(f"{self.mask_dir}: recolour mask folder not found")
        self.prob, self.hue_shift, self.sat_scale, self.seed = prob, hue_shift, sat_scale, seed
        self.box, self.grabcut_side, self.iterations, self.cache_size = box, grabcut_side, iterations, cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._calls = 0

    def mask(self, image: np.ndarray, path: str | Path | None = None) -> np.ndarray:
        """Garment mask [H, W] bool: the user's mask file when there is one, else GrabCut (cached by path)."""
        h, w = image.shape[:2]
        if path is not None and self.mask_dir is not None:
            user = self.mask_dir / f"{Path(path).stem}.png"
            if user.is_file():
                return resize_mask(read_mask(user), h, w)
        key = f"{path}:{h}x{w}" if path is not None else None
        small = self._cache.get(key) if key else None
        if small is None:
            small = grabcut_mask(image, self.box, self.grabcut_side, self.iterations)
            if key:
                self._cache[key] = small
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return resize_mask(small, h, w)

    def __call__(self, image: np.ndarray, path: str | Path | None = None) -> np.ndarray:
        self._calls += 1
        rng = np.random.default_rng([self.seed, zlib.crc32(str(path).encode()), self._calls])
        if rng.random() >= self.prob:
            return image
        hue, sat = rng.uniform(*self.hue_shift), rng.uniform(*self.sat_scale)
        return recolour_pixels(image, self.mask(image, path), hue, sat)


class RecolourDataset(ImageDataset):
    """``ImageDataset`` that recolours each decoded image (it needs the path) before ``transform``."""

    def __init__(self, paths: Sequence[Path], targets: Sequence, transform: Callable[[np.ndarray], object],
                 recolour: Recolour, draft: int | None = None) -> None:
        super().__init__(paths, targets, transform, draft)
        self.recolour = recolour

    def __getitem__(self, index: int):
        path = self.paths[index]
        return self.transform(self.recolour(load_rgb(path, self.draft), path)), self.targets[index]


def _cell(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` fitted into a white ``size`` x ``size`` tile (up- or downscaled)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    canvas = np.full((size, size, 3), 255, np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def preview_recolour(images: Sequence[Path] | Path, out_png: Path, n_variants: int = 4,
                     mask_dir: str | Path | None = None, seed: int = 0, cell: int = 128, max_images: int = 8,
                     hue_shift: tuple[float, float] = (-90.0, 90.0),
                     sat_scale: tuple[float, float] = (0.6, 1.4)) -> Path:
    """PNG grid, one row per image: original, mask (background dimmed), ``n_variants`` recolourings.

    ``images``: image paths or a folder (its first ``max_images`` images).
    """
    paths = list_images(Path(images))[:max_images] if isinstance(images, (str, Path)) else list(images)[:max_images]
    if not paths:
        raise FashionlabError(f"{images}: no images to preview")
    recolour = Recolour(1.0, hue_shift, sat_scale, mask_dir, seed)
    gap = 2
    cols = 2 + n_variants
    grid = np.full((len(paths) * (cell + gap) + gap, cols * (cell + gap) + gap, 3), 40, np.uint8)
    for r, path in enumerate(paths):
        image = shrink(load_rgb(path), 2 * cell)  # recolour at preview size: faster, same look
        mask = recolour.mask(image, path)
        dimmed = np.where(mask[..., None], image, (image * 0.25).astype(np.uint8))
        row = [image, dimmed] + [recolour(image, path) for _ in range(n_variants)]
        for c, tile in enumerate(row):
            y, x = gap + r * (cell + gap), gap + c * (cell + gap)
            grid[y:y + cell, x:x + cell] = _cell(tile, cell)
    with atomic_open(out_png, "wb") as handle:
        Image.fromarray(grid).save(handle, format="PNG")
    return Path(out_png)
