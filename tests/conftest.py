"""Fixtures that generate their own tiny data: no download, no ../shared."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = dict(model="test_efficientnet", pretrained="none", imgsz=32, batch=8, workers=0, head_epochs=3)

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def draw(path: Path, colour: tuple[int, int, int], rng: np.random.Generator, size: int = 40) -> None:
    arr = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    arr[8:32, 8:32] = np.clip(np.array(colour) + rng.integers(-20, 20, 3), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture()
def class_folders(tmp_path: Path) -> Path:
    """root/<class>/<i>.jpg, 3 classes x 10 images whose class is the square's colour."""
    rng = np.random.default_rng(0)
    root = tmp_path / "classes"
    for name, colour in COLOURS.items():
        for i in range(10):
            draw(root / name / f"{name}_{i}.jpg", colour, rng)
    return root


@pytest.fixture()
def attributes_release(tmp_path: Path) -> Path:
    """FashionAI layout with two tasks: colour (3 values) and brightness (2 values), some 'm' letters."""
    rng = np.random.default_rng(1)
    root = tmp_path / "release"
    rows = []
    names = list(COLOURS)
    for i in range(18):
        k = i % 3
        rel = f"Images/colour_labels/{i}.jpg"
        draw(root / rel, COLOURS[names[k]], rng)
        label = ["n"] * 3
        label[k] = "y"
        if i == 4:
            label[(k + 1) % 3] = "m"
        rows.append(f"{rel},colour_labels,{''.join(label)}")
    for i in range(12):
        k = i % 2
        rel = f"Images/bright_labels/{i}.jpg"
        draw(root / rel, (230, 230, 230) if k == 0 else (30, 30, 30), rng)
        rows.append(f"{rel},bright_labels,{'yn' if k == 0 else 'ny'}")
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "label.csv").write_text("\n".join(rows) + "\n")
    return root
