"""Synthetic FashionAI keypoints: flat garment drawings whose keypoints are the drawing's vertices.

Five categories (blouse, outwear, dress, skirt, trousers) are built as polygons in a garment frame
with jittered proportions (neck width and depth, sleeve length and angle, waist, hem flare, leg
spread, length). The keypoints are exact vertices of those polygons; the whole drawing and its
points go through the same random rotation (up to 15 degrees), aspect change, scale and shift,
fitted so every point lies inside the image. About a third of the images get one or two occluding
blobs; every point under a blob is marked v=0. Points a category does not have are ``-1_-1_-1``.

Convention: a ``*_left`` point is on the IMAGE's left (smaller x), ``*_right`` on the image's right.
Layout: ``Images/<category>/<id>.jpg`` and ``train.csv`` (``image_id,image_category,<24 points>``,
cells ``x_y_v``). The data are synthetic, for demos and tests only.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...errors import FashionlabError
from ...io import atomic_open, save_image, write_text
from .attributes import background, pick_colour, shade

_POINT_NAMES = ["neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
                "armpit_left", "armpit_right", "waistline_left", "waistline_right", "cuff_left_in",
                "cuff_left_out", "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right",
                "waistband_left", "waistband_right", "hemline_left", "hemline_right", "crotch", "bottom_left_in",
                "bottom_left_out", "bottom_right_in", "bottom_right_out"]
_CUFFS = ["cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out"]
_UPPER = ["neckline_left", "neckline_right", "shoulder_left", "shoulder_right", "armpit_left", "armpit_right"]
_CATEGORY_POINTS = {
    "blouse": _UPPER[:2] + ["center_front"] + _UPPER[2:] + _CUFFS + ["top_hem_left", "top_hem_right"],
    "outwear": _UPPER + ["waistline_left", "waistline_right"] + _CUFFS + ["top_hem_left", "top_hem_right"],
    "dress": _UPPER[:2] + ["center_front"] + _UPPER[2:] + ["waistline_left", "waistline_right"] + _CUFFS
    + ["hemline_left", "hemline_right"],
    "skirt": ["waistband_left", "waistband_right", "hemline_left", "hemline_right"],
    "trousers": ["waistband_left", "waistband_right", "crotch", "bottom_left_in", "bottom_left_out",
                 "bottom_right_in", "bottom_right_out"],
}
CATEGORIES = list(_CATEGORY_POINTS)


def _upper(rng: np.random.Generator, pts: dict, sleeve: tuple, body_y: float = 0.3) -> list:
    """Neck, shoulders, armpits and sleeves (into ``pts``); returns the two sleeve polygons."""
    nw, sw, bw = rng.uniform(0.07, 0.11), rng.uniform(0.24, 0.3), rng.uniform(0.2, 0.25)
    pts.update(neckline_left=(-nw, 0.0), neckline_right=(nw, 0.0), center_front=(0.0, rng.uniform(0.08, 0.2)),
               shoulder_left=(-sw, rng.uniform(0.04, 0.08)), armpit_left=(-bw, body_y))
    pts.update(shoulder_right=(sw, pts["shoulder_left"][1]), armpit_right=(bw, body_y))
    length, a, cw = rng.uniform(*sleeve), math.radians(rng.uniform(12, 55)), rng.uniform(0.06, 0.09)
    polys = []
    for k, side in ((-1, "left"), (1, "right")):
        sx, sy = pts[f"shoulder_{side}"]
        ox, oy = sx + k * math.sin(a) * length, sy + math.cos(a) * length
        ix, iy = ox - k * math.cos(a) * 2 * cw, oy + math.sin(a) * 2 * cw
        pts[f"cuff_{side}_out"], pts[f"cuff_{side}_in"] = (ox, oy), (ix, iy)
        polys.append([(sx, sy), (ox, oy), (ix, iy), pts[f"armpit_{side}"]])
    return polys


def _garment(category: str, rng: np.random.Generator) -> tuple[dict, list, list]:
    """(points, filled polygons, detail lines) in the garment frame (y down, height about 1)."""
    pts: dict = {}
    lines: list = []
    if category in ("blouse", "outwear", "dress"):
        sleeve = {"blouse": (0.12, 0.55), "outwear": (0.45, 0.7), "dress": (0.06, 0.4)}[category]
        sleeves = _upper(rng, pts, sleeve)
        nl, nr, cf = pts["neckline_left"], pts["neckline_right"], pts["center_front"]
        bw = pts["armpit_right"][0]
        if category == "dress":
            ww, hw, length = bw * rng.uniform(0.7, 0.85), rng.uniform(0.3, 0.5), rng.uniform(0.9, 1.3)
            pts.update(waistline_left=(-ww, 0.5), waistline_right=(ww, 0.5), hemline_left=(-hw, length),
                       hemline_right=(hw, length))
            side = ["armpit", "waistline", "hemline"]
        else:
            length = rng.uniform(0.65, 0.85) if category == "blouse" else rng.uniform(0.8, 1.15)
            hw = bw * rng.uniform(0.95, 1.15)
            pts.update(top_hem_left=(-hw, length), top_hem_right=(hw, length))
            side = ["armpit", "top_hem"]
            if category == "outwear":
                ww = bw * rng.uniform(0.88, 1.0)
                pts.update(waistline_left=(-ww, length * 0.55), waistline_right=(ww, length * 0.55))
                side = ["armpit", "waistline", "top_hem"]
        body = [nl, nr, pts["shoulder_right"]] + [pts[f"{s}_right"] for s in side] + \
            [pts[f"{s}_left"] for s in reversed(side)] + [pts["shoulder_left"]]
        if category == "outwear":                                # collar + front opening; no center_front
            depth = rng.uniform(0.12, 0.25)
            lines = [[nl, (0.0, depth), nr], [(0.0, depth), (0.0, length)]]
            pts.pop("center_front", None)
            neck = [nl, (0.0, depth * 0.6), nr]
        else:
            neck = [nl] + [((1 - t) ** 2 * nl[0] + t * t * nr[0], 2 * t * (1 - t) * cf[1] * 2)
                           for t in np.linspace(0.1, 0.9, 7)] + [nr]
        return pts, [body] + sleeves + [("neck", neck)], lines
    wb = rng.uniform(0.2, 0.28)
    pts.update(waistband_left=(-wb, 0.0), waistband_right=(wb, 0.0))
    band = [(-wb, 0.0), (wb, 0.0), (wb * 1.01, 0.07), (-wb * 1.01, 0.07)]
    if category == "skirt":
        length, hw = rng.uniform(0.45, 1.0), wb * rng.uniform(1.1, 1.9)
        pts.update(hemline_left=(-hw, length), hemline_right=(hw, length))
        return pts, [[(-wb, 0.0), (wb, 0.0), (hw, length), (-hw, length)], ("band", band)], lines
    crotch, length = rng.uniform(0.26, 0.36), rng.uniform(0.55, 1.1)
    spread, leg, gap = rng.uniform(-0.02, 0.12), rng.uniform(0.13, 0.2), rng.uniform(0.01, 0.05)
    pts.update(crotch=(0.0, crotch), bottom_left_in=(-gap - spread, length),
               bottom_left_out=(-gap - spread - leg, length), bottom_right_in=(gap + spread, length),
               bottom_right_out=(gap + spread + leg, length))
    body = [pts[n] for n in ("waistband_left", "waistband_right", "bottom_right_out", "bottom_right_in", "crotch",
                             "bottom_left_in", "bottom_left_out")]
    return pts, [body, ("band", band)], [[(0.0, 0.07), (0.0, crotch * 0.8)]]


def render_keypoints(category: str, size: int, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Draw one garment; returns the image and ``{name: (x, y, v)}`` for the category's points."""
    pts, polys, lines = _garment(category, rng)
    theta, aspect = math.radians(rng.uniform(-15, 15)), rng.uniform(0.85, 1.2)
    c, s = math.cos(theta), math.sin(theta)
    rot = lambda x, y: (x * aspect * c - y * s, x * aspect * s + y * c)  # noqa: E731
    every = [p for poly in polys for p in (poly[1] if isinstance(poly, tuple) else poly)] + list(pts.values())
    xy = np.array([rot(x, y) for x, y in every])
    lo, hi = xy.min(0), xy.max(0)
    scale = size * rng.uniform(0.6, 0.9) / max(hi - lo)
    margin = size * 0.03
    free = size - 2 * margin - (hi - lo) * scale
    off = margin + rng.uniform(0, 1, 2) * np.maximum(free, 0) - lo * scale
    T = lambda p: (rot(*p)[0] * scale + off[0], rot(*p)[1] * scale + off[1])  # noqa: E731
    colour = pick_colour(rng, [])
    bg = pick_colour(rng, [colour], s=(0.0, 0.4), v=(0.35, 1.0), dist=120)
    img = background(rng, size, bg)
    d = ImageDraw.Draw(img)
    edge, lw = shade(colour, 0.5), max(1, size // 64)
    for poly in polys:
        if isinstance(poly, tuple):                              # neck opening / waistband details
            kind, poly = poly
            d.polygon([T(p) for p in poly], fill=shade(colour, 0.6 if kind == "neck" else 0.75), outline=edge)
        else:
            d.polygon([T(p) for p in poly], fill=colour, outline=edge)
    for line in lines:
        d.line([T(p) for p in line], fill=edge, width=lw)
    out = {name: (*T(p), 1) for name, p in pts.items()}
    if rng.random() < 0.35:                                      # occluders: everything under them is v=0
        names = list(out)
        for _ in range(int(rng.integers(1, 3))):
            px, py, _v = out[names[int(rng.integers(len(names)))]]
            r = size * rng.uniform(0.06, 0.1)
            rx, ry = r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)
            cx, cy = px + rng.uniform(-0.4, 0.4) * rx, py + rng.uniform(-0.4, 0.4) * ry
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=pick_colour(rng, [colour, bg], dist=90))
            for name, (x, y, v) in out.items():
                if ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0:
                    out[name] = (x, y, 0)
    return img, {n: (int(min(size - 1, max(0, round(x)))), int(min(size - 1, max(0, round(y)))), v)
                 for n, (x, y, v) in out.items()}


def synth_keypoints(out: Path, n: int = 300, size: int = 128, seed: int = 0) -> Path:
    """Write a synthetic FashionAI keypoints set under ``out``; returns ``out``."""
    out = Path(out)
    if n < 1 or size < 16:
        raise FashionlabError("synth keypoints: need n >= 1 and size >= 16")
    cats = np.random.default_rng([seed, 17]).permutation(np.arange(n) % len(CATEGORIES)).tolist()
    rows = []
    for i, ci in enumerate(cats):
        category = CATEGORIES[ci]
        (out / "Images" / category).mkdir(parents=True, exist_ok=True)
        img, pts = render_keypoints(category, size, np.random.default_rng([seed, i, 3]))
        rel = f"Images/{category}/{hashlib.md5(f'keypoints/{seed}/{i}'.encode()).hexdigest()}.jpg"
        save_image(img, out / rel, "JPEG", quality=90)
        cells = [f"{pts[p][0]}_{pts[p][1]}_{pts[p][2]}" if p in pts else "-1_-1_-1" for p in _POINT_NAMES]
        rows.append(",".join([rel, category] + cells) + "\n")
    with atomic_open(out / "train.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(["image_id", "image_category"] + _POINT_NAMES) + "\n")
        fh.writelines(rows)
    lines = ["Synthetic FashionAI keypoints (fashionlab.data.synth.keypoints): drawn garments, not photos.",
             f"seed: {seed}   images: {n}   size: {size}px",
             "train.csv: image_id, image_category, then 24 cells x_y_v (v=1 visible, 0 occluded by a blob,",
             "-1_-1_-1 = the category has no such point). Points are exact vertices of the drawing.",
             "Convention: *_left points lie on the IMAGE's left side (smaller x), *_right on the image's right.", ""]
    lines += [f"{cat}: {', '.join(names)}" for cat, names in _CATEGORY_POINTS.items()]
    write_text(out / "README.txt", "\n".join(lines) + "\n")
    return out
