"""Keypoints building blocks: flip swapping, augmentation geometry, decoding, masked losses, input errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fashionlab import api
from fashionlab.errors import FashionlabError
from fashionlab.tasks.keypoints.augment import (
    KeypointAugment,
    box_around,
    hflip_points,
    inside_image,
    swap_left_right,
)
from fashionlab.tasks.keypoints.dataset import KeypointDataset, read_records
from fashionlab.tasks.keypoints.loss_decode import (
    argmax_quarter,
    gaussian_targets,
    heatmap_loss,
    merge_views,
    regression_loss,
    soft_argmax,
    unflip,
)
from fashionlab.tasks.keypoints.metric import CATEGORY_POINTS, FLIP_PAIRS, HEADER, KEYPOINT_NAMES

IDX = {n: i for i, n in enumerate(KEYPOINT_NAMES)}


def csv_row(image: str, cat: str, points: dict[str, tuple[int, int, int]]) -> str:
    cells = ["{}_{}_{}".format(*points[n]) if n in points else "-1_-1_-1" for n in KEYPOINT_NAMES]
    return ",".join([image, cat, *cells])


def skirt_points() -> dict[str, tuple[int, int, int]]:
    return {"waistband_left": (20, 14, 1), "waistband_right": (44, 14, 1), "hemline_left": (12, 50, 1),
            "hemline_right": (52, 50, 0)}


def write_release(root: Path, rows: list[str], images: dict[str, np.ndarray] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in (images or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / name)
    (root / "train.csv").write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")
    return root


# --- flip -----------------------------------------------------------------------------------------

def test_flip_twice_is_identity_and_left_becomes_right() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 63, (3, 24, 2))
    assert np.allclose(hflip_points(hflip_points(xy, 64), 64), xy)
    one = np.zeros((24, 2))
    one[IDX["cuff_left_out"]] = (5, 9)
    one[IDX["center_front"]] = (20, 30)
    flipped = hflip_points(one, 64)
    assert tuple(flipped[IDX["cuff_right_out"]]) == (64 - 1 - 5, 9)  # the left point is now the right one
    assert tuple(flipped[IDX["center_front"]]) == (64 - 1 - 20, 30)  # unpaired points keep their name
    for left, right in FLIP_PAIRS:
        assert tuple(swap_left_right(np.arange(24))[[IDX[left], IDX[right]]]) == (IDX[right], IDX[left])
    maps = torch.randn(2, 24, 8, 8)
    assert torch.equal(swap_left_right(swap_left_right(maps, axis=1), axis=1), maps)
    assert torch.equal(unflip(unflip(maps, "heatmap"), "heatmap"), maps)


def test_flip_test_merge_of_mirrored_heatmap_finds_the_same_point() -> None:
    """A heatmap for the mirrored image, unflipped, peaks where the original's swapped partner does."""
    stride, n = 4, 16
    maps = torch.full((1, 24, n, n), -30.0)
    maps[0, IDX["armpit_left"], 5, 3] = 10.0
    mirrored = swap_left_right(maps.flip(-1), axis=1)  # what a perfect model outputs for the mirror image
    merged = merge_views([maps, unflip(mirrored, "heatmap")], "heatmap")
    assert torch.allclose(soft_argmax(merged, stride)[0, IDX["armpit_left"]], torch.tensor([14.0, 22.0]), atol=1e-3)


# --- augmentation ---------------------------------------------------------------------------------

def _dots(points: dict[str, tuple[int, int, int]], size: int = 64) -> np.ndarray:
    img = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for x, y, _ in points.values():
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 255))
    return np.asarray(img)


def test_augmentation_keeps_points_on_the_drawing_and_names_after_flip() -> None:
    points = skirt_points()
    image = _dots(points)
    xy = np.zeros((24, 2))
    weight = np.zeros(24, np.float32)
    for name, (x, y, _) in points.items():
        xy[IDX[name]] = (x, y)
        weight[IDX[name]] = 1
    aug = KeypointAugment(rotate=20, scale=0.1, shift=0.05, hflip=1.0, blur=0, noise=0, color_jitter=0, seed=3)
    for _ in range(10):
        out, moved, w, inside = aug(image, xy, weight)
        for name in points:
            j = IDX[name]
            if inside[j]:
                x, y = np.rint(moved[j]).astype(int)
                assert out[y, x].mean() > 100, name  # still on its dot
                assert w[j] == 1
        for left, right in (("waistband_left", "waistband_right"), ("hemline_left", "hemline_right")):
            assert moved[IDX[left], 0] < moved[IDX[right], 0]  # after the flip, *_left is still image-left
        assert w[IDX["crotch"]] == 0  # not applicable stays masked


def test_points_pushed_out_of_the_image_are_masked() -> None:
    xy = np.zeros((24, 2))
    xy[IDX["waistband_left"]] = (1, 1)
    xy[IDX["waistband_right"]] = (32, 32)
    weight = np.zeros(24, np.float32)
    weight[[IDX["waistband_left"], IDX["waistband_right"]]] = 1
    aug = KeypointAugment(rotate=0, scale=0.0, shift=0.3, hflip=0, blur=0, noise=0, color_jitter=0, seed=0)
    seen_out = False
    for _ in range(20):
        _, moved, w, inside = aug(np.zeros((64, 64, 3), np.uint8), xy, weight)
        assert np.array_equal(inside, inside_image(moved, 64, 64))
        assert (w[~inside] == 0).all()
        seen_out |= not inside[IDX["waistband_left"]]
    assert seen_out
    x0, y0, x1, y1 = box_around(xy, weight > 0, 64, 64, 0.15)  # two-stage crop: margin, square, clipped
    assert (x0, y0) == (0, 0) and x0 <= 1 < 32 < x1 <= 64 and x1 - x0 == y1 - y0
    assert box_around(xy, np.zeros(24, bool), 64, 48, 0.15) == (0, 0, 64, 48)


# --- decoding and losses --------------------------------------------------------------------------

def test_soft_argmax_recovers_gaussian_centre() -> None:
    stride, centre = 4, torch.tensor([[[23.3, 17.8], [40.1, 30.6]]])  # interior: no truncation by the border
    maps = gaussian_targets(centre, 16, 16, stride, sigma=1.5)
    assert torch.allclose(maps.flatten(2).sum(-1), torch.ones(1, 2))
    found = soft_argmax(torch.log(maps.clamp_min(1e-30)), stride)
    assert (found - centre).norm(dim=-1).max() < 0.5
    windowed = soft_argmax(torch.log(maps.clamp_min(1e-30)), stride, radius=4)
    assert (windowed - centre).norm(dim=-1).max() < 0.5
    junk = torch.log(0.7 * maps + 0.3 / 256)  # 30 % of the mass spread evenly pulls the whole-map estimate
    assert (soft_argmax(junk, stride, radius=4) - centre).norm(dim=-1).max() < 0.5
    assert (soft_argmax(junk, stride) - centre).norm(dim=-1).max() > 2.0
    assert (argmax_quarter(torch.log(maps.clamp_min(1e-30)), stride) - centre).abs().max() <= stride * 0.5


def test_masked_losses_ignore_weight_zero_points() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 24, 8, 8)
    xy = torch.rand(2, 24, 2) * 32
    weight = torch.zeros(2, 24)
    weight[:, :4] = 1
    moved = xy.clone()
    moved[:, 4:] = torch.rand(2, 20, 2) * 32  # v = -1 points hold arbitrary coordinates
    assert torch.allclose(heatmap_loss(logits, xy, weight, 4, 1.5), heatmap_loss(logits, moved, weight, 4, 1.5))
    coords = torch.rand(2, 24, 2)
    for kind in ("l1", "mse"):
        assert torch.allclose(regression_loss(coords, xy, weight, 32, kind),
                              regression_loss(coords, moved, weight, 32, kind))
    assert heatmap_loss(logits, xy, torch.zeros(2, 24), 4, 1.5) == 0


def test_dataset_weights_follow_visibility(tmp_path: Path) -> None:
    root = write_release(tmp_path / "r", [csv_row("a.png", "skirt", skirt_points())],
                         {"a.png": np.zeros((64, 64, 3), np.uint8)})
    records = read_records(root)
    for occluded, expected in ((True, 1.0), (False, 0.0)):
        _, target = KeypointDataset(records, 32, (0, 0, 0), (1, 1, 1), train_occluded=occluded)[0]
        w = target["weight"].numpy()
        assert w[IDX["hemline_right"]] == expected  # v = 0
        assert w[IDX["waistband_left"]] == 1 and w[[IDX[n] for n in KEYPOINT_NAMES
                                                     if n not in CATEGORY_POINTS["skirt"]]].sum() == 0
        assert np.allclose(target["xy"][IDX["waistband_left"]].numpy(), [(20 + 0.5) / 2, (14 + 0.5) / 2])


# --- user errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.replace("20_14_1", "20_14"), r"train.csv line 2 column waistband_left: cell '20_14' is not x_y_v"),
    (lambda r: r.replace(",skirt,", ",shoes,"), r"train.csv line 2: image_category 'shoes' is not one of"),
    (lambda r: r.replace("a.png", "missing.png"), r"train.csv line 2: image file not found: .*missing.png"),
    (lambda r: r.replace("44_14_1", "90_14_1"), r"train.csv line 2 column waistband_right: point \(90, 14\) is "
                                                r"outside the 64x64 image"),
])
def test_bad_rows_name_file_line_and_problem(tmp_path: Path, mutate, match: str) -> None:
    row = mutate(csv_row("a.png", "skirt", skirt_points()))
    root = write_release(tmp_path / "r", [row], {"a.png": np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(FashionlabError, match=match):
        read_records(root)


def test_config_rejects_unknown_category_and_bad_head(tmp_path: Path) -> None:
    root = write_release(tmp_path / "r", [csv_row("a.png", "skirt", skirt_points())],
                         {"a.png": np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(FashionlabError, match="categories.*'hats' is not one of"):
        api.train("keypoints", data=str(root), categories=["hats"])
    with pytest.raises(FashionlabError, match="head"):
        api.train("keypoints", data=str(root), head="mlp")
    with pytest.raises(FashionlabError, match="no train.csv"):
        api.train("keypoints", data=str(tmp_path))
