"""FashionAI keypoint records (train.csv / test.csv / image folders) and the torch dataset over them.

A training path is a folder holding ``train.csv`` (image paths relative to it) or the CSV itself;
cells are ``x_y_v`` with v = 1 visible, 0 occluded, -1 not applicable (see ``metric.py``). Every
input problem is a ``FashionlabError`` naming the file and line: malformed cells and unknown
categories (from ``read_keypoints_csv``), missing or unreadable images, points outside the image.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ...data.images import BadImage, check_images, list_images, load_rgb
from ...data.images import image_size as upright_size
from ...errors import FashionlabError, at
from ...io import atomic_open
from .augment import KeypointAugment, box_around, inside_image, resize_with_points
from .metric import CATEGORIES, CATEGORY_POINTS, HEADER, KEYPOINT_NAMES, KeypointSet, read_keypoints_csv

log = logging.getLogger(__name__)
N_POINTS = len(KEYPOINT_NAMES)
CATEGORY_MASK: dict[str, np.ndarray] = {c: np.array([n in CATEGORY_POINTS[c] for n in KEYPOINT_NAMES])
                                        for c in CATEGORIES}


@dataclass
class KeypointRecords:
    """Images with category, points ``xy`` [N, 24, 2] (index coordinates, original pixels), visibility
    ``v`` [N, 24] (-1 wherever the category lacks the point) and image ``sizes`` [N, 2] as (W, H)."""

    paths: list[Path]
    ids: list[str]
    categories: list[str]
    xy: np.ndarray
    v: np.ndarray
    sizes: np.ndarray
    source: str = ""
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index) -> "KeypointRecords":
        idx = np.asarray(index, dtype=np.int64)
        return KeypointRecords([self.paths[i] for i in idx], [self.ids[i] for i in idx],
                               [self.categories[i] for i in idx], self.xy[idx], self.v[idx], self.sizes[idx],
                               self.source, [self.lines[i] for i in idx] if self.lines else [])

    def truth(self) -> KeypointSet:
        """These records as the metric's truth set."""
        return KeypointSet(list(self.ids), list(self.categories), self.xy.astype(np.float64), self.v.copy(),
                           self.source, list(self.lines))


def image_size(path: Path, where: str) -> tuple[int, int]:
    """(W, H) as displayed (EXIF orientation applied: coordinates are read in the upright image), from
    the header; a missing, unreadable or oversized image names the CSV line."""
    try:
        return upright_size(path)
    except BadImage as err:
        if err.kind == "missing":
            raise FashionlabError(f"{where}: image file not found: {path}") from None
        raise FashionlabError(f"{where}: {err}") from None


def _sizes(paths: list[Path], wheres: list[str], skip_bad: bool) -> tuple[np.ndarray, list[int]]:
    sizes, good, bad = [], [], []
    for i, (path, where) in enumerate(zip(paths, wheres)):
        try:
            sizes.append(image_size(path, where))
            good.append(i)
        except FashionlabError as err:
            if not skip_bad:
                raise FashionlabError(f"{err} (use --skip-bad to skip unreadable images)") from None
            bad.append(str(err))
    if bad:
        log.warning("skipped %d row(s) with missing/unreadable images, first: %s", len(bad), bad[0])
    return np.array(sizes, dtype=np.int64).reshape(-1, 2), good


def train_csv(data: Path) -> Path:
    """``data`` is a folder holding train.csv, or the CSV itself."""
    if data.is_dir():
        if not (data / "train.csv").is_file():
            raise FashionlabError(f"{data}: no train.csv (expected {data}/train.csv with "
                                  f"{','.join(HEADER[:3])},...; images relative to it)")
        return data / "train.csv"
    if not data.is_file():
        raise FashionlabError(f"{data}: no such file or folder")
    return data


def read_records(data: Path, categories: list[str] | None = None, skip_bad: bool = False) -> KeypointRecords:
    """Read an annotated keypoints CSV, check its images and points; keep only ``categories`` if given."""
    path = train_csv(Path(data))
    ks = read_keypoints_csv(path)
    keep = [i for i, c in enumerate(ks.categories) if not categories or c in categories]
    if not keep:
        raise FashionlabError(f"{path}: no rows of categories {', '.join(categories or [])}")
    wheres = [ks.line_of(i) for i in keep]
    paths = [path.parent / ks.image_ids[i] for i in keep]
    sizes, good = _sizes(paths, wheres, skip_bad)
    keep = [keep[i] for i in good]
    xy, v = ks.xy[keep].copy(), ks.v[keep].copy()
    for r, i in enumerate(keep):
        v[r, ~CATEGORY_MASK[ks.categories[i]]] = -1  # a point the category does not have is never trained
        w, h = sizes[r]
        labelled = v[r] != -1
        outside = labelled & ((xy[r, :, 0] < 0) | (xy[r, :, 1] < 0) | (xy[r, :, 0] > w) | (xy[r, :, 1] > h))
        if outside.any():
            j = int(np.argmax(outside))
            x, y = xy[r, j]
            raise FashionlabError(f"{ks.line_of(i)} column {KEYPOINT_NAMES[j]}: point ({x:g}, {y:g}) is outside "
                                  f"the {w}x{h} image {ks.image_ids[i]}")
        xy[r, :, 0] = np.minimum(xy[r, :, 0], w - 1)  # one pixel of annotator slack on the far edges
        xy[r, :, 1] = np.minimum(xy[r, :, 1], h - 1)
    return KeypointRecords([paths[i] for i in good], [ks.image_ids[i] for i in keep],
                           [ks.categories[i] for i in keep], xy, v, sizes, str(path), [ks.lines[i] for i in keep])


def _category_of(rel: Path, where: str) -> str:
    for part in reversed(rel.parts[:-1]):
        if part in CATEGORIES:
            return part
    raise FashionlabError(f"{where}: cannot tell the category of '{rel.as_posix()}': keep images under "
                          f"<category>/ folders ({', '.join(CATEGORIES)}) or pass a CSV with image_id,image_category")


def read_source(source: Path, skip_bad: bool = False) -> KeypointRecords:
    """Images to predict: an annotated CSV, a test CSV (``image_id,image_category``), a folder whose images
    sit under ``<category>/`` folders, or one such image. Image ids are paths relative to the CSV/folder.
    ``skip_bad``: rows whose image is missing or unreadable are left out (counted, with a warning)."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        with open(source, encoding="utf-8-sig", newline="") as handle:
            header = [c.strip() for c in next(csv.reader(handle), [])]
        if len(header) > 2:
            records = read_records(source, skip_bad=skip_bad)
            return records.subset(check_images(records.paths, skip_bad))
        if header[:2] != ["image_id", "image_category"]:
            raise FashionlabError(f"{at(source, 1)}: expected the header image_id,image_category; got {header}")
        ids, cats, lines = [], [], []
        with open(source, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                where = at(source, reader.line_num)
                if len(row) < 2 or not row[0].strip():
                    raise FashionlabError(f"{where}: expected image_id,image_category")
                if row[1].strip() not in CATEGORIES:
                    raise FashionlabError(f"{where}: image_category '{row[1].strip()}' is not one of "
                                          f"{', '.join(CATEGORIES)}")
                ids.append(row[0].strip())
                cats.append(row[1].strip())
                lines.append(reader.line_num)
        root = source.parent
        wheres = [at(source, line) for line in lines]
    elif source.is_dir() or source.is_file():
        root = source if source.is_dir() else source.parent
        files = list_images(source) if source.is_dir() else [source]
        ids = [p.relative_to(root).as_posix() for p in files]
        cats = [_category_of(p.relative_to(root) if source.is_dir() else p, str(p))
                for p in files]
        lines, wheres = [], [str(p) for p in files]
    else:
        raise FashionlabError(f"{source}: no such file or folder")
    if not ids:
        raise FashionlabError(f"{source}: no images found")
    paths = [root / i for i in ids]
    sizes, good = _sizes(paths, wheres, skip_bad)
    decodes = check_images([paths[i] for i in good], skip_bad)  # a sound header, broken pixels
    sizes, good = sizes[decodes], [good[i] for i in decodes]
    if not good:
        raise FashionlabError(f"{source}: no readable image to predict")
    n = len(ids)
    records = KeypointRecords(paths, ids, cats, np.zeros((n, N_POINTS, 2)), np.full((n, N_POINTS), -1, np.int64),
                              np.zeros((n, 2), np.int64), str(source), lines)
    records = records.subset(good)
    records.sizes = sizes
    return records


def write_truth_csv(path: Path, records: KeypointRecords) -> Path:
    """The records as an annotated 24-column CSV (``x_y_v``; ``-1_-1_-1`` where v = -1)."""
    def cell(x: float, y: float, v: int) -> str:
        return "-1_-1_-1" if v == -1 else f"{x:g}_{y:g}_{v}"

    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(len(records)):
            writer.writerow([records.ids[i], records.categories[i],
                             *(cell(*records.xy[i, j], int(records.v[i, j])) for j in range(N_POINTS))])
    return Path(path)


def normalize(image: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 HWC -> float CHW with the backbone's normalisation."""
    arr = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


class KeypointDataset(Dataset):
    """(image [3, S, S], target) pairs; target holds ``xy`` (continuous input pixels, [24, 2]), ``weight``
    ([24]; 0 for v=-1, for v=0 unless ``train_occluded``, and for points outside the view), ``box`` (the
    crop in continuous original pixels, to map predictions back) and ``index``.

    ``boxes`` (prediction, stage 2) crops each image to its box; ``crop_prob`` (training, two-stage)
    crops to the truth box with a jittered margin, so the model also learns the stage-2 view.
    """

    def __init__(self, records: KeypointRecords, imgsz: int, mean, std, augment: KeypointAugment | None = None,
                 train_occluded: bool = True, boxes: np.ndarray | None = None, crop_prob: float = 0.0,
                 crop_margin: float = 0.15) -> None:
        self.records, self.imgsz, self.mean, self.std = records, imgsz, mean, std
        self.augment, self.train_occluded = augment, train_occluded
        self.boxes, self.crop_prob, self.crop_margin = boxes, crop_prob, crop_margin

    def __len__(self) -> int:
        return len(self.records)

    def _box(self, i: int, weight: np.ndarray) -> tuple[int, int, int, int]:
        w, h = (int(s) for s in self.records.sizes[i])
        if self.boxes is not None:
            return tuple(int(b) for b in self.boxes[i])  # type: ignore[return-value]
        if self.augment is not None and self.crop_prob > 0 and self.augment.rng.random() < self.crop_prob:
            margin = self.crop_margin * float(self.augment.rng.uniform(0.5, 1.5))
            return box_around(self.records.xy[i], weight > 0, w, h, margin)
        return 0, 0, w, h

    def __getitem__(self, i: int):
        rec = self.records
        v = rec.v[i]
        weight = ((v == 1) | ((v == 0) & self.train_occluded)).astype(np.float32)
        x0, y0, x1, y1 = self._box(i, weight)
        w, h = (int(s) for s in rec.sizes[i])
        draft = int(np.ceil(self.imgsz * max(w / (x1 - x0), h / (y1 - y0))))
        image = load_rgb(rec.paths[i], draft=draft)
        lh, lw = image.shape[:2]
        sx, sy = lw / w, lh / h  # JPEG draft decoding may have shrunk the image
        cx0, cy0, cx1, cy1 = int(round(x0 * sx)), int(round(y0 * sy)), int(round(x1 * sx)), int(round(y1 * sy))
        image = image[cy0:max(cy1, cy0 + 1), cx0:max(cx1, cx0 + 1)]
        xy = np.stack([(rec.xy[i, :, 0] + 0.5) * sx - 0.5 - cx0, (rec.xy[i, :, 1] + 0.5) * sy - 0.5 - cy0], -1)
        image, xy = resize_with_points(image, xy, self.imgsz)
        if self.augment is not None:
            image, xy, weight, _ = self.augment(image, xy, weight)
        else:
            weight = np.where(inside_image(xy, self.imgsz, self.imgsz), weight, 0.0).astype(np.float32)
        box = np.array([cx0 / sx, cy0 / sy, cx1 / sx, cy1 / sy], dtype=np.float32)
        target = {"xy": torch.from_numpy(np.nan_to_num(xy + 0.5).astype(np.float32)),
                  "weight": torch.from_numpy(weight), "box": torch.from_numpy(box), "index": i}
        return normalize(image, self.mean, self.std), target
