"""Street-to-shop data: the items CSV, image sources for gallery/query, the split by item, PK batches.

Items CSV: header ``image,item_id,domain`` plus an optional ``category`` (any column order; extra
columns are ignored). ``image`` is relative to the images root — ``root`` when given, else
``<csv folder>/images`` when that folder exists, else the CSV's folder — and is the id written in
RANKS/MATCHES files. ``domain`` is ``shop`` (gallery) or ``consumer`` (query).
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Sampler

from ...data.images import IMAGE_EXTENSIONS, check_images, list_images
from ...errors import FashionlabError, at

log = logging.getLogger(__name__)
DOMAINS = ("shop", "consumer")


@dataclass
class ItemTable:
    """Rows of an items CSV (or images of a folder): id, path, item, domain and category per image."""

    ids: list[str]
    paths: list[Path]
    items: list[str] = field(default_factory=list)  # "" when unknown
    domains: list[str] = field(default_factory=list)  # "shop" | "consumer" | ""
    categories: list[str] = field(default_factory=list)  # "" when the source has none

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: list[int] | np.ndarray) -> "ItemTable":
        idx = [int(i) for i in index]
        return ItemTable([self.ids[i] for i in idx], [self.paths[i] for i in idx], [self.items[i] for i in idx],
                         [self.domains[i] for i in idx], [self.categories[i] for i in idx])

    def where(self, domain: str) -> "ItemTable":
        return self.subset([i for i, d in enumerate(self.domains) if d == domain])

    @property
    def has_categories(self) -> bool:
        return any(self.categories)


def images_root(csv_path: Path, root: str | Path | None = None) -> Path:
    if root:
        if not Path(root).is_dir():
            raise FashionlabError(f"root '{root}': no such folder")
        return Path(root)
    return csv_path.parent / "images" if (csv_path.parent / "images").is_dir() else csv_path.parent


def read_items(path: Path, root: str | Path | None = None, need: tuple[str, ...] = ("item_id", "domain"),
               skip_bad: bool = False) -> ItemTable:
    """Read an items CSV, naming the file and line of any problem; every image must exist."""
    base = images_root(path, root)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [c.strip() for c in next(reader, [])]
            missing = [c for c in ("image", *need) if c not in header]
            if missing:
                raise FashionlabError(f"{at(path, 1)}: header '{','.join(header)}' lacks {', '.join(missing)}; "
                                      "expected image,item_id,domain[,category]")
            col = {name: header.index(name) for name in ("image", "item_id", "domain", "category") if name in header}
            table = ItemTable([], [])
            missing_rows: list[str] = []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise FashionlabError(f"{at(path, line)}: {len(row)} columns; expected {len(header)}")
                cell = {name: row[i].strip() for name, i in col.items()}
                if not cell["image"]:
                    raise FashionlabError(f"{at(path, line)}: empty image")
                domain = cell.get("domain", "")
                if "domain" in col and domain not in DOMAINS:
                    raise FashionlabError(f"{at(path, line)}: domain '{domain}'; expected shop or consumer")
                if "item_id" in need and not cell.get("item_id"):
                    raise FashionlabError(f"{at(path, line)}: empty item_id")
                image = base / cell["image"]
                if not image.is_file():
                    message = f"{at(path, line)}: image '{cell['image']}' not found under {base}"
                    if not skip_bad:
                        raise FashionlabError(f"{message} (use --skip-bad to skip missing images)")
                    missing_rows.append(message)
                    continue
                table.ids.append(cell["image"])
                table.paths.append(image)
                table.items.append(cell.get("item_id", ""))
                table.domains.append(domain)
                table.categories.append(cell.get("category", ""))
    except UnicodeDecodeError as exc:
        raise FashionlabError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise FashionlabError(f"{path}: cannot parse CSV ({exc})") from None
    if missing_rows:
        log.warning("skipped %d row(s) whose image is missing, first: %s", len(missing_rows), missing_rows[0])
    if not len(table):
        raise FashionlabError(f"{path}: no data rows after the header")
    return table


def readable(table: ItemTable, skip_bad: bool) -> ItemTable:
    """The rows whose image decodes: a bad image is a one-line error, or with ``skip_bad`` left out."""
    good = check_images(table.paths, skip_bad)
    if not good:
        raise FashionlabError(f"no readable image among {len(table)} ({table.paths[0]} first)")
    return table if len(good) == len(table) else table.subset(good)


def read_images(source: Path, role: str, root: str | Path | None = None, skip_bad: bool = False) -> ItemTable:
    """Gallery (``role='gallery'``: shop rows) or queries (``'query'``: consumer rows) from a CSV, a folder
    (id = path relative to it) or one image file (id = its name). A CSV without a domain column gives all rows."""
    source = Path(source)
    if source.is_dir():
        paths = list_images(source)
        if not paths:
            raise FashionlabError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        ids = [p.relative_to(source).as_posix() for p in paths]
        return ItemTable(ids, paths, [""] * len(ids), [""] * len(ids), [""] * len(ids))
    if not source.is_file():
        raise FashionlabError(f"{source}: no such file or folder")
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        return ItemTable([source.name], [source], [""], [""], [""])
    if source.suffix.lower() != ".csv":
        raise FashionlabError(f"{source}: expected an image, a folder of images or an items CSV")
    table = read_items(source, root, need=(), skip_bad=skip_bad)
    if any(table.domains):
        table = table.where("shop" if role == "gallery" else "consumer")
        if not len(table):
            raise FashionlabError(f"{source}: no {'shop' if role == 'gallery' else 'consumer'} rows for the {role}")
    return table


def split_by_item(table: ItemTable, val_fraction: float, seed: int) -> tuple[ItemTable, ItemTable]:
    """Hold out whole items (deterministic in ``seed``); only items with both shop and consumer images
    can be validation items, since their consumer images query their shop images."""
    items = sorted(set(table.items))
    domains: dict[str, set[str]] = {}
    for item, domain in zip(table.items, table.domains):
        domains.setdefault(item, set()).add(domain)
    eligible = [i for i in items if domains[i] >= set(DOMAINS)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(eligible))
    n_val = min(len(eligible), int(round(len(items) * val_fraction)))
    if val_fraction > 0 and n_val == 0 and len(eligible) >= 2:
        n_val = 1
    val_items = {eligible[i] for i in order[:n_val]}
    train = [i for i, item in enumerate(table.items) if item not in val_items]
    val = [i for i, item in enumerate(table.items) if item in val_items]
    return table.subset(train), table.subset(val)


def val_pairs(val: ItemTable) -> tuple[list[int], list[int], dict[str, set[str]]]:
    """Query rows (consumer), gallery rows (shop) and the matches {query id: {shop ids of its item}}."""
    gallery = [i for i, d in enumerate(val.domains) if d == "shop"]
    by_item: dict[str, set[str]] = {}
    for i in gallery:
        by_item.setdefault(val.items[i], set()).add(val.ids[i])
    queries = [i for i, d in enumerate(val.domains) if d == "consumer" and val.items[i] in by_item]
    return queries, gallery, {val.ids[i]: by_item[val.items[i]] for i in queries}


def with_distractors(val: ItemTable, train: ItemTable) -> ItemTable:
    """The validation set searched as a shop is: the held-out items' photos plus the training items' shop
    photos (distractors). Only held-out consumer photos are queries; the gallery is every shop photo."""
    shop = [i for i, d in enumerate(train.domains) if d == "shop"]
    extra = train.subset(shop)
    return ItemTable(val.ids + extra.ids, val.paths + extra.paths, val.items + extra.items,
                     val.domains + extra.domains, val.categories + extra.categories)


class PKSampler(Sampler[list[int]]):
    """Batches of ``p`` items x ``k`` images (drawn with replacement when an item has fewer than ``k``).

    One pass deals every item once; an epoch is as many passes as it takes to draw ``epoch_images``
    images (0: one pass), so an epoch sees about as many images as the training set holds even when
    there are few items. ``anchors`` (label -> rows, e.g. an item's shop photos) puts one of those rows
    among each item's ``k`` in every batch, so every consumer photo meets its shop photo in the batch.
    A last group of fewer than two items in a pass is dropped (no negatives).
    Data-parallel: rank r of W takes every W-th batch of the same seeded epoch order."""

    def __init__(self, labels: list[int], p: int, k: int, seed: int = 0, rank: int = 0, world: int = 1,
                 epoch_images: int = 0, anchors: dict[int, list[int]] | None = None) -> None:
        self.p, self.k, self.seed, self.epoch = max(2, p), k, seed, 0
        self.rank, self.world = rank, max(1, world)
        self.by_label: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            self.by_label.setdefault(label, []).append(i)
        if len(self.by_label) < 2:
            raise FashionlabError("PK sampling needs at least two training items")
        self.anchors = {label: rows for label, rows in (anchors or {}).items() if rows and label in self.by_label}
        self.others: dict[int, list[int]] = {}
        for label, members in self.by_label.items():
            anchored = set(self.anchors.get(label, ()))
            self.others[label] = [i for i in members if i not in anchored] or members
        self.passes = 1
        if epoch_images > 0:
            per_pass = self._pass_batches() * self.p * self.k
            self.passes = max(1, -(-epoch_images // per_pass))

    def _pass_batches(self) -> int:
        full, rest = divmod(len(self.by_label), self.p)
        return full + (rest >= 2)

    def __len__(self) -> int:
        return max(1, self._pass_batches() * self.passes // self.world)

    def _draw(self, rng: np.random.Generator, label: int) -> list[int]:
        anchors = self.anchors.get(label)
        if not anchors or self.k < 2:
            members = self.by_label[label]
            return rng.choice(members, self.k, replace=len(members) < self.k).tolist()
        others = self.others[label]
        return [int(rng.choice(anchors))] + rng.choice(others, self.k - 1, replace=len(others) < self.k - 1).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        labels = list(self.by_label)
        total = len(self) * self.world
        n = 0
        for _ in range(self.passes):
            order = [labels[i] for i in rng.permutation(len(labels))]
            for start in range(0, len(order), self.p):
                group = order[start:start + self.p]
                if len(group) < 2 or n >= total:
                    break
                if n % self.world == self.rank:
                    yield [i for label in group for i in self._draw(rng, label)]
                n += 1
