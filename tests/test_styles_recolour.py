"""Garment recolouring: background untouched, garment hue moved, GrabCut fallback, preview grid."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fashionlab.data.recolour import Recolour, RecolourDataset, grabcut_mask, preview_recolour
from fashionlab.errors import FashionlabError


def garment_image(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(150, 200, (size, size, 3)).astype(np.uint8)  # noisy grey background
    mask = np.zeros((size, size), bool)
    mask[16:48, 20:44] = True
    image[mask] = (200, 30, 30)  # red garment
    return image, mask


def hue(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels.reshape(1, -1, 3).astype(np.float32) / 255, cv2.COLOR_RGB2HSV)[0, :, 0]


def test_user_mask_background_unchanged_garment_hue_moved(tmp_path: Path) -> None:
    image, mask = garment_image()
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "masks" / "shirt.png")
    recolour = Recolour(1.0, hue_shift=(120, 120), sat_scale=(1.0, 1.0), mask_dir=tmp_path / "masks")
    out = recolour(image, tmp_path / "shirt.jpg")
    assert np.array_equal(out[~mask], image[~mask])
    assert np.allclose(hue(out[mask]), 120.0, atol=2.0)  # red (0 deg) -> green (120 deg)
    assert np.array_equal(Recolour(0.0)(image, "x.jpg"), image)


def test_grabcut_finds_the_centre_garment() -> None:
    image, mask = garment_image(96)
    found = grabcut_mask(image, max_side=48)
    assert found.shape == (48, 48)
    recolour = Recolour(1.0, hue_shift=(90, 90), sat_scale=(1.0, 1.0), grabcut_side=48)
    out = recolour(image, "g.jpg")
    changed = np.any(out != image, axis=2)
    assert changed[mask].mean() > 0.8  # the garment moved
    assert changed[:6].sum() == 0 and changed[:, :6].sum() == 0  # the border stayed
    assert recolour.mask(image, "g.jpg").sum() == pytest.approx(mask.sum(), rel=0.3)


def test_bad_mask_and_ranges(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.png").write_bytes(b"not a png")
    with pytest.raises(FashionlabError, match="x.png: cannot decode garment mask"):
        Recolour(1.0, mask_dir=tmp_path / "m")(garment_image()[0], "x.jpg")
    with pytest.raises(FashionlabError, match="mask folder not found"):
        Recolour(1.0, mask_dir=tmp_path / "missing")
    with pytest.raises(FashionlabError, match="probability"):
        Recolour(1.5)


def test_preview_grid_and_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(garment_image(48)[0]).save(folder / f"{i}.png")
    out = preview_recolour(folder, tmp_path / "grid.png", n_variants=3, cell=32)
    with Image.open(out) as grid:
        assert grid.size == (5 * 34 + 2, 2 * 34 + 2)
    data = RecolourDataset(sorted(folder.glob("*.png")), [0, 1], lambda im: im.shape, Recolour(1.0, seed=1))
    assert data[1] == ((48, 48, 3), 1)
