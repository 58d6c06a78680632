"""DeepFashion2 (Ge et al., CVPR 2019) -> keypoints and retrieval.

Source layout (github.com/switchablenorms/DeepFashion2, "Data Organization"): one JSON per image,
``<split>/annos/000001.json`` beside ``<split>/image/000001.jpg``. Image-level fields ``source``
('shop' | 'user') and ``pair_id``; items ``item1`` .. ``itemN`` with ``category_id`` (1-13),
``category_name``, ``style`` (> 0: same pair_id and style in a shop and a user image = the same
garment; 0: no pair), ``bounding_box`` [x1, y1, x2, y2] (the README says lower-left/upper-right; the
released files hold the top-left and bottom-right corners in image coordinates, which is how they are
used here), ``landmarks`` [x1, y1, v1, ...] with v = 2 visible, 1 occluded, 0 not labelled (x = y = 0),
in the category's own order (``maps.DEEPFASHION2``). Other item fields (segmentation, scale, occlusion,
zoom_in, viewpoint) are not used.

keypoints: one row per garment (v 2 -> 1, 1 -> 0, 0 -> -1_-1_-1; points the FashionAI category has but
the DeepFashion2 category lacks -> -1_-1_-1), see ``targets.write_garments`` for images holding several.
retrieval: one row per garment with style > 0: ``item_id`` = ``<pair_id>_<style>``, domain shop/consumer
(from 'user'), category = ``category_name``; each garment is cropped to its box by default (an image
with two paired garments would otherwise be one picture with two item ids).
Licence: DeepFashion2 is for non-commercial research purposes only (see its README / agreement form).
"""
from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..errors import FashionlabError
from ..tasks.keypoints.metric import CATEGORY_POINTS
from .common import (
    ImagePlacer,
    Summary,
    bad,
    image_mode,
    load_json,
    load_mapping_yaml,
    parse_number,
)
from .maps import DEEPFASHION2
from .targets import Garment, ItemsOut, KeypointsOut, write_garments

_ITEM = re.compile(r"^item(\d+)$")
_VISIBILITY = {2: 1, 1: 0, 0: -1}


def _locate(source: Path, images: str | Path | None) -> tuple[list[Path], Path]:
    """(annotation JSONs in name order, image folder) for a split folder, its annos/ folder or one JSON."""
    if source.is_file():
        files, base = [source], source.parent
    elif (source / "annos").is_dir():
        files, base = sorted((source / "annos").glob("*.json")), source / "annos"
    elif source.is_dir():
        files, base = sorted(source.glob("*.json")), source
    else:
        raise FashionlabError(f"{source}: no such file or folder")
    if not files:
        raise FashionlabError(f"{source}: no DeepFashion2 annotation JSONs (expected annos/000001.json ...)")
    if images is not None:
        root = Path(images)
        if not root.is_dir():
            raise FashionlabError(f"--images {images}: no such folder")
    else:
        root = next((p for p in (base.parent / "image", base / "image") if p.is_dir()), base)
    return files, root


def load_mapping(path: str | Path | None) -> dict[int, tuple[str, int, str, dict[str, int]]]:
    """The built-in table, with ``--mapping`` overrides: YAML ``{category name or id: {FashionAI point:
    landmark number, or null to leave it unmapped}}``."""
    table = {cid: (name, n, cat, dict(points)) for cid, (name, n, cat, points) in DEEPFASHION2.items()}
    if path is None:
        return table
    path = Path(path)
    data = load_mapping_yaml(path)
    if not isinstance(data, dict):
        raise FashionlabError(f"{path}: expected a mapping {{DeepFashion2 category: {{FashionAI point: number}}}}")
    by_name = {name: cid for cid, (name, *_rest) in table.items()}
    for key, points in data.items():
        cid = key if key in table else by_name.get(str(key).replace("_", " ").strip().lower())
        if cid is None:
            raise FashionlabError(f"{path} key '{key}': not a DeepFashion2 category ({', '.join(by_name)})")
        name, n, cat, current = table[cid]
        if not isinstance(points, dict):
            raise FashionlabError(f"{path} key '{key}': expected {{FashionAI point: landmark number}}")
        for point, number in points.items():
            if point not in CATEGORY_POINTS[cat]:
                raise FashionlabError(f"{path} key '{key}' point '{point}': not a {cat} point "
                                      f"({', '.join(CATEGORY_POINTS[cat])})")
            if number is None:
                current.pop(point, None)
            elif isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= n:
                raise FashionlabError(f"{path} key '{key}' point '{point}': {number!r} is not a landmark number "
                                      f"1..{n} of {name}")
            else:
                current[point] = number
    return table


def _item(where: str, item: Any, table: dict, need: tuple[str, ...]) -> dict[str, Any]:
    """Validate the fields of one item that the conversion uses."""
    if not isinstance(item, dict):
        raise bad(where, "(item)", "expected a JSON object")
    cid = item.get("category_id")
    if isinstance(cid, bool) or not isinstance(cid, int) or cid not in table:
        raise bad(where, "category_id", f"{cid!r} is not a DeepFashion2 category id 1..13")
    name = item.get("category_name")
    if name is not None and str(name).replace("_", " ").strip().lower() != table[cid][0]:
        raise bad(where, "category_name", f"'{name}' does not match category_id {cid} ('{table[cid][0]}')")
    box = item.get("bounding_box")
    if not isinstance(box, list) or len(box) != 4:
        raise bad(where, "bounding_box", f"{box!r} is not [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (parse_number(where, "bounding_box", b) for b in box)
    if x2 < x1 or y2 < y1:
        raise bad(where, "bounding_box", f"{box} has x2 < x1 or y2 < y1")
    out: dict[str, Any] = {"category_id": cid, "box": (x1, y1, x2, y2)}
    if "landmarks" in need:
        marks, n = item.get("landmarks"), table[cid][1]
        if not isinstance(marks, list) or len(marks) != 3 * n:
            size = len(marks) if isinstance(marks, list) else type(marks).__name__
            raise bad(where, "landmarks", f"{size} values; {table[cid][0]} has {n} landmarks ({3 * n} values)")
        values = [parse_number(where, "landmarks", m) for m in marks]
        for k in range(n):
            if values[3 * k + 2] not in _VISIBILITY:
                raise bad(where, "landmarks", f"landmark {k + 1} has visibility {marks[3 * k + 2]!r}; expected "
                                              "0 (not labelled), 1 (occluded) or 2 (visible)")
        out["landmarks"] = values
    if "style" in need:
        style = item.get("style")
        if isinstance(style, bool) or not isinstance(style, int) or style < 0:
            raise bad(where, "style", f"{style!r} is not a non-negative integer")
        out["style"] = style
    return out


def _items(path: Path, data: Any) -> list[tuple[str, Any]]:
    if not isinstance(data, dict):
        raise bad(str(path), "(top level)", "expected a JSON object with source, pair_id and item1..itemN")
    keys = sorted((k for k in data if _ITEM.match(k)), key=lambda k: int(k[4:]))
    return [(k, data[k]) for k in keys]


def convert(source: Path, to: str, out: Path, summary: Summary, images: str | Path | None = None,
            copy_images: bool = False, crop: bool | None = None, crop_margin: float = 0.1,
            mapping: str | Path | None = None, limit: int | None = None) -> None:
    files, root = _locate(source, images)
    table = load_mapping(mapping)
    crop = (to == "retrieval") if crop is None else crop
    placer = ImagePlacer(out, image_mode(copy_images, crop), crop_margin)
    with ExitStack() as stack:
        sink = KeypointsOut(stack, out, summary) if to == "keypoints" else ItemsOut(stack, out, summary)
        for path in files[:limit]:
            data = load_json(path)
            items = _items(path, data)
            if not items:
                summary.drop("no item1..itemN in the annotation", path.name)
                continue
            src = root / f"{path.stem}.jpg"
            if to == "keypoints":
                _keypoint_rows(sink, placer, summary, path, items, table, src)
            else:
                _retrieval_rows(sink, placer, summary, path, data, items, table, src)
        summary.require_rows()
        if isinstance(sink, ItemsOut):
            sink.finish()
    if not crop:
        summary.notes.append("rows show whole images: a photo with several garments of one FashionAI category "
                             "keeps the largest (see dropped); --crop gives each garment its own crop")


def _keypoint_rows(sink: KeypointsOut, placer: ImagePlacer, summary: Summary, path: Path,
                   items: list[tuple[str, Any]], table: dict, src: Path) -> None:
    garments = []
    for key, raw in items:
        where = f"{path} {key}"
        item = _item(where, raw, table, ("landmarks",))
        _, _, category, points = table[item["category_id"]]
        marks = item["landmarks"]
        mapped = {name: (marks[3 * (k - 1)], marks[3 * (k - 1) + 1], _VISIBILITY[int(marks[3 * (k - 1) + 2])])
                  for name, k in points.items()}
        garments.append(Garment(f"{path.name} {key}", category, mapped, item["box"], key))
    write_garments(sink, placer, summary, src, src.name, garments)


def _retrieval_rows(sink: ItemsOut, placer: ImagePlacer, summary: Summary, path: Path, data: dict,
                    items: list[tuple[str, Any]], table: dict, src: Path) -> None:
    origin, pair = data.get("source"), data.get("pair_id")
    if origin not in ("shop", "user"):
        raise bad(str(path), "source", f"{origin!r}; expected 'shop' or 'user'")
    if isinstance(pair, bool) or not isinstance(pair, int):
        raise bad(str(path), "pair_id", f"{pair!r} is not an integer")
    for key, raw in items:
        item = _item(f"{path} {key}", raw, table, ("style",))
        record = f"{path.name} {key}"
        if item["style"] == 0:
            summary.drop("style 0 (not part of a commercial-consumer pair)", record)
            continue
        image = f"{path.stem}_{key}.jpg"
        if placer.place(src, f"images/{image}", item["box"]) is None:
            summary.drop("image missing or unreadable", f"{record} ({src})")
            continue
        domain = "shop" if origin == "shop" else "consumer"
        sink.write(image, f"{pair}_{item['style']}", domain, table[item["category_id"]][0])
        summary.row(domain, src)
