"""Converters to FashionAI keypoints (DeepFashion2, DeepFashion FLD, COCO keypoints): the output is read by
fashionlab's own readers, scored by ``evaluate keypoints`` and trained on; malformed input is one line."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from fashionlab import api
from fashionlab.convert.maps import DEEPFASHION2
from fashionlab.convert.targets import NO_NORMALISER, OUTSIDE
from fashionlab.errors import FashionlabError
from fashionlab.tasks.keypoints.dataset import read_records
from fashionlab.tasks.keypoints.metric import CATEGORY_POINTS

from .convert_sources import make_coco, make_deepfashion2, make_fld


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["image_id"]: row for row in csv.DictReader(handle)}


def _df2_point(category_id: int, k: int, seed: int = 0) -> str:
    return f"{20 + 3 * k + seed}_{10 + 4 * k}"


@pytest.fixture()
def df2(tmp_path: Path) -> Path:
    return make_deepfashion2(tmp_path / "DeepFashion2")


def test_mapping_table_is_consistent() -> None:
    names = [v[0] for v in DEEPFASHION2.values()]
    assert len(set(names)) == 13 and sum(v[1] for v in DEEPFASHION2.values()) == 294
    for name, n, category, points in DEEPFASHION2.values():
        assert set(points) <= set(CATEGORY_POINTS[category]), name
        assert all(1 <= k <= n for k in points.values()), name
        assert len(set(points.values())) == len(points), name  # one landmark per point
        left = [p for p in points if "left" in p]
        assert all(p.replace("left", "right") in points for p in left), name  # mapped in pairs


def test_deepfashion2_to_keypoints_read_scored_and_trained(df2: Path, tmp_path: Path) -> None:
    out = tmp_path / "kp"
    summary = api.convert(df2, "deepfashion2", "keypoints", out)
    rows = _rows(out / "train.csv")
    assert summary.rows == len(rows) == 19 and summary.images == 17
    assert summary.per == {"blouse": 8, "outwear": 2, "dress": 4, "skirt": 3, "trousers": 2}
    top = rows["Images/blouse/000001.jpg"]
    assert top["image_category"] == "blouse"
    assert top["neckline_left"] == _df2_point(1, 2) + "_1"   # landmark 2 visible -> v 1
    assert top["neckline_right"] == _df2_point(1, 6) + "_0"  # landmark 6 occluded -> v 0
    assert top["cuff_left_out"] == "-1_-1_-1"                 # landmark 9 not labelled
    assert top["armpit_right"] == _df2_point(1, 20) + "_1" and top["waistline_left"] == "-1_-1_-1"
    skirt = rows["Images/skirt/000001.jpg"]
    assert skirt["waistband_left"] == _df2_point(9, 1, 3) + "_1" and skirt["hemline_right"] == _df2_point(9, 7, 3) + "_1"
    vest = rows["Images/blouse/000009.jpg"]  # category 5 (vest): no sleeves
    assert vest["armpit_left"] == _df2_point(5, 8) + "_1" and vest["cuff_left_in"] == "-1_-1_-1"
    outwear = rows["Images/outwear/000008.jpg"]  # long sleeve outwear
    assert outwear["waistline_right"] == _df2_point(4, 22) + "_1" and outwear["center_front"] == "-1_-1_-1"
    # 000003: a vest and a long sleeve top are both blouses: the larger box is kept
    assert "Images/blouse/000003.jpg" in rows and rows["Images/blouse/000003.jpg"]["cuff_left_out"] == _df2_point(2, 11, 1) + "_1"
    assert sum(n for reason, n in summary.dropped.items() if reason.startswith("another blouse")) == 1
    assert rows["Images/blouse/000004.jpg"]["neckline_left"] == "-1_-1_-1" and summary.stats[OUTSIDE] == 1
    assert (out / "Images/blouse/000001.jpg").is_symlink()

    records = read_records(out)  # fashionlab's own reader: images resolve, points inside, categories known
    assert len(records) == 19 and records.sizes[0].tolist() == [160, 200]
    scores = api.evaluate("keypoints", out / "train.csv", out / "train.csv")
    assert scores["ne"] == 0.0 and scores["excluded_images"] == summary.stats[NO_NORMALISER] == 1
    saved = json.loads((out / "convert_summary.json").read_text())
    assert saved["rows"] == 19 and saved["rows_per"]["blouse"] == 8 and "non-commercial" in " ".join(saved["notes"])

    tiny = {"model": "test_efficientnet", "pretrained": "none", "imgsz": 64, "batch": 8, "workers": 0}
    result = api.train("keypoints", data=str(out), val_data=str(out), out=str(tmp_path / "run"), epochs=1, **tiny)
    assert result.best.is_file() and result.metrics["ne"] > 0


def test_deepfashion2_crop_keeps_every_garment_and_moves_points(df2: Path, tmp_path: Path) -> None:
    out = tmp_path / "kp"
    summary = api.convert(df2, "deepfashion2", "keypoints", out, crop=True, crop_margin=0.1)
    rows = _rows(out / "train.csv")
    assert summary.rows == 20 and not any(r.startswith("another") for r in summary.dropped)
    vest = rows["Images/blouse/000003_item1.jpg"]  # box [30, 30, 60, 60] + 10 % -> crop from (27, 27)
    assert vest["armpit_left"] == f"{20 + 3 * 8 - 27}_{10 + 4 * 8 - 27}_1"
    crop = out / "Images/blouse/000003_item1.jpg"
    assert crop.is_file() and not crop.is_symlink()
    assert len(read_records(out)) == 20


def test_deepfashion2_mapping_override(df2: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(yaml.safe_dump({"short sleeve top": {"neckline_right": 5, "center_front": None}}))
    api.convert(df2, "deepfashion2", "keypoints", tmp_path / "kp", mapping=mapping)
    top = _rows(tmp_path / "kp" / "train.csv")["Images/blouse/000002.jpg"]
    assert top["neckline_right"] == _df2_point(1, 5) + "_1" and top["center_front"] == "-1_-1_-1"
    mapping.write_text(yaml.safe_dump({"skirt": {"crotch": 2}}))
    with pytest.raises(FashionlabError, match=r"map.yaml key 'skirt' point 'crotch': not a skirt point"):
        api.convert(df2, "deepfashion2", "keypoints", tmp_path / "kp2", mapping=mapping)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["item1"].update(landmarks=d["item1"]["landmarks"][:-3]),
     r"000001\.json item1 field 'landmarks': 72 values; short sleeve top has 25 landmarks \(75 values\)"),
    (lambda d: d["item2"].update(category_id=14), r"000001\.json item2 field 'category_id': 14 is not"),
    (lambda d: d["item2"].update(category_name="dress"), r"item2 field 'category_name': 'dress' does not match"),
    (lambda d: d["item1"]["landmarks"].__setitem__(11, 3), r"item1 field 'landmarks': landmark 4 has visibility 3"),
    (lambda d: d["item1"].update(bounding_box=[1, 2, 3]), r"item1 field 'bounding_box'"),
])
def test_deepfashion2_malformed_is_one_line(df2: Path, tmp_path: Path, edit, message: str) -> None:
    path = df2 / "annos" / "000001.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(FashionlabError, match=message) as err:
        api.convert(df2, "deepfashion2", "keypoints", tmp_path / "kp")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "kp" / "train.csv").exists()  # atomic: nothing half-written


def test_deepfashion2_invalid_json_and_missing_images(df2: Path, tmp_path: Path) -> None:
    (df2 / "annos" / "000002.json").write_text('{"source": "shop",\n "pair_id": }')
    with pytest.raises(FashionlabError, match=r"000002\.json line 2: invalid JSON"):
        api.convert(df2, "deepfashion2", "keypoints", tmp_path / "kp")
    (df2 / "annos" / "000002.json").unlink()
    with pytest.raises(FashionlabError, match=r"nothing to write.*image missing or unreadable"):
        api.convert(df2, "deepfashion2", "keypoints", tmp_path / "kp", images=tmp_path)


@pytest.fixture()
def fld(tmp_path: Path) -> Path:
    return make_fld(tmp_path / "FLD")


def test_fld_to_keypoints_partial_mapping_and_ne_exclusion(fld: Path, tmp_path: Path) -> None:
    out = tmp_path / "kp"
    summary = api.convert(fld, "deepfashion-landmark", "keypoints", out, split="train")
    rows = _rows(out / "train.csv")
    assert list(rows) == ["Images/blouse/img/img_00000001.jpg", "Images/skirt/img/img_00000002.jpg"]
    blouse, skirt = rows.values()
    assert blouse["neckline_left"] == "46_30_0" and blouse["neckline_right"] == "110_31_1"  # FLD 1 = occluded
    assert blouse["top_hem_right"] == "105_151_1" and blouse["cuff_left_out"] == "-1_-1_-1"  # sleeves unmapped
    assert skirt["waistband_left"] == "40_20_1" and skirt["hemline_right"] == "-1_-1_-1"  # 2 = truncated
    assert len(read_records(out)) == 2
    scores = api.evaluate("keypoints", out / "train.csv", out / "train.csv")
    assert scores["excluded_images"] == 1 == summary.stats[NO_NORMALISER]  # the blouse: FLD has no armpits
    assert scores["per_category"] == {"skirt": 0.0}
    every = api.convert(fld, "deepfashion-landmark", "keypoints", tmp_path / "all", lower="trousers")
    assert every.per == {"blouse": 1, "dress": 1, "trousers": 2}
    row = _rows(tmp_path / "all" / "train.csv")["Images/trousers/img/img_00000004.jpg"]
    assert row["waistband_right"] == "130_12_1" and row["bottom_left_out"] == "-1_-1_-1"


@pytest.mark.parametrize("line, message", [
    ("img/img_00000001.jpg 4 1 0 1 1", r"list_landmarks\.txt line 3 \(img/img_00000001\.jpg\) field 'clothes_type': 4"),
    ("img/img_00000001.jpg 2 1 0 1 1 0 2 2", r"line 3 \(img/img_00000001\.jpg\) field 'landmarks': 6 values"),
    ("img/img_00000001.jpg 2 1 5 1 1 0 2 2 0 3 3 0 4 4", r"field 'landmark_visibility_1': 5 is not"),
    ("img/img_00000001.jpg 2 1 0 1 x 0 2 2 0 3 3 0 4 4", r"field 'landmark_location_y_1': 'x' is not an integer"),
])
def test_fld_malformed_is_one_line(fld: Path, tmp_path: Path, line: str, message: str) -> None:
    path = fld / "Anno" / "list_landmarks.txt"
    lines = path.read_text().splitlines()
    lines[2] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FashionlabError, match=message) as err:
        api.convert(fld, "deepfashion-landmark", "keypoints", tmp_path / "kp")
    assert "\n" not in str(err.value)


def test_fld_bad_partition_and_split(fld: Path, tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match=r"--split 'trainn': deepfashion-landmark splits are train, val, test"):
        api.convert(fld, "deepfashion-landmark", "keypoints", tmp_path / "kp", split="trainn")
    path = fld / "Eval" / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("img_00000003.jpg val", "img_00000003.jpg vall"))
    with pytest.raises(FashionlabError, match=r"list_eval_partition\.txt line 5 \(img/img_00000003\.jpg\) field "
                                              r"'evaluation_status': 'vall'"):
        api.convert(fld, "deepfashion-landmark", "keypoints", tmp_path / "kp", split="train")


@pytest.fixture()
def coco(tmp_path: Path) -> Path:
    return make_coco(tmp_path / "coco")


def test_coco_keypoints_with_mapping(coco: Path, tmp_path: Path) -> None:
    out = tmp_path / "kp"
    summary = api.convert(coco, "coco-keypoints", "keypoints", out, mapping=coco.parent / "mapping.yaml")
    rows = _rows(out / "train.csv")
    assert list(rows) == ["Images/blouse/a/0001.jpg", "Images/blouse/a/0002.jpg"]
    first = rows["Images/blouse/a/0001.jpg"]  # annotation 11 (the larger of the two tops)
    assert first["neckline_left"] == "30_20_1" and first["armpit_right"] == "100_60_0"  # COCO v 1 -> 0
    assert first["top_hem_right"] == "-1_-1_-1"  # COCO v 0: not labelled
    assert summary.dropped["iscrowd annotation"] == 1 and summary.dropped["COCO category not in the mapping"] == 1
    assert any(r.startswith("another blouse") for r in summary.dropped)
    assert len(read_records(out)) == 2
    assert api.evaluate("keypoints", out / "train.csv", out / "train.csv")["ne"] == 0.0
    cropped = api.convert(coco, "coco-keypoints", "keypoints", tmp_path / "crop", mapping=coco.parent / "mapping.yaml",
                          crop=True)
    assert cropped.rows == 3


@pytest.mark.parametrize("mapping, message", [
    ("category: blouse\npoints: {l_neck: waistband_left}", r"points 'l_neck': 'waistband_left' is not a blouse point"),
    ("category: blouse\npoints: {nose: neckline_left}", r"points 'nose': not a keypoint of COCO category 'top'"),
    ("category: shirt\npoints: {l_neck: neckline_left}", r"category: 'shirt' is not one of blouse"),
    ("categories: {hat: {category: blouse, points: {a: b}}}", r"categories 'hat': no such COCO category"),
    ("category: blouse\npoints: {l_neck: neckline_left, r_neck: neckline_left}", r"already mapped"),
])
def test_coco_bad_mapping_is_one_line(coco: Path, tmp_path: Path, mapping: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(mapping)
    with pytest.raises(FashionlabError, match=message) as err:
        api.convert(coco, "coco-keypoints", "keypoints", tmp_path / "kp", mapping=path)
    assert "\n" not in str(err.value)


def test_coco_malformed_annotation_and_missing_mapping(coco: Path, tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match=r"needs --mapping"):
        api.convert(coco, "coco-keypoints", "keypoints", tmp_path / "kp")
    data = json.loads(coco.read_text())
    data["annotations"][2]["keypoints"] = data["annotations"][2]["keypoints"][:-3]
    coco.write_text(json.dumps(data))
    with pytest.raises(FashionlabError, match=r"annotation id 21 field 'keypoints': 18 values; category 'top' has 7"):
        api.convert(coco, "coco-keypoints", "keypoints", tmp_path / "kp", mapping=coco.parent / "mapping.yaml")

