"""Synthetic JD-style multi-label styles: flat-lay tops whose style tags are visible properties.

Each image is one top (torso + two sleeves) on a light, noisy, shaded background, with position,
scale and colour jitter. Every label is tied to something drawn, in four exclusive groups (an image
holds at most one label per group, 1-3 labels in all):

* style:      casual = hood behind the neck + kangaroo pocket; formal = white shirt collar + tie +
              buttons; sporty = contrast stripes down both sleeves + a centre zip;
* pattern:    striped = horizontal stripes; plaid = crossing bands; dotted = polka dots;
              floral = small five-petal flowers; denim = mid-blue with diagonal twill + orange stitching;
* palette:    bright = saturated vivid colour; dark = near-black; pastel = very light, soft colour
              (without a palette label the colour is muted mid-tone);
* silhouette: loose = wide boxy body and wide sleeves; fitted = narrow waist and slim sleeves.

Label frequencies are imbalanced on purpose (the rarest ~30x rarer than the most common); the
counts are written to ``README.txt``. Layout: ``images/<id>.jpg`` and ``labels.csv`` with header
``image,<13 labels>`` of 0/1. The data are synthetic, for demos and tests only.
"""
from __future__ import annotations

import colorsys
import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...errors import FashionlabError
from ...io import atomic_open, save_image, write_text
from .attributes import background, pick_colour, shade

STYLE_LABELS = ["casual", "formal", "sporty", "floral", "striped", "plaid", "dotted", "denim", "bright", "dark",
                "pastel", "loose", "fitted"]
# Exclusive groups with the probability of each member (the rest of the mass = no label of the group).
_GROUPS = [{"casual": 0.40, "formal": 0.06, "sporty": 0.018},
           {"striped": 0.16, "denim": 0.08, "dotted": 0.045, "plaid": 0.025, "floral": 0.013},
           {"dark": 0.30, "bright": 0.13, "pastel": 0.035},
           {"fitted": 0.22, "loose": 0.10}]
_PALETTE = {None: ((0.1, 0.35), (0.45, 0.72)), "bright": ((0.85, 1.0), (0.85, 1.0)),
            "dark": ((0.0, 0.6), (0.08, 0.2)), "pastel": ((0.15, 0.32), (0.9, 1.0))}
# half-widths at shoulder, chest, waist, hem; sleeve half-width
_SHAPE = {None: (0.25, 0.21, 0.2, 0.21, 0.06), "loose": (0.31, 0.3, 0.3, 0.31, 0.085),
          "fitted": (0.23, 0.19, 0.125, 0.18, 0.04)}


def sample_labels(rng: np.random.Generator) -> list[str]:
    """1-3 labels, at most one per group; denim fixes the colour so it takes no palette label."""
    while True:
        picked = []
        for group in _GROUPS:
            r, acc = rng.random(), 0.0
            for name, p in group.items():
                acc += p
                if r < acc:
                    picked.append(name)
                    break
        if "denim" in picked:
            picked = [p for p in picked if p not in _PALETTE]
        if 1 <= len(picked) <= 3:
            return picked


def _hsv(rng: np.random.Generator, h, s, v) -> tuple:
    return tuple(int(255 * x) for x in colorsys.hsv_to_rgb(rng.uniform(*h), rng.uniform(*s), rng.uniform(*v)))


def _pattern(layer: Image.Image, kind: str | None, colour: tuple, rng: np.random.Generator, u: float) -> None:
    """Fill the whole garment layer with ``kind``; ``u`` = pixels per garment unit."""
    d, w = ImageDraw.Draw(layer), layer.size[0]
    light = sum(colour) > 420
    pc = shade(colour, 0.45) if light else (245, 245, 240) if rng.random() < 0.6 else pick_colour(rng, [colour])
    if kind == "striped":
        period = u * rng.uniform(0.07, 0.1)
        for y in np.arange(rng.uniform(0, period), w, period):
            d.rectangle([0, y, w, y + period * 0.4], fill=pc)
    elif kind == "plaid":
        period, c2 = u * rng.uniform(0.1, 0.13), pick_colour(rng, [colour, pc], dist=80)
        for t in np.arange(rng.uniform(0, period), w, period):
            d.rectangle([t, 0, t + period * 0.3, w], fill=pc)
            d.rectangle([0, t, w, t + period * 0.3], fill=pc)
            d.line([t + period * 0.65, 0, t + period * 0.65, w], fill=c2, width=max(1, round(u * 0.012)))
            d.line([0, t + period * 0.65, w, t + period * 0.65], fill=c2, width=max(1, round(u * 0.012)))
    elif kind == "dotted":
        period, r = u * rng.uniform(0.09, 0.11), u * 0.022
        for j, y in enumerate(np.arange(0, w + period, period)):
            for x in np.arange((j % 2) * period / 2, w + period, period):
                d.ellipse([x - r, y - r, x + r, y + r], fill=pc)
    elif kind == "floral":
        petal = pick_colour(rng, [colour], s=(0.6, 1.0), v=(0.7, 1.0), dist=120)
        for _ in range(int(w * w / (u * 0.17) ** 2)):
            x, y, r = rng.uniform(0, w), rng.uniform(0, w), u * rng.uniform(0.022, 0.03)
            for a in np.linspace(0, 2 * math.pi, 6)[:-1]:
                px, py = x + 1.2 * r * math.cos(a), y + 1.2 * r * math.sin(a)
                d.ellipse([px - r, py - r, px + r, py + r], fill=petal)
            d.ellipse([x - r * 0.7, y - r * 0.7, x + r * 0.7, y + r * 0.7], fill=(250, 215, 60))
    elif kind == "denim":
        tw = shade(colour, 1.25)
        for t in np.arange(-w, w, max(2.0, u * 0.03)):
            d.line([t, 0, t + w, w], fill=tw, width=1)


def render_style(labels: list[str], size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one top carrying exactly the visible cues of ``labels``."""
    pattern = next((p for p in ("striped", "plaid", "dotted", "floral", "denim") if p in labels), None)
    palette = next((p for p in ("bright", "dark", "pastel") if p in labels), None)
    fit = next((p for p in ("loose", "fitted") if p in labels), None)
    if pattern == "denim":
        colour = _hsv(rng, (0.57, 0.62), (0.45, 0.65), (0.4, 0.6))
    else:
        colour = _hsv(rng, (0, 1), *_PALETTE[palette])
    bg_col = pick_colour(rng, [colour], s=(0.0, 0.2), v=(0.55, 0.98), dist=70)
    img = background(rng, size, bg_col, noise=(2, 9))
    u = size * rng.uniform(0.82, 0.95)                           # pixels per garment unit
    ox = (size - u) / 2 + rng.uniform(-0.05, 0.05) * size
    oy = (size - u) / 2 + rng.uniform(-0.04, 0.04) * size
    P = lambda pts: [(ox + (0.5 + x) * u, oy + y * u) for x, y in pts]  # noqa: E731
    sh, ch, wa, he, sw = _SHAPE[fit]
    drop = 0.05 if fit == "loose" else 0.0
    body = [(-0.08, 0.1), (0.08, 0.1), (sh, 0.16 + drop), (ch, 0.36), (wa, 0.58), (he, 0.92), (-he, 0.92),
            (-wa, 0.58), (-ch, 0.36), (-sh, 0.16 + drop)]
    ang = math.radians(rng.uniform(35, 55))
    sleeves, axes = [], []
    for k in (-1, 1):
        dx, dy, length = k * math.sin(ang), math.cos(ang), 0.24 if fit == "loose" else 0.26
        nx, ny = k * dy, -k * dx                                 # unit normal towards the sleeve's top edge
        mx, my = k * (sh + ch) / 2, (0.52 + drop) / 2
        ex, ey = mx + dx * length, my + dy * length
        sleeves.append([(k * sh, 0.16 + drop), (ex + nx * sw, ey + ny * sw), (ex - nx * sw, ey - ny * sw),
                        (k * ch, 0.36)])
        axes.append(((mx, my), (ex, ey), (nx, ny)))
    mask = Image.new("L", (size, size), 0)
    md = ImageDraw.Draw(mask)
    for poly in [body] + sleeves:
        md.polygon(P(poly), fill=255)
    layer = Image.new("RGB", (size, size), colour)
    _pattern(layer, pattern, colour, rng, u)
    d = ImageDraw.Draw(img)
    edge = shade(colour, 0.5) if sum(colour) > 150 else (90, 90, 90)
    lw = max(1, round(u * 0.012))
    if "casual" in labels:                                       # hood behind the neck
        d.ellipse(P([(-0.13, 0.0)]) + P([(0.13, 0.2)]), fill=shade(colour, 0.8), outline=edge, width=lw)
    img.paste(layer, (0, 0), mask)
    for poly in [body] + sleeves:
        d.line(P(poly + poly[:1]), fill=edge, width=lw)
    d.ellipse(P([(-0.08, 0.06)]) + P([(0.08, 0.15)]), fill=shade(colour, 0.6))   # inside of the neck
    if "casual" in labels:                                       # kangaroo pocket + drawstrings
        d.polygon(P([(-0.12, 0.6), (0.12, 0.6), (0.16, 0.78), (-0.16, 0.78)]), outline=edge, width=lw)
        for x in (-0.03, 0.03):
            d.line(P([(x, 0.14), (x * 1.3, 0.3)]), fill=(240, 240, 240), width=lw)
    elif "formal" in labels:                                     # shirt collar, tie, buttons
        for k in (-1, 1):
            d.polygon(P([(k * 0.02, 0.13), (k * 0.11, 0.1), (k * 0.09, 0.22)]), fill=(248, 248, 248), outline=edge)
        tie = (130, 20, 30) if colour[0] < 150 else (20, 30, 90)
        d.polygon(P([(-0.025, 0.14), (0.025, 0.14), (0.035, 0.55), (0, 0.6), (-0.035, 0.55)]), fill=tie)
        for y in (0.66, 0.76, 0.86):
            d.ellipse(P([(-0.012, y - 0.012)]) + P([(0.012, y + 0.012)]), fill=(235, 235, 235))
    elif "sporty" in labels:                                     # sleeve stripes + zip
        sc = (250, 250, 250) if sum(colour) < 450 else (230, 30, 30)
        for (mx, my), (ex, ey), (nx, ny) in axes:
            for off in (-0.35 * sw, 0.35 * sw):
                d.line(P([(mx + nx * off, my + ny * off), (ex + nx * off, ey + ny * off)]), fill=sc, width=lw)
        d.line(P([(0, 0.13), (0, 0.92)]), fill=(200, 200, 200), width=lw + 1)
        d.rectangle(P([(-0.015, 0.16)]) + P([(0.015, 0.22)]), fill=(200, 200, 200))
    if pattern == "denim":                                       # orange stitching near the hem
        d.line(P([(-he + 0.02, 0.86), (he - 0.02, 0.86)]), fill=(225, 140, 40), width=1)
    return img


def synth_styles(out: Path, n: int = 600, size: int = 96, seed: int = 0) -> Path:
    """Write a synthetic multi-label styles set under ``out``; returns ``out``."""
    out = Path(out)
    if n < 1 or size < 16:
        raise FashionlabError("synth styles: need n >= 1 and size >= 16")
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, counts = [], dict.fromkeys(STYLE_LABELS, 0)
    for i in range(n):
        rng = np.random.default_rng([seed, i, 5])
        labels = sample_labels(rng)
        name = f"{hashlib.md5(f'styles/{seed}/{i}'.encode()).hexdigest()[:16]}.jpg"
        save_image(render_style(labels, size, rng), out / "images" / name, "JPEG", quality=90)
        for lab in labels:
            counts[lab] += 1
        rows.append(",".join([name] + ["1" if lab in labels else "0" for lab in STYLE_LABELS]) + "\n")
    with atomic_open(out / "labels.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(["image"] + STYLE_LABELS) + "\n")
        fh.writelines(rows)
    nonzero = [c for c in counts.values() if c]
    lines = ["Synthetic JD-style multi-label styles (fashionlab.data.synth.styles): drawn tops, not photos.",
             f"seed: {seed}   images: {n}   size: {size}px   labels per image: 1-3",
             "labels.csv: image (file name under images/), then one 0/1 column per label in this order:",
             "  " + ", ".join(STYLE_LABELS), "",
             "Visible cues: casual=hood+pocket, formal=collar+tie, sporty=sleeve stripes+zip, floral=flowers,",
             "striped=stripes, plaid=crossing bands, dotted=polka dots, denim=blue twill, bright=saturated colour,",
             "dark=near-black, pastel=light soft colour, loose=wide boxy cut, fitted=narrow waist.", "",
             "Label counts (imbalanced on purpose):"]
    lines += [f"  {lab:<8} {counts[lab]}" for lab in sorted(STYLE_LABELS, key=lambda k: -counts[k])]
    if nonzero:
        lines.append(f"most common / rarest (non-zero) = {max(nonzero) / min(nonzero):.1f}")
    write_text(out / "README.txt", "\n".join(lines) + "\n")
    return out
