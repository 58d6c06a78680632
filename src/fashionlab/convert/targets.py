"""Writers for the task formats fashionlab reads, row by row (atomic: a failed conversion leaves no file).

keypoints   ``DIR/train.csv``: ``image_id,image_category,<24 points>``, cells ``x_y_v`` (metric.py);
            images under ``DIR/Images/<category>/`` (``read_source`` infers the category from that folder)
retrieval   ``DIR/items.csv`` (``image,item_id,domain,category``, images relative to ``DIR/images``) and
            ``DIR/matches.csv`` (``query_id,gallery_id``: each consumer image x the shop images of its item)
styles      ``DIR/labels.csv``: ``image,<label1>,...`` of 0/1, images relative to ``DIR/images``
attributes  ``DIR/Annotations/label.csv`` (``path,task,letters``, no header, paths relative to ``DIR``)
            and ``DIR/CLASSES.md`` (``<task> letter order: a, b, ...``, read by ``value_names``)
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ..io import atomic_open, write_text
from ..tasks.keypoints.metric import CATEGORY_POINTS, HEADER, KEYPOINT_NAMES, NORMALISER
from ..tasks.retrieval.metric import MATCHES_HEADER
from .common import ImagePlacer, Summary

OUTSIDE = "points outside the image set to -1_-1_-1"
NO_NORMALISER = "rows evaluate keypoints will exclude (armpit/waistband pair not both labelled)"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0").rstrip(".")


class _Csv:
    """One atomically written CSV, open for the whole conversion."""

    def __init__(self, stack: ExitStack, path: Path, header: Sequence[str] | None) -> None:
        self.path = path
        self.handle: IO[str] = stack.enter_context(atomic_open(path, "w", encoding="utf-8", newline=""))
        self.writer = csv.writer(self.handle, lineterminator="\n")
        if header is not None:
            self.writer.writerow(header)


class KeypointsOut(_Csv):
    FILE = "train.csv"

    def __init__(self, stack: ExitStack, out: Path, summary: Summary) -> None:
        super().__init__(stack, out / self.FILE, HEADER)
        self.summary = summary
        summary.files.append(self.FILE)

    def write(self, image_id: str, category: str, points: dict[str, tuple[float, float, int]],
              width: int, height: int) -> bool:
        """One row; ``points`` maps FashionAI names to (x, y, v) with v in {1 visible, 0 occluded, -1 not
        labelled}. Points the category lacks are -1; a labelled point outside the W x H image is cleared
        (counted). False (nothing written) when no point of the category is labelled."""
        cells, labelled = [], 0
        for name in KEYPOINT_NAMES:
            x, y, v = points.get(name, (-1.0, -1.0, -1))
            if name not in CATEGORY_POINTS[category] or v == -1:
                cells.append("-1_-1_-1")
                continue
            if x < 0 or y < 0 or x > width or y > height:
                self.summary.add(OUTSIDE)
                cells.append("-1_-1_-1")
                continue
            labelled += 1
            cells.append(f"{_num(x)}_{_num(y)}_{v}")
        if not labelled:
            return False
        if any(cells[KEYPOINT_NAMES.index(name)] == "-1_-1_-1" for name in NORMALISER[category]):
            self.summary.add(NO_NORMALISER)
        self.writer.writerow([image_id, category, *cells])
        return True


@dataclass
class Garment:
    """One annotated garment of an image, already in FashionAI terms (points: name -> (x, y, v))."""

    record: str
    category: str
    points: dict[str, tuple[float, float, int]]
    box: tuple[float, float, float, float]
    suffix: str


def write_garments(sink: KeypointsOut, placer: ImagePlacer, summary: Summary, src: Path, rel: str,
                   garments: list[Garment]) -> None:
    """Keypoint rows for the garments of one image ``src`` (``rel``: its path relative to the source's image
    folder). Without crops, a row shows the whole image, so one garment per FashionAI category is kept (the
    largest box) and the row is ``Images/<category>/<rel>``; in crop mode every garment gets its own crop
    ``Images/<category>/<rel stem>_<suffix>.jpg`` and its points move with it."""
    keep: list[Garment] = []
    if placer.mode == "crop":
        keep = garments
    else:
        by_category: dict[str, list[Garment]] = {}
        for garment in garments:
            by_category.setdefault(garment.category, []).append(garment)
        for category, group in by_category.items():
            group.sort(key=lambda g: (g.box[2] - g.box[0]) * (g.box[3] - g.box[1]), reverse=True)
            keep.append(group[0])
            for other in group[1:]:
                summary.drop(f"another {category} garment in the same image (kept the largest box; --crop keeps "
                             "each)", other.record)
    for garment in keep:
        if all(v == -1 for _, _, v in garment.points.values()):
            summary.drop("no labelled landmark", garment.record)
            continue
        name = rel if placer.mode != "crop" else str(PurePosixPath(rel).with_suffix("")) + f"_{garment.suffix}.jpg"
        image_id = f"Images/{garment.category}/{name}"
        placed = placer.place(src, image_id, garment.box, need_size=True)
        if placed is None:
            summary.drop("image missing or unreadable", f"{garment.record} ({src})")
            continue
        points = {k: (x - placed.x0, y - placed.y0, v) for k, (x, y, v) in garment.points.items()}
        if sink.write(image_id, garment.category, points, placed.width, placed.height):
            summary.row(garment.category, src)
        else:
            summary.drop("no labelled landmark inside the image", garment.record)


class ItemsOut(_Csv):
    """items.csv as rows arrive; matches.csv when the conversion ends (it needs every shop image)."""

    FILE, MATCHES = "items.csv", "matches.csv"

    def __init__(self, stack: ExitStack, out: Path, summary: Summary) -> None:
        super().__init__(stack, out / self.FILE, ("image", "item_id", "domain", "category"))
        self.out, self.summary = out, summary
        self.shop: dict[str, list[str]] = {}
        self.consumer: list[tuple[str, str]] = []
        summary.files.append(self.FILE)

    def write(self, image: str, item: str, domain: str, category: str) -> None:
        self.writer.writerow([image, item, domain, category])
        if domain == "shop":
            self.shop.setdefault(item, []).append(image)
        else:
            self.consumer.append((image, item))

    def finish(self) -> None:
        """Write matches.csv (call once, after the last row)."""
        rows = [(query, shop) for query, item in self.consumer for shop in self.shop.get(item, [])]
        queries = len({query for query, _ in rows})
        self.summary.stats.update({"queries with a shop match": queries, "matches": len(rows)})
        if len(self.consumer) > queries:
            self.summary.notes.append(f"{len(self.consumer) - queries} consumer image(s) have no shop image of "
                                      "their item in this output: they train, but are not in matches.csv")
        if not rows:
            self.summary.notes.append("no consumer image has a shop image of its item: matches.csv not written")
            (self.out / self.MATCHES).unlink(missing_ok=True)  # never leave an earlier conversion's matches
            return
        with atomic_open(self.out / self.MATCHES, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(MATCHES_HEADER)
            writer.writerows(rows)
        self.summary.files.append(self.MATCHES)


class StylesOut(_Csv):
    FILE = "labels.csv"

    def __init__(self, stack: ExitStack, out: Path, labels: Sequence[str], summary: Summary) -> None:
        super().__init__(stack, out / self.FILE, ("image", *labels))
        self.width = len(labels)
        summary.files.append(self.FILE)
        summary.stats["labels"] = len(labels)

    def write(self, image: str, positive: set[int]) -> None:
        self.writer.writerow([image, *("1" if j in positive else "0" for j in range(self.width))])


class AttributesOut(_Csv):
    """label.csv rows plus CLASSES.md naming each task's values in letter order."""

    FILE = "Annotations/label.csv"

    def __init__(self, stack: ExitStack, out: Path, tasks: dict[str, list[str]], summary: Summary) -> None:
        super().__init__(stack, out / self.FILE, None)
        self.out, self.tasks = out, tasks
        self.used: set[str] = set()
        summary.files += [self.FILE, "CLASSES.md"]

    def write(self, path: str, task: str, letters: str) -> None:
        self.writer.writerow([path, task, letters])
        self.used.add(task)

    def finish(self) -> None:
        """Write CLASSES.md for the tasks that got rows (call once, after the last row)."""
        lines = [f"{task} letter order: {', '.join(values)}" for task, values in self.tasks.items() if task in self.used]
        write_text(self.out / "CLASSES.md", "\n".join(lines) + "\n")
