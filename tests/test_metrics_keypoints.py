"""FashionAI keypoints NE: hand-computed value, exclusions, CSV reader/writer and their error paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionlab.errors import FashionlabError
from fashionlab.tasks.keypoints.metric import (
    CATEGORIES,
    CATEGORY_POINTS,
    FLIP_PAIRS,
    HEADER,
    KEYPOINT_NAMES,
    evaluate_keypoints_files,
    normalized_error,
    read_keypoints_csv,
    write_keypoints_csv,
)

HEAD = ",".join(HEADER)


def row(image: str, cat: str, points: dict[str, tuple[int, int, int]]) -> str:
    cells = ["{}_{}_{}".format(*points[n]) if n in points else "-1_-1_-1" for n in KEYPOINT_NAMES]
    return ",".join([image, cat, *cells])


TRUTH_ROWS = [
    # blouse: s = |(10,10)-(40,50)| = 50; armpit_right has v=0 (normalises, not scored); neckline_right v=0
    row("b1", "blouse", {"armpit_left": (10, 10, 1), "armpit_right": (40, 50, 0),
                         "neckline_left": (20, 20, 1), "neckline_right": (0, 0, 0)}),
    # skirt: s = |(0,0)-(20,0)| = 20
    row("s1", "skirt", {"waistband_left": (0, 0, 1), "waistband_right": (20, 0, 1), "hemline_left": (0, 40, 1)}),
    # trousers: waistband_left v=-1 -> excluded
    row("t1", "trousers", {"waistband_right": (20, 0, 1), "crotch": (10, 30, 1)}),
    # dress: both armpits at (5,5) -> s = 0 -> excluded
    row("d1", "dress", {"armpit_left": (5, 5, 0), "armpit_right": (5, 5, 0), "neckline_left": (1, 1, 1)}),
]
PRED_ROWS = [
    row("d1", "dress", {}),
    row("b1", "blouse", {"armpit_left": (13, 14, 1), "armpit_right": (100, 100, 1),
                         "neckline_left": (20, 30, 1), "neckline_right": (90, 90, 1)}),
    row("s1", "skirt", {"waistband_left": (0, 0, 1), "waistband_right": (23, 4, 1), "hemline_left": (0, 46, 1)}),
    row("t1", "trousers", {}),
    row("extra", "skirt", {}),
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_constants() -> None:
    assert len(KEYPOINT_NAMES) == 24 and len(set(KEYPOINT_NAMES)) == 24
    assert KEYPOINT_NAMES[5:7] == ("armpit_left", "armpit_right") and KEYPOINT_NAMES[-1] == "bottom_right_out"
    assert {c: len(p) for c, p in CATEGORY_POINTS.items()} == \
        {"blouse": 13, "outwear": 14, "dress": 15, "skirt": 4, "trousers": 7}
    assert tuple(CATEGORY_POINTS) == CATEGORIES
    for left, right in FLIP_PAIRS:
        assert left.replace("left", "right") == right and left in KEYPOINT_NAMES and right in KEYPOINT_NAMES
    assert len(FLIP_PAIRS) == 11


def test_hand_computed_ne(tmp_path: Path) -> None:
    pred = write(tmp_path / "pred.csv", [HEAD, *PRED_ROWS])
    truth = write(tmp_path / "truth.csv", [HEAD, *TRUTH_ROWS])
    out = evaluate_keypoints_files(pred, truth)
    # blouse (s=50): armpit_left |(13,14)-(10,10)| = 5 -> 0.1; neckline_left |(20,30)-(20,20)| = 10 -> 0.2
    # skirt (s=20): waistband_left 0 -> 0; waistband_right |(23,4)-(20,0)| = 5 -> 0.25; hemline_left 6 -> 0.3
    # ne = (0.1 + 0.2 + 0 + 0.25 + 0.3) / 5 = 0.17
    assert out["ne"] == pytest.approx(0.17)
    assert out["per_category"] == pytest.approx({"blouse": 0.15, "skirt": 0.55 / 3})
    assert out["n_points"] == 5 and out["excluded_images"] == 2


def test_no_visible_points_and_missing_prediction(tmp_path: Path) -> None:
    pred = read_keypoints_csv(write(tmp_path / "pred.csv", [HEAD, *PRED_ROWS]))
    only_excluded = read_keypoints_csv(write(tmp_path / "truth.csv", [HEAD, TRUTH_ROWS[2], TRUTH_ROWS[3]]))
    with pytest.raises(FashionlabError, match="truth.csv: no visible points to score"):
        normalized_error(pred, only_excluded)
    truth = read_keypoints_csv(write(tmp_path / "truth.csv", [HEAD, *TRUTH_ROWS, row("z9", "skirt", {})]))
    with pytest.raises(FashionlabError, match="truth.csv line 6: image 'z9' has no prediction in .*pred.csv"):
        normalized_error(pred, truth)


def test_reader_values(tmp_path: Path) -> None:
    kp = read_keypoints_csv(write(tmp_path / "k.csv", [HEAD, "", TRUTH_ROWS[1]]))
    assert kp.image_ids == ["s1"] and kp.categories == ["skirt"] and kp.lines == [3]
    j = KEYPOINT_NAMES.index("waistband_right")
    assert kp.xy[0, j].tolist() == [20, 0] and kp.v[0, j] == 1 and kp.v[0, 0] == -1


BAD_HEAD = HEAD.replace("armpit_left", "armpitleft")


@pytest.mark.parametrize("lines, match", [
    ([""], "k.csv: empty file"),
    ([HEAD], "k.csv: no data rows"),
    ([BAD_HEAD, TRUTH_ROWS[0]], "k.csv line 1 column 8: expected 'armpit_left', found 'armpitleft'"),
    ([",".join(HEADER[:-1]), TRUTH_ROWS[0]], "k.csv line 1: header has 25 columns; missing 'bottom_right_out'"),
    ([HEAD + ",extra", TRUTH_ROWS[0]], "k.csv line 1 column 27: unexpected extra column 'extra'"),
    ([HEAD, TRUTH_ROWS[0], TRUTH_ROWS[1] + ",x"], "k.csv line 3: 27 columns; expected 26"),
    ([HEAD, TRUTH_ROWS[0].replace("10_10_1", "12_x_1")],
     "k.csv line 2 column armpit_left: cell '12_x_1' is not x_y_v"),
    ([HEAD, TRUTH_ROWS[0].replace("10_10_1", "10_10_2")],
     "k.csv line 2 column armpit_left: visibility 2 in '10_10_2' is not -1, 0 or 1"),
    ([HEAD, TRUTH_ROWS[0].replace("blouse", "shirt")], "k.csv line 2: image_category 'shirt' is not one of"),
    ([HEAD, TRUTH_ROWS[0], TRUTH_ROWS[1], TRUTH_ROWS[0]], r"k.csv line 4: duplicate image_id 'b1' \(first on line 2\)"),
    ([HEAD, "," + TRUTH_ROWS[0].split(",", 1)[1]], "k.csv line 2: empty image_id"),
])
def test_reader_errors(tmp_path: Path, lines: list[str], match: str) -> None:
    with pytest.raises(FashionlabError, match=match):
        read_keypoints_csv(write(tmp_path / "k.csv", lines))


def test_reader_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="nope.csv: no such file"):
        read_keypoints_csv(tmp_path / "nope.csv")


def test_writer_round_trip(tmp_path: Path) -> None:
    coords = np.zeros((2, 24, 2))
    coords[:, :, 0] = np.arange(24) + 0.4   # rounds down to 0..23
    coords[:, :, 1] = np.arange(24) + 10.6  # rounds up to 11..34
    out = write_keypoints_csv(tmp_path / "sub" / "pred.csv", ["i1", "i2"], ["skirt", "blouse"], coords)
    lines = out.read_text().splitlines()
    assert lines[0] == HEAD
    kp = read_keypoints_csv(out)
    for i, cat in enumerate(("skirt", "blouse")):
        own = np.array([n in CATEGORY_POINTS[cat] for n in KEYPOINT_NAMES])
        assert (kp.v[i] == np.where(own, 1, -1)).all()
        assert kp.xy[i, own].tolist() == [[j, j + 11] for j in np.flatnonzero(own)]
        assert (kp.xy[i, ~own] == -1).all()
    assert lines[1].split(",")[2] == "-1_-1_-1"  # skirt has no neckline_left
    mask = np.zeros((2, 24), bool)
    mask[0, 0] = True
    write_keypoints_csv(out, ["i1", "i2"], ["skirt", "blouse"], coords, visible_mask=mask)
    kp = read_keypoints_csv(out)
    assert kp.v[0, 0] == 1 and (kp.v[0, 1:] == -1).all() and (kp.v[1] == -1).all()


def test_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="coords has shape"):
        write_keypoints_csv(tmp_path / "p.csv", ["a"], ["skirt"], np.zeros((1, 23, 2)))
    with pytest.raises(FashionlabError, match="category 'hat'"):
        write_keypoints_csv(tmp_path / "p.csv", ["a"], ["hat"], np.zeros((1, 24, 2)))
    with pytest.raises(FashionlabError, match="visible_mask has shape"):
        write_keypoints_csv(tmp_path / "p.csv", ["a"], ["skirt"], np.zeros((1, 24, 2)), np.ones((1, 3)))
    with pytest.raises(FashionlabError, match="NaN"):
        write_keypoints_csv(tmp_path / "p.csv", ["a"], ["skirt"], np.full((1, 24, 2), np.nan))
    assert not (tmp_path / "p.csv").exists()
