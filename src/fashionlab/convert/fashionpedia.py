"""Fashionpedia (Jia et al., ECCV 2020; fashionpedia.github.io, github.com/cvdfoundation/fashionpedia,
KMnP/fashionpedia-api ``data/sample.json``) -> styles, attributes.

``instances_attributes_{train,val}2020.json`` is COCO JSON with extra fields: ``images`` [{id, file_name,
width, height}], ``annotations`` [{id, image_id, category_id, attribute_ids [int], segmentation, bbox,
area, iscrowd}], ``categories`` [{id, name, supercategory, ...}] (27 apparel categories and 19 parts)
and ``attributes`` [{id, name, supercategory, level, taxonomy_id}] (294 fine-grained attributes, grouped
by ``supercategory``: length, silhouette, textile pattern, nickname, opening type, ...). Attributes
belong to annotations (garments and parts), not to images.

styles: one 0/1 column per attribute (``<supercategory>=<name>``), 1 when any annotation of the image
has it; every listed image gets a row (an image without attributes is all zeros).
attributes: one task per (category, attribute supercategory) seen in the data, e.g. ``dress_length``,
``sleeve_length``, ``pants_silhouette``; the label one letter per attribute of that supercategory (id
order): y for the attributes the image's annotations of that category carry (several annotations of one
category, e.g. two sleeves, are merged), n for the others (Fashionpedia has no 'unknown').
``--groups`` keeps only the named supercategories. Images are looked up under ``--images`` (default:
the JSON's folder), ``file_name`` relative to it.
Licence: annotations CC BY 4.0; the images keep their own licences (check them before any use).
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..errors import FashionlabError
from .common import (
    ImagePlacer,
    Summary,
    bad,
    clean_name,
    image_mode,
    load_json,
    safe_relative,
    slug,
)
from .targets import AttributesOut, StylesOut


def _table(path: Path, data: dict, key: str, fields: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    rows = data.get(key)
    if not isinstance(rows, list):
        raise bad(str(path), key, "missing or not a list (expected a Fashionpedia instances_attributes JSON)")
    out: dict[int, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        where = f"{path} {key}[{i}]"
        if not isinstance(row, dict):
            raise bad(where, "(entry)", "expected a JSON object")
        rid = row.get("id")
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise bad(where, "id", f"{rid!r} is not an integer")
        for name in fields:
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise bad(f"{path} {key[:-1]} id {rid}", name, f"{row.get(name)!r} is not a non-empty string")
        out[rid] = row
    return out


def load(path: Path) -> tuple[dict, dict, dict, dict[int, list[tuple[int, list[int]]]]]:
    """(images, categories, attributes, {image id: [(category id, attribute ids)]}), validated."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise bad(str(path), "(top level)", "expected a JSON object")
    images = _table(path, data, "images", ("file_name",))
    categories = _table(path, data, "categories", ("name",))
    attributes = _table(path, data, "attributes", ("name", "supercategory"))
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise bad(str(path), "annotations", "missing or not a list")
    by_image: dict[int, list[tuple[int, list[int]]]] = {}
    for i, ann in enumerate(anns):
        aid = ann.get("id", f"#{i}") if isinstance(ann, dict) else f"#{i}"
        where = f"{path} annotation id {aid}"
        if not isinstance(ann, dict):
            raise bad(where, "(entry)", "expected a JSON object")
        if ann.get("image_id") not in images:
            raise bad(where, "image_id", f"{ann.get('image_id')!r} is not an id in images")
        if ann.get("category_id") not in categories:
            raise bad(where, "category_id", f"{ann.get('category_id')!r} is not an id in categories")
        ids = ann.get("attribute_ids", [])
        if not isinstance(ids, list):
            raise bad(where, "attribute_ids", f"{ids!r} is not a list")
        unknown = next((a for a in ids if isinstance(a, bool) or a not in attributes), None)
        if unknown is not None:
            raise bad(where, "attribute_ids", f"{unknown!r} is not an id in attributes")
        by_image.setdefault(ann["image_id"], []).append((ann["category_id"], ids))
    return images, categories, attributes, by_image


def convert(source: Path, to: str, out: Path, summary: Summary, images: str | Path | None = None,
            copy_images: bool = False, groups: str | None = None, limit: int | None = None) -> None:
    if not source.is_file():
        raise FashionlabError(f"{source}: expected the Fashionpedia JSON (instances_attributes_train2020.json)")
    root = Path(images) if images is not None else source.parent
    if not root.is_dir():
        raise FashionlabError(f"--images {images}: no such folder")
    table, categories, attributes, by_image = load(source)
    supers = list(dict.fromkeys(a["supercategory"] for a in attributes.values()))
    wanted = set(supers) if groups is None else {g.strip() for g in groups.split(",") if g.strip()}
    if not wanted or wanted - set(supers):
        raise FashionlabError(f"--groups {groups}: attribute supercategories here are {', '.join(supers)}")
    kept = sorted(a for a, row in attributes.items() if row["supercategory"] in wanted)
    kept_ids = set(kept)
    placer = ImagePlacer(out, image_mode(copy_images, False))
    with ExitStack() as stack:
        if to == "styles":
            labels = [f"{clean_name(attributes[a]['supercategory'])}={clean_name(attributes[a]['name'])}"
                      for a in kept]
            if len(set(labels)) != len(labels):
                labels = [f"{label} #{a}" for label, a in zip(labels, kept)]
            column = {a: j for j, a in enumerate(kept)}
            sink: StylesOut | AttributesOut = StylesOut(stack, out, labels, summary)
        else:
            members = {s: [a for a in kept if attributes[a]["supercategory"] == s] for s in wanted}
            tasks: dict[str, list[str]] = {}
            sink = AttributesOut(stack, out, tasks, summary)
        for image_id, row in list(table.items())[:limit]:
            where = f"{source} image id {image_id}"
            rel = safe_relative(where, "file_name", row["file_name"])
            anns = by_image.get(image_id, [])
            if to == "styles":
                if placer.place(root / rel, f"images/{rel}") is None:
                    summary.drop("image missing or unreadable", f"{where} ({root / rel})")
                    continue
                sink.write(rel, {column[a] for _, ids in anns for a in ids if a in column})
                summary.row("images", root / rel)
                continue
            present: dict[tuple[int, str], set[int]] = {}
            for category, ids in anns:
                for a in ids:
                    if a in kept_ids:
                        present.setdefault((category, attributes[a]["supercategory"]), set()).add(a)
            if not present:
                summary.drop("no attribute on any annotation (no row)", where)
                continue
            if placer.place(root / rel, f"Images/{rel}") is None:
                summary.drop("image missing or unreadable", f"{where} ({root / rel})")
                continue
            for (category, sup), ids in sorted(present.items(), key=lambda kv: (kv[0][0], kv[0][1])):
                task = f"{slug(categories[category]['name'])}_{slug(sup)}"
                tasks.setdefault(task, [clean_name(attributes[a]["name"]) for a in members[sup]])
                sink.write(f"Images/{rel}", task, "".join("y" if a in ids else "n" for a in members[sup]))
                summary.row(task, root / rel)
        summary.require_rows()
        if isinstance(sink, AttributesOut):
            sink.finish()

