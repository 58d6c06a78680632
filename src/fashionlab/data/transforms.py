"""Train/eval transforms (albumentations) and test-time augmentation views."""
from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import numpy as np
import torch

TTA_MODES = ("none", "flip", "5crop", "10crop")


def _to_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[np.ndarray], torch.Tensor]:
    mean_arr = np.asarray(mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)

    def convert(image: np.ndarray) -> torch.Tensor:
        arr = (image.astype(np.float32) - mean_arr) * inv_std
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    return convert


def train_transform(imgsz: int, mean, std, scale_min: float = 0.5, hflip: float = 0.5,
                    color_jitter: float = 0.2) -> Callable[[np.ndarray], torch.Tensor]:
    steps: list = [A.RandomResizedCrop(size=(imgsz, imgsz), scale=(scale_min, 1.0)), A.HorizontalFlip(p=hflip)]
    if color_jitter > 0:
        j = color_jitter
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(0.5, j / 4), p=0.8))
    pipeline, to_tensor = A.Compose(steps), _to_tensor(mean, std)
    return lambda image: to_tensor(pipeline(image=image)["image"])


def eval_transform(imgsz: int, mean, std) -> Callable[[np.ndarray], torch.Tensor]:
    pipeline, to_tensor = A.Compose([A.Resize(imgsz, imgsz)]), _to_tensor(mean, std)
    return lambda image: to_tensor(pipeline(image=image)["image"])


def tta_transform(imgsz: int, mean, std, mode: str = "none") -> Callable[[np.ndarray], torch.Tensor]:
    """Return a transform giving a stack of views [V, 3, H, W] for one image.

    flip: the image and its mirror. 5crop: the image resized to imgsz/0.875, four corner crops and the
    centre crop. 10crop: the five crops and their mirrors.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}")
    to_tensor = _to_tensor(mean, std)
    if mode in ("none", "flip"):
        resize = A.Resize(imgsz, imgsz)

        def plain(image: np.ndarray) -> torch.Tensor:
            view = to_tensor(resize(image=image)["image"])
            return torch.stack([view, view.flip(-1)]) if mode == "flip" else view[None]

        return plain
    big = int(round(imgsz / 0.875))
    resize = A.Resize(big, big)

    def crops(image: np.ndarray) -> torch.Tensor:
        full = to_tensor(resize(image=image)["image"])
        e, c = big - imgsz, (big - imgsz) // 2
        views = [full[:, :imgsz, :imgsz], full[:, :imgsz, e:], full[:, e:, :imgsz], full[:, e:, e:],
                 full[:, c:c + imgsz, c:c + imgsz]]
        if mode == "10crop":
            views += [v.flip(-1) for v in views]
        return torch.stack(views)

    return crops
