"""DeepFashion (Liu et al., CVPR 2016; mmlab.ie.cuhk.edu.hk/projects/DeepFashion.html): the Fashion
Landmark Detection benchmark (FLD; Liu et al., ECCV 2016) -> keypoints, In-shop and Consumer-to-shop
Clothes Retrieval -> retrieval. Field names as in the benchmarks' README files (mirrored in
open-mmlab/mmfashion ``docs/dataset/*.md``). Every list file: line 1 the row count, line 2 the column
names, then whitespace-separated rows; image names are relative to the folder holding ``img/``
(``Img/`` in the releases; ``--images`` overrides).

- ``Anno/list_landmarks.txt`` (FLD; also ``list_landmarks_inshop.txt`` / ``_consumer2shop.txt`` and the
  Category-Attribute benchmark's ``list_landmarks.txt``): ``image_name clothes_type variation_type
  [landmark_visibility_k landmark_location_x_k landmark_location_y_k] ...``; clothes_type 1 upper (6
  landmarks), 2 lower (4), 3 full body (8); visibility 0 visible, 1 invisible/occluded, 2
  truncated/cut-off (-> 1, 0, -1). Rows padded to 8 triplets are accepted (the padding is ignored).
- ``Eval/list_eval_partition.txt``: FLD / Category-Attribute ``image_name evaluation_status``
  (train | val | test); In-shop ``image_name item_id evaluation_status`` (train | query | gallery);
  Consumer-to-shop ``image_pair_name_1 image_pair_name_2 item_id evaluation_status`` (train | val | test;
  name 1 the consumer photo, name 2 the shop photo).
Licence: DeepFashion is for non-commercial research purposes only (its agreement).
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
    find_file,
    image_mode,
    images_root,
    parse_int,
    parse_splits,
    safe_relative,
)
from .maps import FLD, FLD_TYPES
from .targets import Garment, ItemsOut, KeypointsOut, write_garments

PARTITION = ("Eval/list_eval_partition.txt", "list_eval_partition.txt", "Anno/list_eval_partition.txt")
_FLD_VISIBILITY = {0: 1, 1: 0, 2: -1}


def read_partition(path: Path, valid: tuple[str, ...]) -> dict[str, str]:
    """``image_name evaluation_status`` rows as {image name: status} (one short string per image)."""
    listing = ListFile(path, "image_name")
    out: dict[str, str] = {}
    for line, text in listing.rows():
        tokens = text.split()
        where = f"{path} line {line}"
        if len(tokens) != 2:
            raise bad(where, "evaluation_status", f"{len(tokens)} columns; expected image_name evaluation_status")
        if tokens[1] not in valid:
            raise bad(f"{where} ({tokens[0]})", "evaluation_status",
                      f"'{tokens[1]}' is not one of {', '.join(valid)}")
        out[tokens[0]] = tokens[1]
    return out


def convert_landmarks(source: Path, to: str, out: Path, summary: Summary, images: str | Path | None = None,
                      copy_images: bool = False, split: str | None = None, upper: str = "blouse",
                      lower: str = "skirt", limit: int | None = None) -> None:
    """FLD landmarks -> keypoints (``maps.FLD``): upper-body rows become ``upper`` (blouse | outwear),
    lower-body rows ``lower`` (skirt | trousers; FLD does not tell them apart), full-body rows dress."""
    if upper not in ("blouse", "outwear") or lower not in ("skirt", "trousers"):
        raise FashionlabError(f"--upper {upper} --lower {lower}: expected --upper blouse|outwear, "
                              "--lower skirt|trousers")
    marks = find_file(source, ("Anno/list_landmarks.txt", "list_landmarks.txt"), "list_landmarks.txt")
    root = images_root(source, images, ("Img",))
    wanted = parse_splits(split, ("train", "val", "test"), "deepfashion-landmark")
    status = read_partition(find_file(source, PARTITION, "list_eval_partition.txt (for --split)", False),
                            ("train", "val", "test")) if wanted else {}
    category = {1: upper, 2: lower, 3: "dress"}
    placer = ImagePlacer(out, image_mode(copy_images, False))
    listing, seen = ListFile(marks, "image_name"), set()
    with ExitStack() as stack:
        sink = KeypointsOut(stack, out, summary)
        for line, text in listing.rows():
            if limit is not None and line - 2 > limit:
                break
            tokens = text.split()
            where = f"{marks} line {line}"
            if len(tokens) < 3:
                raise bad(where, "clothes_type", "missing (expected image_name clothes_type variation_type ...)")
            name = tokens[0]
            where = f"{where} ({name})"
            ctype = parse_int(where, "clothes_type", tokens[1])
            if ctype not in FLD_TYPES:
                raise bad(where, "clothes_type", f"{ctype} is not 1 (upper), 2 (lower) or 3 (full body)")
            parse_int(where, "variation_type", tokens[2])
            names = FLD_TYPES[ctype][0]
            rest = tokens[3:]
            if len(rest) % 3 or len(rest) < 3 * len(names):
                raise bad(where, "landmarks", f"{len(rest)} values after variation_type; clothes_type {ctype} has "
                                              f"{len(names)} landmarks (visibility, x, y each)")
            if wanted is not None:
                if name not in status:
                    summary.drop("not in list_eval_partition.txt", name)
                    continue
                if status[name] not in wanted:
                    continue
            if name in seen:
                summary.drop("image listed twice (first row kept)", f"line {line}")
                continue
            seen.add(name)
            cat = category[ctype]
            points = {}
            for k, landmark in enumerate(names):
                vis = parse_int(where, f"landmark_visibility_{k + 1}", rest[3 * k])
                if vis not in _FLD_VISIBILITY:
                    raise bad(where, f"landmark_visibility_{k + 1}", f"{vis} is not 0 (visible), 1 (occluded) or "
                                                                    "2 (truncated)")
                x = parse_int(where, f"landmark_location_x_{k + 1}", rest[3 * k + 1])
                y = parse_int(where, f"landmark_location_y_{k + 1}", rest[3 * k + 2])
                if landmark in FLD[cat]:
                    points[FLD[cat][landmark]] = (float(x), float(y), _FLD_VISIBILITY[vis])
            rel = safe_relative(where, "image_name", name)
            write_garments(sink, placer, summary, root / rel, rel, [Garment(name, cat, points, (0, 0, 0, 0), "")])
        summary.require_rows()
    if limit is None:
        listing.check_count(summary)
    summary.notes.append("FLD has no armpits: evaluate keypoints excludes its blouse/outwear/dress rows from NE "
                         "(excluded_images); training uses their points, but validation needs skirt/trousers rows "
                         "or other data; FLD sleeve points (cuff centre) are not mapped")


def _category(rel: str) -> str:
    """``img/WOMEN/Dresses/id_00000002/02_1_front.jpg`` -> ``WOMEN/Dresses``."""
    parts = rel.split("/")
    return "/".join(parts[1:-2]) if len(parts) >= 4 else ""


def _add(sink: ItemsOut, placer: ImagePlacer, summary: Summary, root: Path, where: str, name: str, item: str,
         domain: str) -> None:
    rel = safe_relative(where, "image_name", name)
    if placer.place(root / rel, f"images/{rel}") is None:
        summary.drop("image missing or unreadable", f"{where} ({root / rel})")
        return
    sink.write(rel, item, domain, _category(rel))
    summary.row(domain, root / rel)


def convert_inshop(source: Path, to: str, out: Path, summary: Summary, images: str | Path | None = None,
                   copy_images: bool = False, split: str | None = None, limit: int | None = None) -> None:
    """In-shop partition -> items: query -> consumer, gallery -> shop; a train item's first image is its
    shop image and the others its consumer images (the split has no query/gallery roles). ``--split``:
    train, query, gallery, test (= query + gallery) or all."""
    path = find_file(source, PARTITION, "list_eval_partition.txt")
    root = images_root(source, images, ("Img",))
    wanted = parse_splits(split, ("train", "query", "gallery", "test"), "deepfashion-inshop")
    if wanted and "test" in wanted:
        wanted = (wanted - {"test"}) | {"query", "gallery"}
    placer = ImagePlacer(out, image_mode(copy_images, False))
    listing, seen, train_items = ListFile(path, "image_name"), set(), set()
    with ExitStack() as stack:
        sink = ItemsOut(stack, out, summary)
        for line, text in listing.rows():
            if limit is not None and line - 2 > limit:
                break
            tokens = text.split()
            where = f"{path} line {line}"
            if len(tokens) != 3:
                raise bad(where, "image_name item_id evaluation_status", f"{len(tokens)} columns; expected 3")
            name, item, status = tokens
            if status not in ("train", "query", "gallery"):
                raise bad(f"{where} ({name})", "evaluation_status", f"'{status}' is not train, query or gallery")
            if wanted is not None and status not in wanted:
                continue
            if name in seen:
                summary.drop("image listed twice (first row kept)", f"line {line}")
                continue
            seen.add(name)
            if status == "train":
                domain = "consumer" if item in train_items else "shop"
                train_items.add(item)
            else:
                domain = "consumer" if status == "query" else "shop"
            _add(sink, placer, summary, root, where, name, item, domain)
        summary.require_rows()
        sink.finish()
    if limit is None:
        listing.check_count(summary)
    if train_items:
        summary.notes.append("train rows: the first image of each item is its shop image, the others consumer "
                             "images (In-shop has no roles for training images)")


def convert_c2s(source: Path, to: str, out: Path, summary: Summary, images: str | Path | None = None,
                copy_images: bool = False, split: str | None = None, limit: int | None = None) -> None:
    """Consumer-to-shop pairs -> items (each image once: name 1 consumer, name 2 shop). ``--split``: train, val,
    test or a comma list; the official gallery is every shop image of val + test (``--split val,test``)."""
    path = find_file(source, PARTITION, "list_eval_partition.txt")
    root = images_root(source, images, ("Img",))
    wanted = parse_splits(split, ("train", "val", "test"), "deepfashion-c2s")
    placer = ImagePlacer(out, image_mode(copy_images, False))
    listing, seen = ListFile(path, "image_pair_name_1"), {}
    with ExitStack() as stack:
        sink = ItemsOut(stack, out, summary)
        for line, text in listing.rows():
            if limit is not None and line - 2 > limit:
                break
            tokens = text.split()
            where = f"{path} line {line}"
            if len(tokens) != 4:
                raise bad(where, "image_pair_name_1 image_pair_name_2 item_id evaluation_status",
                          f"{len(tokens)} columns; expected 4")
            consumer, shop, item, status = tokens
            if status not in ("train", "val", "test"):
                raise bad(f"{where} ({consumer})", "evaluation_status", f"'{status}' is not train, val or test")
            if wanted is not None and status not in wanted:
                continue
            for name, domain in ((consumer, "consumer"), (shop, "shop")):
                before = seen.get(name)
                if before == (domain, item):
                    continue
                if before is not None:
                    summary.drop("image listed with another role or item (first kept)", f"line {line} {name}")
                    continue
                seen[name] = (domain, item)
                _add(sink, placer, summary, root, where, name, item, domain)
        summary.require_rows()
        sink.finish()
    if limit is None:
        listing.check_count(summary)
