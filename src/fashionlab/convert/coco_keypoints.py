"""Any COCO keypoints JSON (cocodataset.org/#format-data, "Keypoint Detection") -> keypoints, through a
mapping file.

COCO fields used: ``images`` [{id, file_name}], ``categories`` [{id, name, keypoints [names]}],
``annotations`` [{id, image_id, category_id, keypoints [x1, y1, v1, ...], bbox [x, y, w, h], iscrowd}]
with v = 0 not labelled (x = y = 0), 1 labelled but not visible, 2 labelled and visible (-> -1, 0, 1).

The mapping (``--mapping FILE.yaml``) names the FashionAI category and, per source keypoint name, the
FashionAI point it denotes; ``categories:`` overrides it per COCO category (name or id)::

    category: blouse                 # FashionAI category of every annotation ...
    points:                          # ... COCO keypoint name -> FashionAI point name
      left_shoulder: shoulder_left
      right_shoulder: shoulder_right
    categories:                      # optional, per COCO category
      skirt: {category: skirt, points: {waist_l: waistband_left, waist_r: waistband_right}}

Annotations of COCO categories the mapping does not cover, and crowd annotations, are dropped (counted).
Several annotations of one FashionAI category in one image: see ``targets.write_garments`` (``--crop``).
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..errors import FashionlabError
from ..tasks.keypoints.metric import CATEGORIES, CATEGORY_POINTS
from .common import (
    ImagePlacer,
    Summary,
    bad,
    image_mode,
    load_json,
    load_mapping_yaml,
    parse_number,
    safe_relative,
)
from .targets import Garment, KeypointsOut, write_garments

_VISIBILITY = {2: 1, 1: 0, 0: -1}


def _rule(path: Path, where: str, spec: Any, names: list[str], coco_name: str) -> tuple[str, dict[int, str]]:
    """(FashionAI category, {index in the COCO keypoints list: FashionAI point}) from one mapping entry."""
    if not isinstance(spec, dict):
        raise FashionlabError(f"{path} {where}: expected {{category: ..., points: {{...}}}}")
    category, points = spec.get("category"), spec.get("points")
    if category not in CATEGORIES:
        raise FashionlabError(f"{path} {where} category: {category!r} is not one of {', '.join(CATEGORIES)}")
    if not isinstance(points, dict) or not points:
        raise FashionlabError(f"{path} {where} points: expected {{source keypoint name: FashionAI point name}}")
    index: dict[int, str] = {}
    for src, dst in points.items():
        if str(src) not in names:
            raise FashionlabError(f"{path} {where} points '{src}': not a keypoint of COCO category '{coco_name}' "
                                  f"({', '.join(names[:12])}{' ...' if len(names) > 12 else ''})")
        if dst not in CATEGORY_POINTS[category]:
            raise FashionlabError(f"{path} {where} points '{src}': '{dst}' is not a {category} point "
                                  f"({', '.join(CATEGORY_POINTS[category])})")
        if dst in index.values():
            raise FashionlabError(f"{path} {where} points '{src}': '{dst}' is already mapped from another keypoint")
        index[names.index(str(src))] = dst
    return category, index


def load_mapping(path: str | Path | None, categories: dict[int, dict]) -> dict[int, tuple[str, dict[int, str]]]:
    """{COCO category id: (FashionAI category, {keypoint index: FashionAI point})} for the covered categories."""
    if path is None:
        raise FashionlabError("--from coco-keypoints needs --mapping FILE.yaml (source keypoint name -> FashionAI "
                              "point name; see README 'Bring your own data')")
    path = Path(path)
    data = load_mapping_yaml(path)
    if not isinstance(data, dict) or not ({"points", "categories"} & set(data)):
        raise FashionlabError(f"{path}: expected 'category' and 'points' (and/or 'categories:' per COCO category)")
    per = data.get("categories") or {}
    if not isinstance(per, dict):
        raise FashionlabError(f"{path} categories: expected {{COCO category name or id: {{category, points}}}}")
    by_name = {str(c["name"]): cid for cid, c in categories.items()}
    for key in per:
        if key not in categories and str(key) not in by_name:
            raise FashionlabError(f"{path} categories '{key}': no such COCO category ({', '.join(by_name)})")
    rules, misfits = {}, []
    for cid, cat in categories.items():
        names = [str(n) for n in cat["keypoints"]]
        spec = per.get(cid, per.get(str(cat["name"])))
        if spec is not None:
            rules[cid] = _rule(path, f"categories '{cat['name']}'", spec, names, str(cat["name"]))
        elif "points" in data:  # the top-level rule covers the categories that have all its keypoint names
            try:
                rules[cid] = _rule(path, "(top level)", {"category": data.get("category"), "points": data["points"]},
                                   names, str(cat["name"]))
            except FashionlabError as err:
                misfits.append(err)
    if not rules:
        raise misfits[0] if misfits else FashionlabError(f"{path}: covers none of the COCO categories")
    return rules


def _categories(path: Path, data: dict) -> dict[int, dict]:
    out = {}
    for i, cat in enumerate(data.get("categories") or []):
        where = f"{path} categories[{i}]"
        if not isinstance(cat, dict) or isinstance(cat.get("id"), bool) or not isinstance(cat.get("id"), int):
            raise bad(where, "id", "missing or not an integer")
        if not isinstance(cat.get("keypoints"), list):
            raise bad(f"{path} category id {cat['id']}", "keypoints", "missing (not a COCO keypoints category)")
        out[cat["id"]] = {"name": cat.get("name", str(cat["id"])), "keypoints": cat["keypoints"]}
    if not out:
        raise bad(str(path), "categories", "missing or empty")
    return out


def convert(source: Path, to: str, out: Path, summary: Summary, mapping: str | Path | None = None,
            images: str | Path | None = None, copy_images: bool = False, crop: bool = False,
            crop_margin: float = 0.1, limit: int | None = None) -> None:
    if not source.is_file():
        raise FashionlabError(f"{source}: expected a COCO keypoints JSON file")
    data = load_json(source)
    if not isinstance(data, dict):
        raise bad(str(source), "(top level)", "expected a JSON object")
    categories = _categories(source, data)
    rules = load_mapping(mapping, categories)
    root = Path(images) if images is not None else source.parent
    if not root.is_dir():
        raise FashionlabError(f"--images {images}: no such folder")
    files: dict[int, str] = {}
    for i, img in enumerate(data.get("images") or []):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
            raise bad(f"{source} images[{i}]", "id/file_name", "expected an integer id and a file_name")
        files[img["id"]] = safe_relative(f"{source} image id {img['id']}", "file_name", img["file_name"])
    garments: dict[int, list[Garment]] = {}
    for i, ann in enumerate(data.get("annotations") or []):
        garment = _garment(source, i, ann, files, categories, rules, summary)
        if garment is not None:
            garments.setdefault(ann["image_id"], []).append(garment)
    placer = ImagePlacer(out, image_mode(copy_images, crop), crop_margin)
    with ExitStack() as stack:
        sink = KeypointsOut(stack, out, summary)
        for image_id in list(garments)[:limit]:
            write_garments(sink, placer, summary, root / files[image_id], files[image_id], garments[image_id])
        summary.require_rows()


def _garment(path: Path, i: int, ann: Any, files: dict[int, str], categories: dict[int, dict],
             rules: dict[int, tuple[str, dict[int, str]]], summary: Summary) -> Garment | None:
    aid = ann.get("id", f"#{i}") if isinstance(ann, dict) else f"#{i}"
    where = f"{path} annotation id {aid}"
    if not isinstance(ann, dict):
        raise bad(where, "(entry)", "expected a JSON object")
    if ann.get("image_id") not in files:
        raise bad(where, "image_id", f"{ann.get('image_id')!r} is not an id in images")
    cid = ann.get("category_id")
    if cid not in categories:
        raise bad(where, "category_id", f"{cid!r} is not an id in categories")
    if ann.get("iscrowd"):
        summary.drop("iscrowd annotation", f"annotation id {aid}")
        return None
    if cid not in rules:
        summary.drop("COCO category not in the mapping", f"annotation id {aid} ({categories[cid]['name']})")
        return None
    marks, n = ann.get("keypoints"), len(categories[cid]["keypoints"])
    if not isinstance(marks, list) or len(marks) != 3 * n:
        size = len(marks) if isinstance(marks, list) else type(marks).__name__
        raise bad(where, "keypoints", f"{size} values; category '{categories[cid]['name']}' has {n} keypoints "
                                      f"({3 * n} values)")
    values = [parse_number(where, "keypoints", m) for m in marks]
    category, index = rules[cid]
    points = {}
    for k, name in index.items():
        v = values[3 * k + 2]
        if v not in _VISIBILITY:
            raise bad(where, "keypoints", f"keypoint {k + 1} has visibility {marks[3 * k + 2]!r}; expected 0, 1 or 2")
        points[name] = (values[3 * k], values[3 * k + 1], _VISIBILITY[int(v)])
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4:
        x, y, w, h = (parse_number(where, "bbox", b) for b in bbox)
        box = (x, y, x + w, y + h)
    else:
        labelled = [(values[3 * k], values[3 * k + 1]) for k in range(n) if values[3 * k + 2] > 0] or [(0.0, 0.0)]
        xs, ys = [p[0] for p in labelled], [p[1] for p in labelled]
        box = (min(xs), min(ys), max(xs), max(ys))
    return Garment(f"annotation id {aid}", category, points, box, f"ann{aid}")
