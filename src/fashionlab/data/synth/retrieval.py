"""Synthetic JD street-to-shop retrieval: one drawn item, clean shop shots and messy consumer shots.

Every item is a unique combination of category (top, trousers, skirt, shoes, bag), colour (one of
12, slightly jittered per item), pattern (plain, stripes, dots, checks, diagonal) and a small logo
(circle, triangle, square, star, cross, diamond) at a category-specific place. Shop shots show the
item clean and centred on a white background (tiny scale/shift changes between shots). Consumer
shots show the same item smaller or larger, shifted (partly cropped), slightly rotated, over a
coloured, cluttered background, with a brightness/contrast/colour-cast change.

Layout: ``images/shop/<id>.jpg``, ``images/consumer/<id>.jpg``, ``items.csv`` (``image,item_id,domain,
category``; image relative to ``images/``) and ``matches.csv`` (``query_id,gallery_id``: every shop
image of the same item for each consumer image). The data are synthetic, for demos and tests only.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...errors import FashionlabError
from ...io import atomic_open, save_image, write_text
from .attributes import background, pick_colour

CATEGORIES = ["top", "trousers", "skirt", "shoes", "bag"]
COLOURS = {"red": (200, 35, 40), "orange": (240, 130, 30), "yellow": (240, 210, 40), "green": (40, 150, 60),
           "teal": (30, 150, 150), "blue": (40, 80, 200), "navy": (25, 35, 90), "purple": (120, 50, 160),
           "pink": (240, 140, 180), "brown": (120, 75, 40), "black": (30, 30, 32), "grey": (140, 140, 140)}
PATTERNS = ["plain", "stripes", "dots", "checks", "diagonal"]
LOGOS = ["circle", "triangle", "square", "star", "cross", "diamond"]
# Outline (unit square) and logo centre per category.
_SHAPES = {
    "top": ([(0.3, 0.14), (0.42, 0.11), (0.58, 0.11), (0.7, 0.14), (0.9, 0.36), (0.8, 0.45), (0.72, 0.38),
             (0.72, 0.88), (0.28, 0.88), (0.28, 0.38), (0.2, 0.45), (0.1, 0.36)], (0.6, 0.3)),
    "trousers": ([(0.3, 0.1), (0.7, 0.1), (0.76, 0.92), (0.55, 0.92), (0.5, 0.36), (0.45, 0.92), (0.24, 0.92)],
                 (0.38, 0.24)),
    "skirt": ([(0.34, 0.14), (0.66, 0.14), (0.84, 0.84), (0.16, 0.84)], (0.62, 0.62)),
    "shoes": ([(0.1, 0.42), (0.36, 0.4), (0.56, 0.54), (0.86, 0.6), (0.92, 0.72), (0.08, 0.72)], (0.3, 0.56)),
    "bag": ([(0.2, 0.34), (0.8, 0.34), (0.84, 0.86), (0.16, 0.86)], (0.5, 0.62)),
}


def _logo(d: ImageDraw.ImageDraw, kind: str, x: float, y: float, r: float, fill: tuple) -> None:
    if kind == "circle":
        d.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    elif kind == "square":
        d.rectangle([x - r * 0.85, y - r * 0.85, x + r * 0.85, y + r * 0.85], fill=fill)
    elif kind == "triangle":
        d.polygon([(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)], fill=fill)
    elif kind == "diamond":
        d.polygon([(x, y - r * 1.1), (x + r * 0.8, y), (x, y + r * 1.1), (x - r * 0.8, y)], fill=fill)
    elif kind == "cross":
        d.rectangle([x - r, y - r * 0.32, x + r, y + r * 0.32], fill=fill)
        d.rectangle([x - r * 0.32, y - r, x + r * 0.32, y + r], fill=fill)
    else:                                                        # five-pointed star
        d.polygon([(x + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
                    y - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)], fill=fill)


def render_item(item: dict, size: int) -> Image.Image:
    """The item alone on a transparent ``size`` x ``size`` RGBA canvas (deterministic in ``item``)."""
    outline, (lx, ly) = _SHAPES[item["category"]]
    colour, pc = item["colour"], item["pattern_colour"]
    mask = Image.new("L", (size, size), 0)
    md = ImageDraw.Draw(mask)
    md.polygon([(x * size, y * size) for x, y in outline], fill=255)
    if item["category"] == "bag":                                # handle
        md.arc([0.3 * size, 0.12 * size, 0.7 * size, 0.56 * size], 180, 360, fill=255, width=max(2, size // 24))
    layer = Image.new("RGB", (size, size), colour)
    d = ImageDraw.Draw(layer)
    p, pat = size * 0.1, item["pattern"]
    if pat == "stripes":
        for y in np.arange(0, size, p):
            d.rectangle([0, y, size, y + p * 0.45], fill=pc)
    elif pat == "dots":
        for j, y in enumerate(np.arange(p / 2, size, p)):
            for x in np.arange((j % 2) * p / 2, size + p, p):
                d.ellipse([x - p * 0.22, y - p * 0.22, x + p * 0.22, y + p * 0.22], fill=pc)
    elif pat == "checks":
        for j, y in enumerate(np.arange(0, size, p)):
            for x in np.arange((j % 2) * p, size, 2 * p):
                d.rectangle([x, y, x + p - 1, y + p - 1], fill=pc)
    elif pat == "diagonal":
        for t in np.arange(-size, size, p):
            d.line([t, 0, t + size, size], fill=pc, width=max(1, round(p * 0.35)))
    edge = tuple(int(c * 0.5) for c in colour)
    d.line([(x * size, y * size) for x, y in outline + outline[:1]], fill=edge, width=max(1, size // 64))
    if item["category"] == "shoes":                              # sole
        d.rectangle([0.08 * size, 0.72 * size, 0.92 * size, 0.8 * size], fill=(235, 235, 230))
        md.rectangle([0.08 * size, 0.72 * size, 0.92 * size, 0.8 * size], fill=255)
    elif item["category"] in ("trousers", "skirt"):              # waistband
        top = outline[0][1] * size
        d.rectangle([outline[0][0] * size, top, outline[1][0] * size, top + size * 0.05], fill=edge)
    r = size * 0.065
    d.ellipse([lx * size - r * 1.5, ly * size - r * 1.5, lx * size + r * 1.5, ly * size + r * 1.5], fill=item["badge"])
    _logo(d, item["logo"], lx * size, ly * size, r, item["logo_colour"])
    layer.putalpha(mask)
    return layer


def _make_items(n_items: int, rng: np.random.Generator) -> list[dict]:
    total = len(CATEGORIES) * len(COLOURS) * len(PATTERNS) * len(LOGOS)
    if not 1 <= n_items <= total:
        raise FashionlabError(f"synth retrieval: n_items must be 1..{total} (unique item designs), got {n_items}")
    names, items = list(COLOURS), []
    for code in rng.choice(total, n_items, replace=False).tolist():
        code, cat = divmod(code, len(CATEGORIES))
        code, col = divmod(code, len(COLOURS))
        logo, pat = divmod(code, len(PATTERNS))
        colour = tuple(int(c) for c in np.clip(np.array(COLOURS[names[col]]) + rng.integers(-12, 13, 3), 0, 255))
        light = sum(colour) > 420
        items.append({"category": CATEGORIES[cat], "colour": colour, "pattern": PATTERNS[pat], "logo": LOGOS[logo],
                      "pattern_colour": (40, 40, 40) if light else (235, 235, 228),
                      "badge": (250, 250, 250) if not light or colour[2] > 150 else (25, 25, 25),
                      "logo_colour": pick_colour(rng, [colour, (250, 250, 250), (25, 25, 25)], s=(0.7, 1), v=(0.5, 1))})
    return items


def _lighting(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img, np.float32)
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.75, 1.2) + mean * rng.uniform(0.75, 1.25) + rng.uniform(-12, 12, 3)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def shop_shot(item_img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (size, size), (252, 252, 252))
    sc = rng.uniform(0.9, 1.0)
    s = max(1, round(size * sc))
    off = (size - s) // 2
    item = item_img.resize((s, s), Image.BILINEAR)
    img.paste(item, (off + int(rng.integers(-2, 3)), off + int(rng.integers(-2, 3))), item)
    return img


def consumer_shot(item_img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    base = pick_colour(rng, [(251, 251, 251)], s=(0.1, 0.6), v=(0.25, 0.85), dist=90)
    img = background(rng, size, base, noise=(6, 20))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):                     # clutter
        x, y, w, h = rng.uniform(-0.1, 1.0, 2).tolist() + rng.uniform(0.1, 0.45, 2).tolist()
        box = [x * size, y * size, (x + w) * size, (y + h) * size]
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=fill)
    s = max(1, round(size * rng.uniform(0.6, 1.15)))
    item = item_img.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR).resize((s, s), Image.BILINEAR)
    slack = size - s
    x = int(round(slack / 2 + rng.uniform(-0.12, 0.12) * size))
    y = int(round(slack / 2 + rng.uniform(-0.12, 0.12) * size))
    img.paste(item, (x, y), item)
    return _lighting(img, rng)


def synth_retrieval(out: Path, n_items: int = 60, shop_per_item: int = 2, consumer_per_item: int = 2,
                    size: int = 96, seed: int = 0) -> Path:
    """Write a synthetic consumer-to-shop retrieval set under ``out``; returns ``out``."""
    out = Path(out)
    if shop_per_item < 1 or consumer_per_item < 1 or size < 16:
        raise FashionlabError("synth retrieval: need shop_per_item >= 1, consumer_per_item >= 1, size >= 16")
    items = _make_items(n_items, np.random.default_rng([seed, 404]))
    rows, matches = [], []
    for domain in ("shop", "consumer"):
        (out / "images" / domain).mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(items):
        item_id, art = f"item{i:05d}", render_item(item, size)
        shop_ids = []
        for domain, count, shot in (("shop", shop_per_item, shop_shot), ("consumer", consumer_per_item, consumer_shot)):
            for j in range(count):
                rng = np.random.default_rng([seed, i, j, int(domain == "shop")])
                rel = f"{domain}/{hashlib.md5(f'retrieval/{seed}/{i}/{domain}/{j}'.encode()).hexdigest()[:16]}.jpg"
                save_image(shot(art, size, rng), out / "images" / rel, "JPEG", quality=90)
                rows.append(f"{rel},{item_id},{domain},{item['category']}\n")
                if domain == "shop":
                    shop_ids.append(rel)
                else:
                    matches += [f"{rel},{g}\n" for g in shop_ids]
    with atomic_open(out / "items.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write("image,item_id,domain,category\n")
        fh.writelines(rows)
    with atomic_open(out / "matches.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write("query_id,gallery_id\n")
        fh.writelines(matches)
    write_text(out / "README.txt", "\n".join([
        "Synthetic street-to-shop retrieval (fashionlab.data.synth.retrieval): drawn items, not photos.",
        f"seed: {seed}   items: {n_items}   shop shots per item: {shop_per_item}   "
        f"consumer shots per item: {consumer_per_item}   size: {size}px",
        "Each item = unique (category, colour, pattern, logo). Shop: clean, centred, white background.",
        "Consumer: same item rescaled, shifted/cropped, rotated up to 15 degrees, cluttered coloured background,",
        "brightness/contrast/colour-cast change.",
        "items.csv: image (relative to images/), item_id, domain (shop|consumer), category",
        "matches.csv: query_id (consumer image), gallery_id (a shop image of the same item)",
        f"categories: {', '.join(CATEGORIES)}"]) + "\n")
    return out
