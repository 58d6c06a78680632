"""The one image policy (training, prediction, keypoints, retrieval and the service), and a streaming dataset.

Every image goes through ``open_image`` / ``load_rgb``:

1. open; a missing file, an unknown format, a file over the pixel cap and a decompression bomb are a
   ``BadImage`` (a ``FashionlabError``) naming the file, checked from the header before any decoding;
2. EXIF orientation applied (as ``ImageOps.exif_transpose``): a phone photo comes out upright, and sizes
   (``image_size``) are the upright ones, so keypoint coordinates are read in the displayed frame;
3. converted to 8-bit RGB by the file's real range: 16-bit grayscale (``I;16*``) >> 8, 32-bit ``I``
   as 16-bit when it fits 0..65535 (else scaled by its own min..max), float ``F`` x 255 when in [0, 1]
   (else min..max); palette, ``LA``/``RGBA`` (composed on white), CMYK, 1-bit -> RGB.

``MAX_PIXELS`` (40 M, about 6300 x 6300; ``FASHIONLAB_MAX_PIXELS`` overrides it) bounds the memory one
decode may take; PIL's own ``DecompressionBombError`` is caught too. ``check_images(paths, skip_bad)``
decodes everything once before a run: a bad image is a one-line error naming it, or with
``--skip-bad`` it is counted and left out.
"""
from __future__ import annotations

import logging
import os
import struct
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Union

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import FashionlabError

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 40_000_000
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey stripe
# our own cap (below PIL's 89 M warning threshold) decides; PIL's warning would only be noise
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the transpose that makes the image upright
Source = Union[str, Path, IO[bytes]]


class BadImage(FashionlabError):
    """A file that is not a usable image. ``kind``: missing | format | too_large | broken (the service
    maps them to 400 / 415 / 413 / 400)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def max_pixels() -> int:
    """The pixel cap: ``FASHIONLAB_MAX_PIXELS`` when set, else ``MAX_PIXELS``."""
    text = os.environ.get("FASHIONLAB_MAX_PIXELS", "").replace("_", "").strip()
    if not text:
        return MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise FashionlabError(f"FASHIONLAB_MAX_PIXELS={text!r}: expected a positive whole number of pixels")
    return int(text)


def open_image(source: Source, limit: int | None = None) -> Image.Image:
    """Open ``source`` lazily (header only) and check its size against the pixel cap."""
    limit = max_pixels() if limit is None else limit
    try:
        img = Image.open(source)
    except FileNotFoundError:
        raise BadImage(f"{source}: image file not found", "missing") from None
    except UnidentifiedImageError:
        raise BadImage(f"{source}: cannot decode image (not an image format fashionlab reads: JPEG, PNG, BMP, "
                       "WebP, TIFF)", "format") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"{source}: decompression bomb refused ({exc})", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise BadImage(f"{source}: cannot decode image ({exc or type(exc).__name__})", "broken") from None
    width, height = img.size
    if width * height > limit:
        img.close()
        raise BadImage(f"{source}: image of {width}x{height} pixels exceeds the {limit:,}-pixel limit "
                       "(FASHIONLAB_MAX_PIXELS raises it)", "too_large")
    return img


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored). JPEG, PNG and WebP keep EXIF in ``info["exif"]``; without
    it there is nothing to parse (and PNG's ``getexif`` would decode the whole image to look further)."""
    if "exif" not in img.info and img.format in ("JPEG", "PNG", "WEBP"):
        return 1
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, as viewers do
        return 1


def image_size(path: Source) -> tuple[int, int]:
    """(W, H) as displayed (EXIF orientation applied), from the header; pixel cap checked."""
    img = open_image(path)
    with img:
        width, height = img.size
        return (height, width) if _orientation(img) in SWAPS_AXES else (width, height)


def _scaled(arr: np.ndarray, top: float) -> np.ndarray:
    return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _by_range(arr: np.ndarray) -> np.ndarray:
    """uint8 from ``arr`` scaled by its own min..max (NaN/inf as 0)."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(arr.min()), float(arr.max())
    return _scaled(arr - low, high - low) if high > low else np.zeros(arr.shape, np.uint8)


def _gray_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit, 32-bit integer and float single-channel images to 8 bits by their real range."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        return (arr.astype(np.uint16) >> 8).astype(np.uint8)
    if img.mode == "I":
        low, high = int(arr.min()), int(arr.max())
        return (arr >> 8).astype(np.uint8) if low >= 0 and high <= 65535 else _by_range(arr)
    finite = arr[np.isfinite(arr)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:
        return _scaled(np.nan_to_num(arr, nan=0.0), 1.0)
    return _by_range(arr)


def to_rgb(img: Image.Image) -> np.ndarray:
    """A loaded image of any mode as RGB uint8 [H, W, 3]; transparency is composed on white."""
    if img.mode.startswith("I") or img.mode == "F":
        return np.repeat(_gray_to_uint8(img)[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _shrink(img: Image.Image, draft: int) -> Image.Image:
    """Non-JPEG: an integer box reduction keeping both sides >= ``draft`` (what JPEG draft does by DCT),
    so a large PNG is not held at full size as an array as well."""
    factor = min(img.size[0] // draft, img.size[1] // draft)
    if factor < 2 or img.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return img
    return img.reduce(factor)


def load_rgb(path: Source, draft: int | None = None) -> np.ndarray:
    """Decode ``path`` to an upright RGB uint8 array by the module's policy; ``BadImage`` names the file.

    ``draft``: let the decoder downscale to at least this size on both sides (JPEG: by DCT, much
    faster; other formats: a box reduction after decoding).
    """
    img = open_image(path)
    try:
        with img:
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            img.load()
            orientation = _orientation(img)
            out = _shrink(img, draft) if draft and img.format != "JPEG" else img
            if orientation in TRANSPOSE:  # as ImageOps.exif_transpose, also on the reduced copy
                out = out.transpose(TRANSPOSE[orientation])
            return to_rgb(out)
    except Image.DecompressionBombError as exc:
        raise BadImage(f"{path}: decompression bomb refused ({exc})", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise BadImage(f"{path}: cannot decode image ({exc or type(exc).__name__})", "broken") from None


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def check_images(paths: Sequence[Path], skip_bad: bool) -> list[int]:
    """Decode every image once (cheaply, via draft) before a run starts.

    Returns the indices of good images. A bad one raises, or with ``skip_bad`` is counted and skipped.
    """
    good: list[int] = []
    bad: list[str] = []
    for i, path in enumerate(paths):
        try:
            load_rgb(path, draft=32)
            good.append(i)
        except FashionlabError as err:
            if not skip_bad:
                raise FashionlabError(f"{err} (use --skip-bad to skip unreadable images)") from None
            bad.append(str(err))
    if bad:
        log.warning("skipped %d unreadable image(s) of %d (left out), first: %s", len(bad), len(paths), bad[0])
    return good


class ImageDataset(Dataset):
    """Streams images from disk; ``targets[i]`` is returned as-is next to the transformed image."""

    def __init__(self, paths: Sequence[Path], targets: Sequence, transform: Callable[[np.ndarray], torch.Tensor],
                 draft: int | None = None) -> None:
        if len(paths) != len(targets):
            raise ValueError("paths and targets differ in length")
        self.paths, self.targets, self.transform, self.draft = list(paths), list(targets), transform, draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = self.transform(load_rgb(self.paths[index], self.draft))
        return image, self.targets[index]
