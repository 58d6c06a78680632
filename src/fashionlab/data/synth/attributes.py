"""Synthetic FashionAI attributes: crude dressed figures whose tag is visible in the drawing.

Each image shows a front-facing figure (head, skin-coloured arms and legs, shoes) wearing a top
(torso trapezoid, sleeves as rotated rectangles) and a skirt (trapezoid) or trousers (two legs),
for coats also a coat over them, on a noisy, gradient-shaded background. Colours, skin tone,
position and scale are jittered; the labelled cue stays clearly visible:

* length tasks (skirt / coat / pant / sleeve): the hem, leg or sleeve ends at a height (or a
  fraction of the arm) that grows with the class index (value order = length order);
* design tasks (collar / lapel / neck / neckline): a bust close-up with the part drawn in a
  distinct shape (V, square, round cut-outs; shirt, Peter Pan, puritan, rib collars; notched or
  shawl lapels; turtle, ruffle, draped necks);
* "Invisible": the view is cropped so that the part is out of frame.

The layout is the FashionAI release's: ``Images/<task>/<id>.jpg`` and ``Annotations/label.csv``
(no header; ``path,task,letters`` with one 'y', optionally one 'm' on an adjacent value).
The data are synthetic, for demos and tests only.
"""
from __future__ import annotations

import colorsys
import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ...errors import FashionlabError
from ...io import atomic_open, save_image, write_text

ATTRIBUTE_TASKS: dict[str, list[str]] = {
    "skirt_length_labels": ["Invisible", "Short Length", "Knee Length", "Midi Length", "Ankle Length",
                            "Floor Length"],
    "coat_length_labels": ["Invisible", "High Waist Length", "Regular Length", "Long Length", "Micro Length",
                           "Knee Length", "Midi Length", "Ankle&Floor Length"],
    "pant_length_labels": ["Invisible", "Short Pant", "Mid Length", "3/4 Length", "Cropped Pant", "Full Length"],
    "sleeve_length_labels": ["Invisible", "Sleeveless", "Cup Sleeves", "Short Sleeves", "Elbow Sleeves",
                             "3/4 Sleeves", "Wrist Length", "Long Sleeves", "Extra Long Sleeves"],
    "collar_design_labels": ["Invisible", "Shirt Collar", "Peter Pan", "Puritan Collar", "Rib Collar"],
    "lapel_design_labels": ["Invisible", "Notched", "Collarless", "Shawl Collar", "Plus Size Shawl"],
    "neck_design_labels": ["Invisible", "Turtle Neck", "Ruffle Semi-High Collar", "Low Turtle Neck",
                           "Draped Collar"],
    "neckline_design_labels": ["Invisible", "Strapless Neck", "Deep V Neckline", "Straight Neck", "V Neckline",
                               "Square Neckline", "Off Shoulder", "Round Neckline", "Sweat Heart Neck",
                               "One Shoulder Neckline"],
}
DEFAULT_TASKS = ("skirt_length_labels", "sleeve_length_labels", "pant_length_labels")

# Figure coordinates: height 1 (head top 0, soles 1), x = 0 on the body's axis.
# Hem heights / sleeve fractions of the arm per value; index order is length order, [0] = Invisible.
_SKIRT_HEM = [0.0, 0.58, 0.70, 0.80, 0.91, 0.995]
_COAT_HEM = [0.0, 0.37, 0.49, 0.56, 0.63, 0.72, 0.82, 0.95]
_PANT_HEM = [0.0, 0.585, 0.67, 0.77, 0.86, 0.95]
_SLEEVE = [0.0, 0.0, 0.1, 0.26, 0.44, 0.62, 0.8, 0.96, 1.15]
_ARM = 0.36                                  # shoulder joint -> wrist
# Views (figure y range shown); "Invisible" uses a crop that leaves the part out of frame.
_FULL, _ARMS, _BUST = (-0.02, 1.02), (0.0, 0.62), (0.02, 0.44)
_HIDE = {"skirt": (0.0, 0.36), "pant": (0.0, 0.36), "coat": (0.0, 0.29), "sleeve": (0.66, 1.02),
         "design": (0.52, 1.02)}
_SKIN = [(241, 194, 160), (224, 172, 130), (198, 134, 95), (141, 85, 54), (95, 60, 40)]
_HAIR = [(35, 25, 18), (90, 58, 30), (200, 165, 90), (15, 15, 15), (120, 40, 20)]
_TOP_EDGE = [(-0.13, 0.165), (-0.035, 0.15), (0.035, 0.15), (0.13, 0.165)]
_STRAPLESS_EDGE = {1: [(-0.11, 0.235), (0.11, 0.235)],                 # strapless, sweetheart, one shoulder
                   8: [(-0.11, 0.235), (-0.075, 0.2), (-0.035, 0.205), (0, 0.24), (0.035, 0.205), (0.075, 0.2),
                       (0.11, 0.235)],
                   9: [(-0.13, 0.165), (-0.06, 0.165), (0.11, 0.25)]}


def pick_colour(rng: np.random.Generator, avoid: list, s=(0.45, 1.0), v=(0.3, 0.95), dist=110.0) -> tuple:
    """A random colour at least ``dist`` (RGB Euclidean) away from every colour in ``avoid``."""
    best, best_d = (0, 0, 0), -1.0
    for _ in range(60):
        c = tuple(int(255 * x) for x in colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v)))
        d = min((math.dist(c, a) for a in avoid), default=1e9)
        if d >= dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def shade(c: tuple, f: float) -> tuple:
    return tuple(int(min(255, max(0, x * f + (40 if f > 1 else 0)))) for x in c)


def background(rng: np.random.Generator, size: int, base: tuple, noise: tuple = (3, 16)) -> Image.Image:
    """Base colour with a smooth corner-to-corner shading and uniform pixel noise (strength varies)."""
    corners = np.clip(np.asarray(base, np.int16) + rng.integers(-20, 21, (2, 2, 3)), 0, 255).astype(np.uint8)
    grad = np.asarray(Image.fromarray(corners, "RGB").resize((size, size), Image.BILINEAR), np.int16)
    amp = int(rng.integers(*noise))
    grad = grad + rng.integers(-amp, amp + 1, (size, size, 1), dtype=np.int16)
    return Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8), "RGB")


class _Pen:
    """Draws figure-coordinate shapes onto a PIL canvas (scale ``s`` px per figure height)."""

    def __init__(self, img: Image.Image, view: tuple, rng: np.random.Generator):
        size = img.size[0]
        self.d = ImageDraw.Draw(img)
        self.s = size * 0.94 / (view[1] - view[0]) * rng.uniform(0.93, 1.03)
        self.cx = size / 2 + rng.uniform(-0.06, 0.06) * size
        self.oy = size * 0.03 - view[0] * self.s + rng.uniform(-0.025, 0.025) * size

    def p(self, pts) -> list:
        return [(self.cx + x * self.s, self.oy + y * self.s) for x, y in pts]

    def poly(self, pts, fill, outline=None) -> None:
        self.d.polygon(self.p(pts), fill=fill, outline=outline)

    def ell(self, x, y, rx, ry, fill=None, outline=None, width=1) -> None:
        (X, Y), = self.p([(x, y)])
        self.d.ellipse([X - rx * self.s, Y - ry * self.s, X + rx * self.s, Y + ry * self.s], fill=fill,
                       outline=outline, width=width)

    def line(self, pts, fill, w=0.006) -> None:
        self.d.line(self.p(pts), fill=fill, width=max(1, round(w * self.s)))

    def bar(self, x, y, angle, length, hw, fill) -> None:
        """Rectangle from (x, y) along ``angle`` (radians from straight down, + = towards +x)."""
        dx, dy = math.sin(angle), math.cos(angle)
        ex, ey = x + dx * length, y + dy * length
        self.poly([(x - dy * hw, y + dx * hw), (x + dy * hw, y - dx * hw), (ex + dy * hw, ey - dx * hw),
                   (ex - dy * hw, ey + dx * hw)], fill)


def _mirror(pts) -> list:
    return [(-x, y) for x, y in reversed(pts)]


def _torso(pen: _Pen, colour, hem: float, edge=_TOP_EDGE, wide: float = 0.0) -> None:
    side = [(0.11 + wide, 0.26), (0.092 + wide, 0.42), (0.1 + wide + max(0.0, hem - 0.45) * 0.12, hem)]
    pen.poly(edge + side + _mirror(side), colour)


def _design(pen: _Pen, task: str, v: int, c: tuple, skin: tuple) -> None:
    """The visible cue of a design task, drawn over a top of colour ``c`` (bust view)."""
    dark, light = shade(c, 0.55), shade(c, 1.35)
    if task == "neckline_design_labels":
        cut = {2: [(-0.05, 0.151), (0.05, 0.151), (0, 0.33)], 4: [(-0.045, 0.151), (0.045, 0.151), (0, 0.235)],
               3: [(-0.1, 0.15), (0.1, 0.15), (0.1, 0.18), (-0.1, 0.18)],
               5: [(-0.055, 0.15), (0.055, 0.15), (0.055, 0.225), (-0.055, 0.225)]}.get(v)
        if cut:
            pen.poly(cut, skin)
        elif v == 7:
            pen.ell(0, 0.15, 0.058, 0.058, skin)
        elif v == 6:                                             # bare shoulders, band over the upper arms
            pen.poly([(-0.15, 0.15), (0.15, 0.15), (0.15, 0.2), (-0.15, 0.2)], skin)
            pen.line([(-0.165, 0.205), (0.165, 0.205)], dark, 0.014)
    elif task == "collar_design_labels":
        if v == 1:                                               # pointed flaps + placket
            flap = [(-0.042, 0.132), (-0.075, 0.17), (-0.02, 0.22), (0, 0.168)]
            for pts in (flap, [(-x, y) for x, y in flap]):
                pen.poly(pts, light, dark)
            pen.line([(0, 0.2), (0, 0.44)], dark)
            for y in (0.26, 0.32, 0.38):
                pen.ell(0, y, 0.008, 0.008, dark)
        elif v == 2:                                             # two round flat lobes
            for k in (-1, 1):
                pen.ell(k * 0.042, 0.178, 0.046, 0.034, light, dark)
            pen.poly([(-0.02, 0.15), (0.02, 0.15), (0, 0.175)], skin)
        elif v == 3:                                             # large flat collar over the shoulders
            pen.ell(0, 0.175, 0.135, 0.08, light, dark)
            pen.ell(0, 0.148, 0.036, 0.028, skin)
        elif v == 4:                                             # ribbed band round the neck
            pen.poly([(-0.042, 0.125), (0.042, 0.125), (0.042, 0.165), (-0.042, 0.165)], light)
            for i in range(9):
                x = -0.036 + 0.009 * i
                pen.line([(x, 0.127), (x, 0.163)], dark, 0.003)
    elif task == "lapel_design_labels":
        pen.poly([(-0.05, 0.15), (0.05, 0.15), (0, 0.33)], (238, 238, 232))   # shirt in the V
        for k in (-1, 1):
            if v == 1:                                           # notched: collar tip, notch, lapel peak
                pts = [(-0.045, 0.148), (-0.088, 0.175), (-0.068, 0.195), (-0.105, 0.205), (-0.008, 0.33),
                       (-0.03, 0.2)]
            elif v == 2:
                pts = []
                pen.line([(k * 0.05, 0.15), (0, 0.33)], dark, 0.008)
            else:                                                # shawl: one smooth rolled band
                w = 0.045 if v == 3 else 0.085
                pts = [(-0.045 - w * math.sin(math.pi * t) - 0.02 * t, 0.148 + 0.182 * t) for t in np.linspace(0, 1, 9)]
                pts += [(-0.05 * (1 - t), 0.15 + 0.18 * t) for t in np.linspace(1, 0, 5)]
            if pts:
                pen.poly([(x if k < 0 else -x, y) for x, y in pts], dark, shade(c, 0.3))
        for y in (0.37, 0.41):
            pen.ell(0, y, 0.009, 0.009, shade(c, 0.3))
    elif task == "neck_design_labels":
        if v in (1, 3):                                          # turtle (tall) / low turtle (short) tube
            top = 0.09 if v == 1 else 0.137
            pen.poly([(-0.042, top), (0.042, top), (0.042, 0.165), (-0.042, 0.165)], c, dark)
            for y in np.arange(top + 0.015, 0.16, 0.016):
                pen.line([(-0.04, y), (0.04, y)], dark, 0.004)
        elif v == 2:                                             # semi-high band with a ruffled top
            pen.poly([(-0.046, 0.128), (0.046, 0.128), (0.046, 0.165), (-0.046, 0.165)], light, dark)
            for x in np.linspace(-0.04, 0.04, 6):
                pen.ell(x, 0.126, 0.011, 0.011, light, dark)
        elif v == 4:                                             # cowl: deep U with drape folds
            pen.ell(0, 0.14, 0.06, 0.07, skin)
            for rx, ry in ((0.06, 0.08), (0.075, 0.1), (0.09, 0.125)):
                (X, Y), = pen.p([(0, 0.14)])
                pen.d.arc([X - rx * pen.s, Y - ry * pen.s, X + rx * pen.s, Y + ry * pen.s], 15, 165, fill=dark,
                          width=max(1, round(0.007 * pen.s)))


def render_attribute(task: str, value: int, size: int, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Draw one image of ``task`` with true value index ``value``; info names the labelled garment colour."""
    kind = task.split("_")[0]
    kind = kind if kind in ("skirt", "coat", "pant", "sleeve") else "design"
    skin = tuple(int(x) for x in np.clip(np.array(_SKIN[rng.integers(len(_SKIN))]) + rng.integers(-12, 13, 3), 0, 255))
    bg = pick_colour(rng, [skin], s=(0.0, 0.35), v=(0.55, 1.0), dist=60) if rng.random() < 0.8 else \
        pick_colour(rng, [skin], s=(0.1, 0.5), v=(0.15, 0.35), dist=60)
    hair = _HAIR[rng.integers(len(_HAIR))]
    shoe = shade(_HAIR[rng.integers(len(_HAIR))], 0.8)
    used = [skin, bg, hair, shoe, (25, 25, 25)]
    top = pick_colour(rng, used); used.append(top)
    bottom = pick_colour(rng, used); used.append(bottom)
    coat = pick_colour(rng, used) if kind == "coat" else None
    view = _HIDE[kind] if value == 0 else {"design": _BUST, "sleeve": _ARMS}.get(kind, _FULL)
    img = background(rng, size, bg)
    pen = _Pen(img, view, rng)
    sleeve = _SLEEVE[value] if kind == "sleeve" and value else _SLEEVE[int(rng.integers(1, 9))]
    trousers = kind == "pant" or (kind not in ("skirt",) and rng.random() < 0.5)
    hem = {"skirt": _SKIRT_HEM, "pant": _PANT_HEM}[kind][value] if kind in ("skirt", "pant") and value else \
        float(rng.choice(_PANT_HEM[1:] if trousers else _SKIRT_HEM[1:]))
    edge, strap = _TOP_EDGE, True
    if task == "neckline_design_labels" and value in (1, 8, 9):
        edge = _STRAPLESS_EDGE[value]
        sleeve, strap = 0.0, False
    if task == "neckline_design_labels" and value == 6:
        sleeve = max(sleeve, 0.26)
    for k in (-1, 1):                                            # legs, shoes
        pen.poly([(k * 0.012, 0.54), (k * 0.1, 0.5), (k * 0.06, 0.95), (k * 0.028, 0.95)], skin)
        pen.ell(k * 0.05, 0.972, 0.036, 0.02, shoe)
    if trousers:
        for k in (-1, 1):
            out_x, in_x = 0.108 - 0.04 * (hem - 0.5) / 0.45, 0.004 + 0.016 * (hem - 0.54) / 0.41
            pen.poly([(0, 0.42), (k * 0.095, 0.42), (k * 0.108, 0.5), (k * out_x, hem), (k * in_x, hem), (0, 0.54)],
                     bottom)
    else:
        w = 0.092 + 0.3 * (hem - 0.42)
        pen.poly([(-0.092, 0.42), (0.092, 0.42), (w, hem), (-w, hem)], bottom)
    pen.line([(-0.095, 0.425), (0.095, 0.425)], shade(bottom, 0.6), 0.008)
    angle = rng.uniform(0.14, 0.3)
    for k in (-1, 1):                                            # arms, hands, neck, head, shoulders
        pen.bar(k * 0.12, 0.175, k * angle, _ARM, 0.026, skin)
        pen.ell(k * (0.12 + (_ARM + 0.025) * math.sin(angle)), 0.175 + (_ARM + 0.025) * math.cos(angle),
                0.03, 0.035, skin)
    pen.poly([(-0.03, 0.1), (0.03, 0.1), (0.03, 0.17), (-0.03, 0.17)], skin)
    pen.poly(_TOP_EDGE + [(0.11, 0.27), (-0.11, 0.27)], skin)
    pen.ell(0, 0.065, 0.058, 0.063, skin)
    pen.d.chord([pen.cx - 0.062 * pen.s, pen.oy, pen.cx + 0.062 * pen.s, pen.oy + 0.12 * pen.s], 180, 360,
                fill=hair)
    _torso(pen, top, 0.46, edge)
    if strap and task not in ("neckline_design_labels", "neck_design_labels", "collar_design_labels"):
        pen.ell(0, 0.15, 0.04, 0.03, skin)
    for k in (-1, 1):
        if sleeve > 0:
            start = 0.04 if task == "neckline_design_labels" and value == 6 else 0.0
            pen.bar(k * (0.12 + start * math.sin(angle)), 0.17 + start, k * angle, _ARM * sleeve - start, 0.037, top)
    if kind == "coat":
        chem = _COAT_HEM[value] if value else 0.8
        _torso(pen, coat, chem, [(-0.14, 0.16), (-0.04, 0.145), (0.04, 0.145), (0.14, 0.16)], wide=0.014)
        pen.poly([(-0.04, 0.145), (0.04, 0.145), (0, 0.26)], top)
        pen.line([(0, 0.26), (0, chem)], shade(coat, 0.5), 0.006)
        for k in (-1, 1):
            pen.bar(k * 0.125, 0.168, k * angle, _ARM * 0.97, 0.042, coat)
    if kind == "design" and value:
        if task == "lapel_design_labels":
            for k in (-1, 1):
                pen.bar(k * 0.12, 0.17, k * angle, _ARM * 0.97, 0.04, top)
        _design(pen, task, value, top, skin)
    return img, {"garment": {"skirt": bottom, "pant": bottom, "coat": coat}.get(kind, top), "background": bg}


def _neighbours(v: int, k: int) -> list[int]:
    return [u for u in (v - 1, v + 1) if 1 <= u < k]


def synth_attributes(out: Path, n_per_task: int = 120, size: int = 96, tasks: Sequence[str] | None = None,
                     maybe_fraction: float = 0.08, seed: int = 0) -> Path:
    """Write a synthetic FashionAI attributes release under ``out``; returns ``out``."""
    out = Path(out)
    tasks = [tasks] if isinstance(tasks, str) else list(DEFAULT_TASKS if tasks is None else tasks)
    unknown = [t for t in tasks if t not in ATTRIBUTE_TASKS]
    if unknown:
        raise FashionlabError(f"unknown attribute task(s) {unknown}; valid: {', '.join(ATTRIBUTE_TASKS)}")
    if n_per_task < 1 or size < 16 or not 0.0 <= maybe_fraction <= 1.0:
        raise FashionlabError("synth attributes: need n_per_task >= 1, size >= 16, 0 <= maybe_fraction <= 1")
    rows: list[str] = []
    for task in tasks:
        tid = list(ATTRIBUTE_TASKS).index(task)
        k = len(ATTRIBUTE_TASKS[task])
        (out / "Images" / task).mkdir(parents=True, exist_ok=True)
        values = np.random.default_rng([seed, tid, 7919]).permutation(np.arange(n_per_task) % k)
        p_maybe = min(1.0, maybe_fraction * k / max(1, k - 1))   # only rows with a neighbour can hold an 'm'
        for i, v in enumerate(values.tolist()):
            rng = np.random.default_rng([seed, tid, i])
            img, _ = render_attribute(task, v, size, rng)
            rel = f"Images/{task}/{hashlib.md5(f'{seed}/{task}/{i}'.encode()).hexdigest()}.jpg"
            save_image(img, out / rel, "JPEG", quality=90)
            letters = ["n"] * k
            letters[v] = "y"
            near = _neighbours(v, k)
            if v > 0 and near and rng.random() < p_maybe:
                letters[near[int(rng.integers(len(near)))]] = "m"
            rows.append(f"{rel},{task},{''.join(letters)}\n")
    with atomic_open(out / "Annotations" / "label.csv", "w", encoding="utf-8", newline="") as fh:
        fh.writelines(rows)
    lines = ["Synthetic FashionAI attributes (fashionlab.data.synth.attributes): drawn figures, not photos.",
             f"seed: {seed}   images per task: {n_per_task}   size: {size}px   maybe_fraction: {maybe_fraction}",
             "Annotations/label.csv: image,task,letters (no header); letter i refers to value i below.", ""]
    lines += [f"{t} letter order: {', '.join(ATTRIBUTE_TASKS[t])}" for t in tasks]
    write_text(out / "README.txt", "\n".join(lines) + "\n")
    return out
