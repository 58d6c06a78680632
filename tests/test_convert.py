"""Converters to retrieval, styles and attributes (DeepFashion2, In-shop, Consumer-to-shop, Category-Attribute,
Fashionpedia) and the ``data convert`` command: outputs go through fashionlab's own readers."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fashionlab import api
from fashionlab.cli import app
from fashionlab.errors import FashionlabError
from fashionlab.tasks.attributes.metric import read_label_csv
from fashionlab.tasks.attributes.task import value_names
from fashionlab.tasks.retrieval.data import read_items
from fashionlab.tasks.retrieval.metric import read_matches_csv
from fashionlab.tasks.styles.metric import read_label_matrix
from fashionlab.tasks.styles.task import resolve_images

from .conftest import TINY
from .convert_sources import ATTRS, make_attributes, make_c2s, make_deepfashion2, make_fashionpedia, make_inshop


def _perfect_ranks(matches: dict[str, set[str]], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query_id", "gallery_ids"])
        for query, gallery in matches.items():
            writer.writerow([query, " ".join(sorted(gallery))])
    return path


def test_deepfashion2_to_retrieval(tmp_path: Path) -> None:
    src = make_deepfashion2(tmp_path / "df2")
    out = tmp_path / "ret"
    summary = api.convert(src, "deepfashion2", "retrieval", out)
    table = read_items(out / "items.csv")  # fashionlab's reader: every image resolves under out/images
    assert sorted(zip(table.ids, table.items, table.domains)) == [
        ("000001_item1.jpg", "1_1", "consumer"), ("000001_item2.jpg", "1_2", "consumer"),
        ("000002_item1.jpg", "1_1", "shop"), ("000002_item2.jpg", "1_2", "shop"),
        ("000003_item2.jpg", "2_1", "shop"), ("000004_item1.jpg", "2_1", "consumer")]
    assert table.categories[table.ids.index("000003_item2.jpg")] == "long sleeve top"
    assert summary.dropped["style 0 (not part of a commercial-consumer pair)"] == 14
    matches = read_matches_csv(out / "matches.csv")
    assert matches == {"000001_item1.jpg": {"000002_item1.jpg"}, "000001_item2.jpg": {"000002_item2.jpg"},
                       "000004_item1.jpg": {"000003_item2.jpg"}}
    crop = out / "images" / "000001_item2.jpg"  # garments are cropped by default for retrieval
    assert crop.is_file() and not crop.is_symlink()
    scores = api.evaluate("retrieval", _perfect_ranks(matches, tmp_path / "ranks.csv"), out / "matches.csv")
    assert scores["map@10"] == 1.0
    linked = api.convert(src, "deepfashion2", "retrieval", tmp_path / "linked", crop=False)
    assert linked.rows == 6 and (tmp_path / "linked" / "images" / "000001_item2.jpg").is_symlink()
    data = json.loads((src / "annos" / "000003.json").read_text())
    data["source"] = "buyer"
    (src / "annos" / "000003.json").write_text(json.dumps(data))
    with pytest.raises(FashionlabError, match=r"000003\.json field 'source': 'buyer'; expected 'shop' or 'user'"):
        api.convert(src, "deepfashion2", "retrieval", tmp_path / "bad")


def test_inshop_splits_roles_and_matches(tmp_path: Path) -> None:
    src = make_inshop(tmp_path / "inshop")
    test = api.convert(src, "deepfashion-inshop", "retrieval", tmp_path / "test", split="test")
    table = read_items(tmp_path / "test" / "items.csv")
    assert test.rows == 5 and test.per == {"consumer": 2, "shop": 3}
    assert set(table.categories) == {"WOMEN/Blouses_Shirts", "WOMEN/Dresses"}
    matches = read_matches_csv(tmp_path / "test" / "matches.csv")
    query = "img/WOMEN/Blouses_Shirts/id_00000003/01_1_front.jpg"
    assert matches[query] == {"img/WOMEN/Blouses_Shirts/id_00000003/02_2_side.jpg",
                              "img/WOMEN/Blouses_Shirts/id_00000003/03_3_back.jpg"} and len(matches) == 2
    train = api.convert(src, "deepfashion-inshop", "retrieval", tmp_path / "train", split="train")
    rows = read_items(tmp_path / "train" / "items.csv")
    assert train.per == {"shop": 2, "consumer": 3}
    assert [d for i, d in zip(rows.ids, rows.domains) if "id_00000001" in i] == ["shop", "consumer", "consumer"]
    assert sum(len(v) for v in read_matches_csv(tmp_path / "train" / "matches.csv").values()) == 3
    assert api.convert(src, "deepfashion-inshop", "retrieval", tmp_path / "all").rows == 10
    part = src / "Eval" / "list_eval_partition.txt"
    part.write_text(part.read_text().replace(" gallery\n", " galery\n", 1))
    with pytest.raises(FashionlabError, match=r"list_eval_partition\.txt line \d+ \(img/.*\) field 'evaluation_status': "
                                              r"'galery' is not train, query or gallery"):
        api.convert(src, "deepfashion-inshop", "retrieval", tmp_path / "bad")


def test_consumer_to_shop_pairs(tmp_path: Path) -> None:
    src = make_c2s(tmp_path / "c2s")
    summary = api.convert(src, "deepfashion-c2s", "retrieval", tmp_path / "all")
    table = read_items(tmp_path / "all" / "items.csv")
    assert summary.rows == len(table) == 7 and len(set(table.ids)) == 7  # the shared shop image once
    matches = read_matches_csv(tmp_path / "all" / "matches.csv")
    assert matches["img/DRESSES/Dress/id_00000002/comsumer_02.jpg"] == {"img/DRESSES/Dress/id_00000002/shop_01.jpg"}
    assert len(matches) == 4 and table.categories[0] == "TOPS/Summer_Wear"
    assert api.convert(src, "deepfashion-c2s", "retrieval", tmp_path / "eval", split="val,test").rows == 5
    part = src / "Eval" / "list_eval_partition.txt"
    part.write_text(part.read_text().replace(" id_00000003 val", " val"))
    with pytest.raises(FashionlabError, match=r"line 6 field 'image_pair_name_1 image_pair_name_2 item_id "
                                              r"evaluation_status': 3 columns; expected 4"):
        api.convert(src, "deepfashion-c2s", "retrieval", tmp_path / "bad")


def test_category_attribute_to_styles(tmp_path: Path) -> None:
    src = make_attributes(tmp_path / "attr")
    out = tmp_path / "styles"
    summary = api.convert(src, "deepfashion-attributes", "styles", out, split="train")
    images, labels, y = read_label_matrix(out / "labels.csv", binary=True)
    assert labels == ["shape=a-line", "texture=abstract chevron", "texture=animal", "fabric=denim", "style=boho",
                      "style=bodycon", "part=button"]
    assert summary.rows == len(images) == 3  # train images 1, 2, 4 (4 has no positive: all zeros)
    assert y.tolist() == [[1, 0, 0, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0, 1], [0] * 7]  # 0 (unknown) is not positive
    assert all(p.is_file() for p in resolve_images(out / "labels.csv", images))
    only = api.convert(src, "deepfashion-attributes", "styles", tmp_path / "style", groups="style")
    assert only.stats["labels"] == 2 and only.rows == 5


def test_category_attribute_to_attributes_trains(tmp_path: Path) -> None:
    src = make_attributes(tmp_path / "attr")
    out = tmp_path / "fa"
    summary = api.convert(src, "deepfashion-attributes", "attributes", out)
    frame = read_label_csv(out / "Annotations" / "label.csv")
    got = {(p.split("/")[-1], t): lab for p, t, lab in frame.itertuples(index=False)}
    assert got[("img_00000002.jpg", "texture")] == "ym"  # abstract chevron 1, animal 0 (unknown) -> m
    assert got[("img_00000005.jpg", "style")] == "yy" and ("img_00000004.jpg", "style") not in got
    assert summary.per == {"fabric": 1, "part": 1, "shape": 2, "style": 3, "texture": 3}
    assert value_names("texture", 2, out) == ["abstract chevron", "animal"]
    negative = api.convert(src, "deepfashion-attributes", "attributes", tmp_path / "neg", zero_means="negative")
    assert negative.rows == summary.rows
    assert "img_00000002.jpg,texture,yn" in (tmp_path / "neg" / "Annotations" / "label.csv").read_text()
    with pytest.raises(FashionlabError, match="task 'fabric' has 1 image"):  # too few rows to train a head
        api.train("attributes", data=str(out), val_data=str(out), out=str(tmp_path / "run"), epochs=0, **TINY)
    result = api.train("attributes", data=str(out), val_data=str(out), out=str(tmp_path / "run"), epochs=0,
                       tasks=["texture", "shape", "style"], **TINY)
    assert result.best.is_file() and set(result.meta.tasks) == {"texture", "shape", "style"}


@pytest.mark.parametrize("line, message", [
    ("img/x.jpg 1 -1", (r"list_attr_img\.txt line 3 \(img/x\.jpg\) field 'attribute_labels': 2 values; "
                        r"list_attr_cloth\.txt has 7 attributes")),
    ("img/x.jpg 1 -1 -1 -1 2 -1 -1", r"line 3 \(img/x\.jpg\) field 'attribute_labels \(boho\)': '2' is not 1, -1 or 0"),
])
def test_category_attribute_malformed(tmp_path: Path, line: str, message: str) -> None:
    src = make_attributes(tmp_path / "attr")
    path = src / "Anno" / "list_attr_img.txt"
    lines = path.read_text().splitlines()
    lines[2] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FashionlabError, match=message):
        api.convert(src, "deepfashion-attributes", "styles", tmp_path / "out")
    (src / "Anno" / "list_attr_cloth.txt").write_text(f"{len(ATTRS)}\nattribute_name attribute_type\na-line x\n")
    with pytest.raises(FashionlabError, match=r"list_attr_cloth\.txt line 3 \(a-line\) field 'attribute_type': 'x'"):
        api.convert(src, "deepfashion-attributes", "styles", tmp_path / "out")


def test_fashionpedia_to_styles_and_attributes(tmp_path: Path) -> None:
    src = make_fashionpedia(tmp_path / "fp")
    styles = api.convert(src, "fashionpedia", "styles", tmp_path / "styles", images=tmp_path / "fp" / "train")
    images, labels, y = read_label_matrix(tmp_path / "styles" / "labels.csv", binary=True)
    assert labels[:3] == ["silhouette=symmetrical", "silhouette=a-line", "length=knee (length)"]
    assert "woven=jacquard / brocade" in labels and styles.rows == 3
    assert dict(zip(images, y.sum(1).tolist())) == {"000000009813.jpg": 4, "000000010223.jpg": 2,
                                                    "000000000555.jpg": 0}
    out = tmp_path / "fa"
    summary = api.convert(src, "fashionpedia", "attributes", out, images=tmp_path / "fp" / "train")
    frame = read_label_csv(out / "Annotations" / "label.csv")
    got = {(p, t): lab for p, t, lab in frame.itertuples(index=False)}
    dress = "Images/000000009813.jpg"
    assert got[(dress, "dress_length")] == "ynn" and got[(dress, "sleeve_length")] == "nny"  # two sleeves merged
    assert got[(dress, "sleeve_silhouette")] == "yn" and got[("Images/000000010223.jpg", "pants_silhouette")] == "ny"
    assert summary.rows == 7 and summary.dropped["no attribute on any annotation (no row)"] == 1
    assert value_names("dress_woven", 1, out) == ["jacquard / brocade"]
    lengths = api.convert(src, "fashionpedia", "attributes", tmp_path / "len", images=tmp_path / "fp" / "train",
                          groups="length")
    assert set(lengths.per) == {"dress_length", "sleeve_length"}
    data = json.loads(src.read_text())
    data["annotations"][1]["attribute_ids"] = [156, 999]
    src.write_text(json.dumps(data))
    with pytest.raises(FashionlabError, match=r"annotation id 19 field 'attribute_ids': 999 is not an id in attributes"):
        api.convert(src, "fashionpedia", "styles", tmp_path / "bad", images=tmp_path / "fp" / "train")


def test_option_and_format_errors(tmp_path: Path) -> None:
    src = make_inshop(tmp_path / "inshop")
    with pytest.raises(FashionlabError, match=r"--mapping: not an option of --from deepfashion-inshop"):
        api.convert(src, "deepfashion-inshop", "retrieval", tmp_path / "o", mapping="m.yaml")
    with pytest.raises(FashionlabError, match=r"--from 'deepfashion3': unknown format"):
        api.convert(src, "deepfashion3", "retrieval", tmp_path / "o")
    with pytest.raises(FashionlabError, match=r"--to 'styles': deepfashion-inshop converts to retrieval"):
        api.convert(src, "deepfashion-inshop", "styles", tmp_path / "o")


def test_cli_data_convert(tmp_path: Path) -> None:
    src = make_inshop(tmp_path / "inshop")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "convert", str(src), "--from", "deepfashion-inshop", "--to", "retrieval",
                                      "--out", str(out), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "5 rows from 5 images" in result.output and "consumer: 2" in result.output
    assert json.loads((out / "convert_summary.json").read_text())["files"] == ["items.csv", "matches.csv",
                                                                               "convert_summary.json"]
    proc = subprocess.run([sys.executable, "-m", "fashionlab.cli", "data", "convert", str(src), "--from",
                           "deepfashion-inshop", "--to", "retrieval", "--out", str(out), "--split", "tset"],
                          capture_output=True, text=True, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --split 'tset'")
