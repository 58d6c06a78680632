"""Tiny annotation files in the public datasets' exact schemas (field names from their documentation), plus
tiny images, for the converter tests. No real dataset is used or needed."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from fashionlab.convert.maps import DEEPFASHION2

W, H = 160, 200  # every generated photo


def photo(path: Path, size: tuple[int, int] = (W, H), shade: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 120, 200 - shade)).save(path)


def df2_landmarks(category_id: int, seed: int = 0, hidden: dict[int, int] | None = None) -> list[int]:
    """[x1, y1, v1, ...] for a category: landmark k (1-based) at (20 + 3k + seed, 10 + 4k), v = 2 unless
    ``hidden`` gives another v (0 -> x = y = 0, as in the release)."""
    n = DEEPFASHION2[category_id][1]
    out: list[int] = []
    for k in range(1, n + 1):
        v = (hidden or {}).get(k, 2)
        out += [0, 0, 0] if v == 0 else [20 + 3 * k + seed, 10 + 4 * k, v]
    return out


def df2_item(category_id: int, style: int, box: list[int], seed: int = 0, hidden: dict | None = None) -> dict:
    return {"segmentation": [[box[0], box[1], box[2], box[1], box[2], box[3]]], "scale": 2, "viewpoint": 2,
            "zoom_in": 1, "landmarks": df2_landmarks(category_id, seed, hidden), "style": style,
            "bounding_box": box, "category_id": category_id, "occlusion": 1,
            "category_name": DEEPFASHION2[category_id][0]}


def make_deepfashion2(root: Path) -> Path:
    """``root/train/annos/*.json`` + ``root/train/image/*.jpg``:
    000001 user pair 1: short sleeve top (style 1; landmark 6 occluded, 9 not labelled) + skirt (style 2)
    000002 shop pair 1: short sleeve top (style 1; armpit_left landmark 12 not labelled) + skirt (style 2)
    000003 shop pair 2: vest (style 0, small box) + long sleeve top (style 1, large box): two blouses
    000004 user pair 2: long sleeve top (style 1) with landmark 2 outside the image
    000005..000017 shop pair 3: one garment of each category 1..13 (style 0)"""
    split = root / "train"
    annos = {
        1: {"source": "user", "pair_id": 1, "item1": df2_item(1, 1, [10, 5, 140, 150], hidden={6: 1, 9: 0}),
            "item2": df2_item(9, 2, [20, 10, 60, 50], seed=3)},
        2: {"source": "shop", "pair_id": 1, "item1": df2_item(1, 1, [12, 8, 150, 160], hidden={12: 0}),
            "item2": df2_item(9, 2, [15, 8, 55, 48])},
        3: {"source": "shop", "pair_id": 2, "item1": df2_item(5, 0, [30, 30, 60, 60]),
            "item2": df2_item(2, 1, [5, 5, 155, 195], seed=1)},
        4: {"source": "user", "pair_id": 2, "item1": df2_item(2, 1, [5, 5, 150, 190])},
    }
    annos[4]["item1"]["landmarks"][3:5] = [W + 40, 30]  # landmark 2 (neckline_left) beyond the right edge
    for cid in range(1, 14):
        annos[4 + cid] = {"source": "shop", "pair_id": 3, "item1": df2_item(cid, 0, [0, 0, W - 1, H - 1])}
    for number, data in annos.items():
        stem = f"{number:06d}"
        (split / "annos").mkdir(parents=True, exist_ok=True)
        (split / "annos" / f"{stem}.json").write_text(json.dumps(data))
        photo(split / "image" / f"{stem}.jpg", shade=number * 9)
    return split


def _list(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{len(rows)}\n{header}\n" + "\n".join(rows) + "\n")


def make_fld(root: Path) -> Path:
    """FLD layout: Anno/list_landmarks.txt, Eval/list_eval_partition.txt, Img/img/img_0000000k.jpg.
    1 upper (train; first landmark occluded), 2 lower (train; padded to 8 triplets, right hem truncated),
    3 full (val), 4 lower (test)."""
    header = "image_name clothes_type variation_type " + " ".join(
        f"landmark_visibility_{k} landmark_location_x_{k} landmark_location_y_{k}" for k in range(1, 9))
    rows = [
        "img/img_00000001.jpg 1 1 1 046 030 0 110 031 0 020 090 0 140 092 0 050 150 0 105 151",
        "img/img_00000002.jpg 2 2 0 040 020 0 120 022 0 035 180 2 000 000 0 000 000 0 000 000 0 000 000 0 000 000",
        "img/img_00000003.jpg 3 1 0 050 020 0 100 020 0 030 080 0 130 080 0 055 090 0 105 090 0 045 190 0 115 190",
        "img/img_00000004.jpg 2 1 0 030 010 0 130 012 0 030 150 0 130 150",
    ]
    _list(root / "Anno" / "list_landmarks.txt", header, rows)
    _list(root / "Eval" / "list_eval_partition.txt", "image_name evaluation_status",
          ["img/img_00000001.jpg train", "img/img_00000002.jpg train", "img/img_00000003.jpg val",
           "img/img_00000004.jpg test"])
    for k in range(1, 5):
        photo(root / "Img" / "img" / f"img_{k:08d}.jpg")
    return root


def make_inshop(root: Path) -> Path:
    """In-shop layout: Eval/list_eval_partition.txt and Img/img/<MEN|WOMEN>/<category>/<item>/<view>.jpg.
    Train items 1 (3 views) and 2 (2 views); item 3: 1 query + 2 gallery; item 4: 1 query + 1 gallery."""
    rows = []
    plan = [(1, "WOMEN/Dresses", ["train"] * 3), (2, "MEN/Denim", ["train"] * 2),
            (3, "WOMEN/Blouses_Shirts", ["query", "gallery", "gallery"]), (4, "WOMEN/Dresses", ["query", "gallery"])]
    views = ["1_front", "2_side", "3_back", "4_full"]
    for item, category, statuses in plan:
        for v, status in enumerate(statuses):
            name = f"img/{category}/id_{item:08d}/{v + 1:02d}_{views[v]}.jpg"
            rows.append(f"{name} id_{item:08d} {status}")
            photo(root / "Img" / name, (64, 64), shade=item * 30 + v)
    _list(root / "Eval" / "list_eval_partition.txt", "image_name item_id evaluation_status", rows)
    return root


def make_c2s(root: Path) -> Path:
    """Consumer-to-shop layout: pairs (consumer, shop, item, status); item 2's shop image is in two pairs."""
    pairs = [("img/TOPS/Summer_Wear/id_00000001/comsumer_01.jpg", "img/TOPS/Summer_Wear/id_00000001/shop_01.jpg",
              "id_00000001", "train"),
             ("img/DRESSES/Dress/id_00000002/comsumer_01.jpg", "img/DRESSES/Dress/id_00000002/shop_01.jpg",
              "id_00000002", "test"),
             ("img/DRESSES/Dress/id_00000002/comsumer_02.jpg", "img/DRESSES/Dress/id_00000002/shop_01.jpg",
              "id_00000002", "test"),
             ("img/DRESSES/Dress/id_00000003/comsumer_01.jpg", "img/DRESSES/Dress/id_00000003/shop_01.jpg",
              "id_00000003", "val")]
    for consumer, shop, _, _ in pairs:
        photo(root / "Img" / consumer, (64, 64), shade=40)
        photo(root / "Img" / shop, (64, 64), shade=160)
    _list(root / "Eval" / "list_eval_partition.txt",
          "image_pair_name_1 image_pair_name_2 item_id evaluation_status", [" ".join(p) for p in pairs])
    return root


ATTRS = [("a-line", 3), ("abstract chevron", 1), ("animal", 1), ("denim", 2), ("boho", 5), ("bodycon", 5),
         ("button", 4)]


def make_attributes(root: Path) -> Path:
    """Category-Attribute layout: Anno/list_attr_cloth.txt (names with spaces), Anno/list_attr_img.txt (1/-1/0),
    Eval/list_eval_partition.txt, Img/img/<folder>/img_0000000k.jpg."""
    values = {1: "1 -1 -1 -1 1 -1 -1", 2: "-1 1 0 1 -1 -1 1", 3: "-1 -1 1 -1 -1 1 -1", 4: "-1 -1 -1 -1 -1 -1 -1",
              5: "1 1 -1 -1 1 1 -1"}
    status = {1: "train", 2: "train", 3: "val", 4: "train", 5: "test"}
    names = {k: f"img/Sheer_Pleated-Front_Blouse/img_{k:08d}.jpg" for k in values}
    _list(root / "Anno" / "list_attr_cloth.txt", "attribute_name  attribute_type",
          [f"{name:<26}{kind}" for name, kind in ATTRS])
    _list(root / "Anno" / "list_attr_img.txt", "image_name  attribute_labels",
          [f"{names[k]}  {v}" for k, v in values.items()])
    _list(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status",
          [f"{names[k]}  {s}" for k, s in status.items()])
    for name in names.values():
        photo(root / "Img" / name, (48, 48))
    return root


def make_fashionpedia(root: Path) -> Path:
    """instances_attributes JSON (Fashionpedia fields) + train/ images: a dress with two sleeves, pants."""
    attrs = [(113, "symmetrical", "silhouette"), (123, "a-line", "silhouette"), (147, "knee (length)", "length"),
             (149, "midi", "length"), (156, "wrist-length", "length"), (262, "jacquard, brocade", "woven"),
             (298, "plain (pattern)", "textile pattern")]
    data = {
        "info": {"year": 2020, "version": "1.0"},
        "images": [{"id": 9813, "width": 64, "height": 80, "file_name": "000000009813.jpg"},
                   {"id": 10223, "width": 64, "height": 80, "file_name": "000000010223.jpg"},
                   {"id": 555, "width": 64, "height": 80, "file_name": "000000000555.jpg"}],
        "categories": [{"id": 6, "name": "pants", "supercategory": "lowerbody", "level": 2},
                       {"id": 10, "name": "dress", "supercategory": "wholebody", "level": 2},
                       {"id": 31, "name": "sleeve", "supercategory": "garment parts", "level": 2}],
        "attributes": [{"id": i, "name": n, "supercategory": s, "level": 1, "taxonomy_id": f"att{i:06d}"}
                       for i, n, s in attrs],
        "annotations": [
            {"id": 18, "image_id": 9813, "category_id": 10, "attribute_ids": [147, 113, 262], "bbox": [1, 2, 50, 70],
             "area": 3500.0, "iscrowd": 0, "segmentation": [[1, 2, 51, 2, 51, 72]]},
            {"id": 19, "image_id": 9813, "category_id": 31, "attribute_ids": [156], "bbox": [1, 2, 9, 9],
             "area": 81.0, "iscrowd": 0, "segmentation": [[1, 2, 10, 2, 10, 11]]},
            {"id": 20, "image_id": 9813, "category_id": 31, "attribute_ids": [156, 113], "bbox": [40, 2, 9, 9],
             "area": 81.0, "iscrowd": 0, "segmentation": [[40, 2, 49, 2, 49, 11]]},
            {"id": 34, "image_id": 10223, "category_id": 6, "attribute_ids": [298, 123], "bbox": [5, 20, 40, 50],
             "area": 2000.0, "iscrowd": 0, "segmentation": [[5, 20, 45, 20, 45, 70]]},
            {"id": 35, "image_id": 555, "category_id": 6, "attribute_ids": [], "bbox": [5, 20, 40, 50],
             "area": 2000.0, "iscrowd": 0, "segmentation": [[5, 20, 45, 20, 45, 70]]},
        ],
    }
    path = root / "annotations" / "instances_attributes_train2020.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    for image in data["images"]:
        photo(root / "train" / image["file_name"], (64, 80))
    return path


COCO_NAMES = ["l_neck", "r_neck", "l_pit", "r_pit", "l_hem", "r_hem", "logo"]


def make_coco(root: Path) -> Path:
    """COCO keypoints JSON: category 'top' (7 named keypoints) and 'bag' (unmapped); image 1 has two tops
    (one small), image 2 one top and a crowd top, image 3 a bag."""
    def kps(dx: int, v: list[int]) -> list[float]:
        pts = [(30, 20), (90, 20), (20, 60), (100, 60), (25, 150), (95, 150), (60, 80)]
        return [c for (x, y), vis in zip(pts, v) for c in ((x + dx, y, vis) if vis else (0, 0, 0))]
    data = {
        "images": [{"id": 1, "file_name": "a/0001.jpg", "width": W, "height": H},
                   {"id": 2, "file_name": "a/0002.jpg", "width": W, "height": H},
                   {"id": 3, "file_name": "a/0003.jpg", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "top", "supercategory": "clothes", "keypoints": COCO_NAMES,
                        "skeleton": [[1, 2]]},
                       {"id": 2, "name": "bag", "supercategory": "accessory", "keypoints": ["handle"], "skeleton": []}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "keypoints": kps(0, [2, 2, 2, 1, 2, 0, 2]), "num_keypoints": 6,
             "bbox": [15, 15, 100, 150], "area": 15000, "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 1, "keypoints": kps(10, [2] * 7), "num_keypoints": 7,
             "bbox": [25, 15, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 21, "image_id": 2, "category_id": 1, "keypoints": kps(5, [2] * 7), "num_keypoints": 7,
             "bbox": [20, 15, 100, 150], "area": 15000, "iscrowd": 0},
            {"id": 22, "image_id": 2, "category_id": 1, "keypoints": kps(5, [2] * 7), "num_keypoints": 7,
             "bbox": [20, 15, 100, 150], "area": 15000, "iscrowd": 1},
            {"id": 31, "image_id": 3, "category_id": 2, "keypoints": [10, 10, 2], "num_keypoints": 1,
             "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }
    path = root / "person_keypoints.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    for image in data["images"]:
        photo(root / image["file_name"])
    (root / "mapping.yaml").write_text(
        "category: blouse\npoints:\n  l_neck: neckline_left\n  r_neck: neckline_right\n  l_pit: armpit_left\n"
        "  r_pit: armpit_right\n  l_hem: top_hem_left\n  r_hem: top_hem_right\n")
    return path
