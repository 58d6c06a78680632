"""FashionAI keypoints: the 24-point CSV format, its reader/writer, and the normalised error (NE).

NE: for each truth image, s = distance between the truth armpit_left and armpit_right (blouse, outwear,
dress) or waistband_left and waistband_right (skirt, trousers). An image whose normalising pair has
v = -1 in the truth (either point), or s = 0, is excluded (counted in ``excluded_images``). Every truth
point with v = 1 in a kept image scores ||pred - truth|| / s; ``ne`` is the mean over all those points,
``per_category`` the same mean over each category's points (categories with at least one counted point).
The predicted v is ignored: a point written as ``-1_-1_-1`` is scored at (-1, -1).
"""
from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FashionlabError, at
from ...io import atomic_open

KEYPOINT_NAMES: tuple[str, ...] = (
    "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
    "armpit_left", "armpit_right", "waistline_left", "waistline_right",
    "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out",
    "top_hem_left", "top_hem_right", "waistband_left", "waistband_right",
    "hemline_left", "hemline_right", "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
)
CATEGORIES: tuple[str, ...] = ("blouse", "outwear", "dress", "skirt", "trousers")
CATEGORY_POINTS: dict[str, tuple[str, ...]] = {
    "blouse": ("neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
               "armpit_left", "armpit_right", "cuff_left_in", "cuff_left_out", "cuff_right_in",
               "cuff_right_out", "top_hem_left", "top_hem_right"),
    "outwear": ("neckline_left", "neckline_right", "shoulder_left", "shoulder_right", "armpit_left",
                "armpit_right", "waistline_left", "waistline_right", "cuff_left_in", "cuff_left_out",
                "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right"),
    "dress": ("neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
              "armpit_left", "armpit_right", "waistline_left", "waistline_right", "cuff_left_in",
              "cuff_left_out", "cuff_right_in", "cuff_right_out", "hemline_left", "hemline_right"),
    "skirt": ("waistband_left", "waistband_right", "hemline_left", "hemline_right"),
    "trousers": ("waistband_left", "waistband_right", "crotch", "bottom_left_in", "bottom_left_out",
                 "bottom_right_in", "bottom_right_out"),
}
FLIP_PAIRS: tuple[tuple[str, str], ...] = (
    ("neckline_left", "neckline_right"), ("shoulder_left", "shoulder_right"),
    ("armpit_left", "armpit_right"), ("waistline_left", "waistline_right"),
    ("cuff_left_in", "cuff_right_in"), ("cuff_left_out", "cuff_right_out"),
    ("top_hem_left", "top_hem_right"), ("waistband_left", "waistband_right"),
    ("hemline_left", "hemline_right"), ("bottom_left_in", "bottom_right_in"),
    ("bottom_left_out", "bottom_right_out"),
)
NORMALISER: dict[str, tuple[str, str]] = {
    **{c: ("armpit_left", "armpit_right") for c in ("blouse", "outwear", "dress")},
    **{c: ("waistband_left", "waistband_right") for c in ("skirt", "trousers")},
}
HEADER: tuple[str, ...] = ("image_id", "image_category", *KEYPOINT_NAMES)
INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
_CELL = re.compile(r"^(-?\d+(?:\.\d+)?)_(-?\d+(?:\.\d+)?)_(-?\d+)$")


@dataclass
class KeypointSet:
    """One keypoints CSV: ids, categories, coordinates [N, 24, 2] and visibility [N, 24] in {-1, 0, 1}."""

    image_ids: list[str]
    categories: list[str]
    xy: np.ndarray
    v: np.ndarray
    source: str = "predictions"
    lines: list[int] = field(default_factory=list)

    def line_of(self, i: int) -> str:
        return at(self.source, self.lines[i]) if self.lines else f"{self.source} row {i + 1}"


def read_keypoints_csv(path: str | Path) -> KeypointSet:
    """Read ``image_id,image_category,<24 names>`` with ``x_y_v`` cells; any malformed row is an error."""
    path = Path(path)
    if not path.is_file():
        raise FashionlabError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise FashionlabError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise FashionlabError(f"{path}: cannot parse CSV ({exc})") from None
    if not header or not any(c.strip() for c in header):
        raise FashionlabError(f"{path}: empty file (expected the header {','.join(HEADER[:3])},...)")
    header = [c.strip() for c in header]
    for i, expected in enumerate(HEADER):
        if i >= len(header):
            raise FashionlabError(f"{at(path, 1)}: header has {len(header)} columns; missing "
                                  f"'{expected}' (column {i + 1}) and after")
        if header[i] != expected:
            raise FashionlabError(f"{at(path, 1)} column {i + 1}: expected '{expected}', found '{header[i]}'")
    if len(header) > len(HEADER):
        extra = header[len(HEADER)]
        raise FashionlabError(f"{at(path, 1)} column {len(HEADER) + 1}: unexpected extra column '{extra}'")
    if not rows:
        raise FashionlabError(f"{path}: no data rows after the header")
    n = len(rows)
    xy = np.zeros((n, len(KEYPOINT_NAMES), 2), dtype=np.float64)
    vis = np.zeros((n, len(KEYPOINT_NAMES)), dtype=np.int64)
    ids: list[str] = []
    cats: list[str] = []
    first: dict[str, int] = {}
    for r, (line, row) in enumerate(rows):
        where = at(path, line)
        if len(row) != len(HEADER):
            raise FashionlabError(f"{where}: {len(row)} columns; expected {len(HEADER)}")
        image, cat = row[0].strip(), row[1].strip()
        if not image:
            raise FashionlabError(f"{where}: empty image_id")
        if cat not in CATEGORIES:
            raise FashionlabError(f"{where}: image_category '{cat}' is not one of {', '.join(CATEGORIES)}")
        if image in first:
            raise FashionlabError(f"{where}: duplicate image_id '{image}' (first on line {first[image]})")
        first[image] = line
        for j, cell in enumerate(row[2:]):
            match = _CELL.match(cell.strip())
            if match is None:
                raise FashionlabError(f"{where} column {KEYPOINT_NAMES[j]}: cell '{cell}' is not x_y_v")
            v = int(match.group(3))
            if v not in (-1, 0, 1):
                raise FashionlabError(f"{where} column {KEYPOINT_NAMES[j]}: visibility {v} in '{cell}' "
                                      "is not -1, 0 or 1")
            xy[r, j] = float(match.group(1)), float(match.group(2))
            vis[r, j] = v
        ids.append(image)
        cats.append(cat)
    return KeypointSet(ids, cats, xy, vis, str(path), [line for line, _ in rows])


def normalized_error(pred: KeypointSet, truth: KeypointSet) -> dict[str, Any]:
    """{"ne", "per_category", "n_points", "excluded_images"}: mean normalised distance over visible points."""
    row = {image: i for i, image in enumerate(pred.image_ids)}
    errors: list[np.ndarray] = []
    cats: list[str] = []
    excluded = 0
    for t, (image, cat) in enumerate(zip(truth.image_ids, truth.categories)):
        p = row.get(image)
        if p is None:
            raise FashionlabError(f"{truth.line_of(t)}: image '{image}' has no prediction in {pred.source}")
        a, b = (INDEX[name] for name in NORMALISER[cat])
        if truth.v[t, a] == -1 or truth.v[t, b] == -1:
            excluded += 1
            continue
        s = float(np.linalg.norm(truth.xy[t, a] - truth.xy[t, b]))
        if s == 0.0:
            excluded += 1
            continue
        visible = truth.v[t] == 1
        dist = np.linalg.norm(pred.xy[p, visible] - truth.xy[t, visible], axis=1) / s
        errors.append(dist)
        cats.extend([cat] * len(dist))
    flat = np.concatenate(errors) if errors else np.zeros(0)
    if flat.size == 0:
        raise FashionlabError(f"{truth.source}: no visible points to score ({excluded} image(s) excluded for a "
                              "missing or zero-length normalising pair)")
    cat_arr = np.asarray(cats)
    per_category = {c: float(flat[cat_arr == c].mean()) for c in CATEGORIES if (cat_arr == c).any()}
    return {"ne": float(flat.mean()), "per_category": per_category, "n_points": int(flat.size),
            "excluded_images": excluded}


def evaluate_keypoints_files(pred_path: str | Path, truth_path: str | Path) -> dict[str, Any]:
    """NE of a predictions CSV against a truth CSV (both in the 24-column FashionAI format)."""
    return normalized_error(read_keypoints_csv(pred_path), read_keypoints_csv(truth_path))


def write_keypoints_csv(path: str | Path, image_ids: Sequence[str], categories: Sequence[str],
                        coords: np.ndarray, visible_mask: np.ndarray | None = None) -> Path:
    """Write predictions in the 24-column format: ``x_y_1`` (rounded ints) where ``visible_mask`` is true,
    ``-1_-1_-1`` elsewhere; ``visible_mask=None`` means each category's own point set."""
    coords = np.asarray(coords, dtype=np.float64)
    n = len(image_ids)
    if coords.shape != (n, len(KEYPOINT_NAMES), 2):
        raise FashionlabError(f"coords has shape {coords.shape}; expected ({n}, {len(KEYPOINT_NAMES)}, 2)")
    if len(categories) != n:
        raise FashionlabError(f"{len(categories)} categories for {n} images")
    bad = [c for c in categories if c not in CATEGORIES]
    if bad:
        raise FashionlabError(f"category '{bad[0]}' is not one of {', '.join(CATEGORIES)}")
    if visible_mask is None:
        mask = np.array([[name in CATEGORY_POINTS[c] for name in KEYPOINT_NAMES] for c in categories],
                        dtype=bool).reshape(n, len(KEYPOINT_NAMES))
    else:
        mask = np.asarray(visible_mask, dtype=bool)
        if mask.shape != (n, len(KEYPOINT_NAMES)):
            raise FashionlabError(f"visible_mask has shape {mask.shape}; expected ({n}, {len(KEYPOINT_NAMES)})")
    if not np.isfinite(coords[mask]).all():
        raise FashionlabError("coords holds NaN or infinite values for points to write")
    ints = np.rint(np.where(mask[..., None], coords, -1)).astype(np.int64)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(n):
            cells = [f"{x}_{y}_1" if m else "-1_-1_-1" for (x, y), m in zip(ints[i].tolist(), mask[i])]
            writer.writerow([image_ids[i], categories[i], *cells])
    return Path(path)
