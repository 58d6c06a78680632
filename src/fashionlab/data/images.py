"""Image decoding that names the file on failure, and a streaming dataset over image paths."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import FashionlabError

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey stripe


def load_rgb(path: str | Path, draft: int | None = None) -> np.ndarray:
    """Decode ``path`` to an RGB uint8 array. Grayscale/CMYK/palette convert; RGBA composes on white.

    ``draft``: for JPEGs, let the decoder downscale by DCT to at least this size (much faster).
    """
    try:
        with Image.open(path) as img:
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            img.load()
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(canvas, rgba)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise FashionlabError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FashionlabError(f"{path}: cannot decode image ({exc})") from None


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def check_images(paths: Sequence[Path], skip_bad: bool) -> list[int]:
    """Decode every image once (cheaply, via JPEG draft) before training starts.

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
        log.warning("skipped %d unreadable image(s), first: %s", len(bad), bad[0])
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
