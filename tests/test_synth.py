"""The embedded synthetic generators: layouts, exact CSV formats, determinism, labels that match the drawing."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fashionlab.api import synth
from fashionlab.tasks import all_tasks
from fashionlab.data.synth.attributes import ATTRIBUTE_TASKS, render_attribute, synth_attributes
from fashionlab.data.synth.keypoints import _CATEGORY_POINTS, _POINT_NAMES
from fashionlab.data.synth.styles import STYLE_LABELS, render_style, sample_labels
from fashionlab.errors import FashionlabError

TINY = {
    "attributes": dict(n_per_task=10, size=48),
    "styles": dict(n=10, size=48),
    "retrieval": dict(n_items=5, size=48),
    "keypoints": dict(n=10, size=48),
}
CSV = {"attributes": "Annotations/label.csv", "styles": "labels.csv", "retrieval": "items.csv",
       "keypoints": "train.csv"}


def _first_image(root: Path, task: str) -> Path:
    first = (root / CSV[task]).read_text().splitlines()[0 if task == "attributes" else 1].split(",")[0]
    return root / ("images/" + first if task in ("styles", "retrieval") else first)


def test_registry_and_unknown_task(tmp_path: Path) -> None:
    assert {t.name for t in all_tasks() if t.synth_generator} == {"attributes", "styles", "retrieval", "keypoints"}
    with pytest.raises(FashionlabError, match="unknown task 'nope'"):
        synth("nope", tmp_path)
    with pytest.raises(FashionlabError, match="no synthetic data for task 'classify'"):
        synth("classify", tmp_path)
    with pytest.raises(FashionlabError, match="bogus"):
        synth("styles", tmp_path, bogus=1)
    with pytest.raises(FashionlabError, match="unknown attribute task"):
        synth_attributes(tmp_path, tasks=["hat_labels"])


@pytest.mark.parametrize("task", list(TINY))
def test_seeded_determinism(tmp_path: Path, task: str) -> None:
    a = synth(task, tmp_path / "a", seed=3, **TINY[task])
    b = synth(task, tmp_path / "b", seed=3, **TINY[task])
    c = synth(task, tmp_path / "c", seed=4, **TINY[task])
    assert (a / CSV[task]).read_bytes() == (b / CSV[task]).read_bytes()
    assert _first_image(a, task).read_bytes() == _first_image(b, task).read_bytes()
    assert (a / CSV[task]).read_bytes() != (c / CSV[task]).read_bytes()
    assert _first_image(a, task).read_bytes() != _first_image(c, task).read_bytes()
    assert "synthetic" in (a / "README.txt").read_text().lower()


def test_attributes_layout(tmp_path: Path) -> None:
    tasks = list(ATTRIBUTE_TASKS)
    root = synth_attributes(tmp_path / "fa", n_per_task=12, size=48, tasks=tasks, maybe_fraction=0.3)
    lines = (root / "Annotations" / "label.csv").read_text().splitlines()
    assert len(lines) == 12 * len(tasks) and lines[0].startswith("Images/")      # no header
    seen: dict[str, set] = {t: set() for t in tasks}
    for line in lines:
        path, task, label = line.split(",")
        assert re.fullmatch(rf"Images/{task}/[0-9a-f]{{32}}\.jpg", path) and (root / path).is_file()
        assert len(label) == len(ATTRIBUTE_TASKS[task]) and set(label) <= set("ynm")
        assert label.count("y") == 1 and label.count("m") <= 1
        if "m" in label:
            assert abs(label.index("m") - label.index("y")) == 1 and label.index("y") > 0
        seen[task].add(label.index("y"))
    assert all(len(v) == len(ATTRIBUTE_TASKS[t]) for t, v in seen.items())     # balanced: every value present
    readme = (root / "README.txt").read_text()
    assert "seed: 0" in readme
    assert "sleeve_length_labels letter order: Invisible, Sleeveless, Cup Sleeves" in readme


def test_attributes_maybe_fraction(tmp_path: Path) -> None:
    root = synth_attributes(tmp_path / "m", n_per_task=240, size=24, tasks=["skirt_length_labels"],
                            maybe_fraction=0.2)
    labels = [line.split(",")[2] for line in (root / "Annotations" / "label.csv").read_text().splitlines()]
    assert 0.12 <= np.mean(["m" in lab for lab in labels]) <= 0.28
    none = synth_attributes(tmp_path / "z", n_per_task=20, size=24, tasks=["pant_length_labels"], maybe_fraction=0)
    assert "m" not in (none / "Annotations" / "label.csv").read_text().replace("Images", "")


def _garment_mask(task: str, value: int, seed: int) -> np.ndarray:
    img, info = render_attribute(task, value, 96, np.random.default_rng([seed, value]))
    return np.abs(np.asarray(img, np.int16) - np.array(info["garment"])).sum(-1) < 12


@pytest.mark.parametrize("task", ["skirt_length_labels", "pant_length_labels", "coat_length_labels"])
def test_length_classes_move_the_hem_down(task: str) -> None:
    cols = slice(45, 51) if task == "coat_length_labels" else slice(None)   # coat: the body, not the long sleeves
    hems = []
    for value in range(1, len(ATTRIBUTE_TASKS[task])):
        rows = [np.nonzero(_garment_mask(task, value, s)[:, cols].sum(1) >= 2)[0].max() for s in range(6)]
        hems.append(np.mean(rows))
    assert all(b > a + 2 for a, b in zip(hems, hems[1:])), hems
    # longer class -> more garment pixels in the bottom quarter (averaged)
    last = len(ATTRIBUTE_TASKS[task]) - 1
    low = [np.mean([_garment_mask(task, v, s)[72:].sum() for s in range(6)]) for v in (1, last)]
    assert low[1] > low[0] + 20
    if task != "coat_length_labels":      # Invisible: the skirt / trousers are cropped out of frame
        assert max(_garment_mask(task, 0, s).sum() for s in range(6)) == 0


def test_sleeve_classes_cover_more_arm() -> None:
    counts = [np.mean([_garment_mask("sleeve_length_labels", v, s).sum() for s in range(8)]) for v in (1, 3, 5, 8)]
    assert all(b > a for a, b in zip(counts, counts[1:])), counts


def test_every_design_value_draws_differently() -> None:
    for task in ("collar_design_labels", "lapel_design_labels", "neck_design_labels", "neckline_design_labels"):
        images = [np.asarray(render_attribute(task, v, 64, np.random.default_rng(9))[0], np.int16)
                  for v in range(len(ATTRIBUTE_TASKS[task]))]
        for i in range(len(images)):
            for j in range(i + 1, len(images)):
                assert np.abs(images[i] - images[j]).sum(-1).astype(bool).sum() > 10, (task, i, j)


def test_styles_layout_and_imbalance(tmp_path: Path) -> None:
    root = synth("styles", tmp_path / "st", n=30, size=40, seed=1)
    lines = (root / "labels.csv").read_text().splitlines()
    assert lines[0] == "image," + ",".join(STYLE_LABELS) and len(STYLE_LABELS) == 13 and len(lines) == 31
    for line in lines[1:]:
        name, *bits = line.split(",")
        assert "/" not in name and (root / "images" / name).is_file()
        assert set(bits) <= {"0", "1"} and 1 <= bits.count("1") <= 3
    assert "Label counts" in (root / "README.txt").read_text()
    rng = np.random.default_rng(0)
    counts = {k: 0 for k in STYLE_LABELS}
    for _ in range(4000):
        for lab in sample_labels(rng):
            counts[lab] += 1
    assert 15 <= max(counts.values()) / min(counts.values()) <= 60, counts


def test_style_palette_is_visible() -> None:
    def centre(labels: list[str], s: int) -> float:
        return float(np.asarray(render_style(labels, 64, np.random.default_rng(s)))[24:44, 24:40].mean())
    dark = np.mean([centre(["dark"], s) for s in range(5)])
    pastel = np.mean([centre(["pastel"], s) for s in range(5)])
    assert pastel > dark + 100


def test_retrieval_layout(tmp_path: Path) -> None:
    root = synth("retrieval", tmp_path / "r", n_items=6, shop_per_item=2, consumer_per_item=3, size=48)
    items = (root / "items.csv").read_text().splitlines()
    assert items[0] == "image,item_id,domain,category" and len(items) == 1 + 6 * 5
    rows = [line.split(",") for line in items[1:]]
    item_of = {r[0]: r[1] for r in rows}
    for image, _item, domain, category in rows:
        assert image.startswith(domain + "/") and (root / "images" / image).is_file()
        assert domain in ("shop", "consumer") and category in ("top", "trousers", "skirt", "shoes", "bag")
    matches = (root / "matches.csv").read_text().splitlines()
    assert matches[0] == "query_id,gallery_id" and len(matches) == 1 + 6 * 3 * 2
    for line in matches[1:]:
        q, g = line.split(",")
        assert q.startswith("consumer/") and g.startswith("shop/") and item_of[q] == item_of[g]
    from PIL import Image
    shop = [r[0] for r in rows if r[2] == "shop"][0]
    assert np.asarray(Image.open(root / "images" / shop))[:3, :3].mean() > 235   # clean white background


def test_keypoints_layout_and_geometry(tmp_path: Path) -> None:
    size = 64
    root = synth("keypoints", tmp_path / "k", n=40, size=size, seed=2)
    lines = (root / "train.csv").read_text().splitlines()
    assert lines[0] == "image_id,image_category," + ",".join(_POINT_NAMES) and len(_POINT_NAMES) == 24
    occluded = 0
    for line in lines[1:]:
        image_id, category, *cells = line.split(",")
        assert re.fullmatch(rf"Images/{category}/[0-9a-f]{{32}}\.jpg", image_id) and (root / image_id).is_file()
        assert len(cells) == 24
        pts = {}
        for name, cell in zip(_POINT_NAMES, cells):
            assert re.fullmatch(r"-?\d+_-?\d+_-?\d+", cell)
            x, y, v = map(int, cell.split("_"))
            if name in _CATEGORY_POINTS[category]:
                assert v in (0, 1) and 0 <= x < size and 0 <= y < size
                occluded += v == 0
                pts[name] = (x, y)
            else:
                assert cell == "-1_-1_-1"
        for left in [n for n in pts if n.endswith("_left") and n.startswith(("shoulder", "waistband", "neckline"))]:
            assert pts[left][0] < pts[left.replace("_left", "_right")][0]    # *_left = image left
    assert occluded > 0
    assert {line.split(",")[1] for line in lines[1:]} == set(_CATEGORY_POINTS)
    assert "*_left points lie on the IMAGE's left side" in (root / "README.txt").read_text()
