"""DeepFashion Category and Attribute Prediction benchmark (Liu et al., CVPR 2016) -> styles, attributes.

Files (benchmark README; open-mmlab/mmfashion ``docs/dataset/ATTR_DATASET.md``), found under ``Anno/``
(or ``Anno_coarse/``, or the folder given) with images under ``Img/``:
- ``list_attr_cloth.txt``: ``attribute_name attribute_type`` (names may contain spaces; type 1 texture,
  2 fabric, 3 shape, 4 part, 5 style);
- ``list_attr_img.txt``: ``image_name attribute_labels`` (one value per attribute, in list_attr_cloth
  order: 1 positive, -1 negative, 0 unknown; the later ``Anno_fine`` release writes 0 for negative:
  pass ``--zero-means negative`` there);
- ``Eval/list_eval_partition.txt`` (``image_name evaluation_status``: train | val | test) for ``--split``.

styles: ``labels.csv`` with one 0/1 column per attribute, named ``<type>=<name>`` (1 only for 1).
attributes: one task per attribute type (``texture``, ``fabric``, ``shape``, ``part``, ``style``), the
label one letter per attribute of that type (1 -> y, -1 -> n, 0 -> m); an image gets a row for a task
only when one of its attributes is positive (FashionAI labels need a 'y'). These types are multi-label
(several y's in one label): the attributes task trains a softmax over them and counts a hit when the top
value is any 'y'; for independent per-attribute decisions convert to styles.
Licence: DeepFashion is for non-commercial research purposes only.
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from ..errors import FashionlabError
from .common import (
    ImagePlacer,
    ListFile,
    Summary,
    bad,
    clean_name,
    find_file,
    image_mode,
    images_root,
    parse_int,
    parse_splits,
    safe_relative,
)
from .deepfashion import PARTITION, read_partition
from .targets import AttributesOut, StylesOut

TYPES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style"}
ANNO = ("Anno/{}", "Anno_coarse/{}", "{}")


def _names(path: Path) -> list[tuple[str, str]]:
    """(attribute name, type name) in file order."""
    out = []
    for line, text in ListFile(path, "attribute_name").rows():
        parts = text.rsplit(None, 1)
        where = f"{path} line {line}"
        if len(parts) != 2:
            raise bad(where, "attribute_type", "missing (expected attribute_name attribute_type)")
        kind = parse_int(f"{where} ({parts[0]})", "attribute_type", parts[1])
        out.append((clean_name(parts[0]), TYPES.get(kind, f"type{kind}")))
    if not out:
        raise FashionlabError(f"{path}: no attributes")
    return out


def _selected(attrs: list[tuple[str, str]], groups: str | None) -> list[int]:
    present = list(dict.fromkeys(kind for _, kind in attrs))
    if groups is None:
        return list(range(len(attrs)))
    wanted = {g.strip() for g in groups.split(",") if g.strip()}
    unknown = sorted(wanted - set(present))
    if unknown or not wanted:
        raise FashionlabError(f"--groups {groups}: attribute types here are {', '.join(present)}")
    return [j for j, (_, kind) in enumerate(attrs) if kind in wanted]


def convert(source: Path, to: str, out: Path, summary: Summary, images: str | Path | None = None,
            copy_images: bool = False, split: str | None = None, groups: str | None = None,
            zero_means: str = "unknown", limit: int | None = None) -> None:
    if zero_means not in ("unknown", "negative"):
        raise FashionlabError(f"--zero-means {zero_means}: expected unknown or negative")
    cloth = find_file(source, tuple(a.format("list_attr_cloth.txt") for a in ANNO), "list_attr_cloth.txt", False)
    labels = find_file(source, tuple(a.format("list_attr_img.txt") for a in ANNO), "list_attr_img.txt", False)
    root = images_root(source, images, ("Img",))
    wanted = parse_splits(split, ("train", "val", "test"), "deepfashion-attributes")
    status = read_partition(find_file(source, PARTITION, "list_eval_partition.txt (for --split)", False),
                            ("train", "val", "test")) if wanted else {}
    attrs = _names(cloth)
    keep = _selected(attrs, groups)
    letter = {"1": "y", "-1": "n", "0": "m" if zero_means == "unknown" else "n"}
    placer = ImagePlacer(out, image_mode(copy_images, False))
    listing = ListFile(labels, "image_name")
    with ExitStack() as stack:
        if to == "styles":
            sink = StylesOut(stack, out, _unique([f"{attrs[j][1]}={attrs[j][0]}" for j in keep]), summary)
        else:
            tasks: dict[str, list[int]] = {}
            for j in keep:
                tasks.setdefault(attrs[j][1], []).append(j)
            sink = AttributesOut(stack, out, {t: [attrs[j][0] for j in js] for t, js in tasks.items()}, summary)
        for line, text in listing.rows():
            if limit is not None and line - 2 > limit:
                break
            tokens = text.split()
            where = f"{labels} line {line} ({tokens[0]})"
            if len(tokens) - 1 != len(attrs):
                raise bad(where, "attribute_labels", f"{len(tokens) - 1} values; list_attr_cloth.txt has "
                                                     f"{len(attrs)} attributes")
            bad_value = next((j for j, v in enumerate(tokens[1:]) if v not in letter), None)
            if bad_value is not None:
                raise bad(where, f"attribute_labels ({attrs[bad_value][0]})",
                          f"'{tokens[1 + bad_value]}' is not 1, -1 or 0")
            name, values = tokens[0], tokens[1:]
            if wanted is not None and status.get(name, "") not in wanted:
                if name not in status:
                    summary.drop("not in list_eval_partition.txt", name)
                continue
            rel = safe_relative(where, "image_name", name)
            if to == "styles":
                if placer.place(root / rel, f"images/{rel}") is None:
                    summary.drop("image missing or unreadable", f"{where} ({root / rel})")
                    continue
                sink.write(rel, {col for col, j in enumerate(keep) if values[j] == "1"})
                summary.row("images", root / rel)
                continue
            rows = [(task, "".join(letter[values[j]] for j in js)) for task, js in tasks.items()]
            rows = [(task, s) for task, s in rows if "y" in s]
            summary.add("image x type pairs without a positive attribute (no row)", len(tasks) - len(rows))
            if not rows:
                continue
            if placer.place(root / rel, f"Images/{rel}") is None:
                summary.drop("image missing or unreadable", f"{where} ({root / rel})")
                continue
            for task, letters in rows:
                sink.write(f"Images/{rel}", task, letters)
                summary.row(task, root / rel)
        summary.require_rows()
        if isinstance(sink, AttributesOut):
            sink.finish()
    if limit is None:
        listing.check_count(summary)


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out
