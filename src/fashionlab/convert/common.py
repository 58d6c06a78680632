"""Pieces every converter shares: the summary, located errors, DeepFashion list files, image placement.

Errors name the file, the record and the field (``annos/000123.json item2 field 'landmarks': ...``);
they are raised for malformed annotations. Data that is well formed but unusable (a missing image, a
pair without a shop image) is dropped and counted in the summary with its reason instead.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..errors import FashionlabError
from ..io import write_json

SUMMARY_FILE = "convert_summary.json"
IMAGE_MODES = ("link", "copy", "crop")
ANNOTATION_FOLDERS = ("Anno", "Anno_coarse", "Anno_fine", "Eval", "annotations")


def bad(where: str, field_name: str, what: str) -> FashionlabError:
    """One-line error for a malformed record: ``<file> <record> field '<field>': <what>``."""
    return FashionlabError(f"{where} field '{field_name}': {what}")


@dataclass
class Summary:
    """What a conversion wrote and dropped; ``DIR/convert_summary.json`` holds ``as_dict()``."""

    source: str
    from_: str
    to: str
    out: str
    rows: int = 0
    per: dict[str, int] = field(default_factory=dict)  # rows per category / domain / task
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> records
    first_dropped: dict[str, str] = field(default_factory=dict)  # reason -> first record dropped for it
    stats: dict[str, int] = field(default_factory=dict)  # other counts (points cleared, matches, ...)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    _images: set[str] = field(default_factory=set, repr=False)

    @property
    def images(self) -> int:
        """Distinct source images behind the written rows."""
        return len(self._images)

    def row(self, key: str, image: str | Path) -> None:
        self.rows += 1
        self.per[key] = self.per.get(key, 0) + 1
        self._images.add(str(image))

    def drop(self, reason: str, record: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        self.first_dropped.setdefault(reason, record)

    def add(self, stat: str, n: int = 1) -> None:
        self.stats[stat] = self.stats.get(stat, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "from": self.from_, "to": self.to, "out": self.out, "images": self.images,
                "rows": self.rows, "rows_per": dict(sorted(self.per.items())), "dropped": dict(self.dropped),
                "first_dropped": dict(self.first_dropped), "stats": dict(self.stats), "notes": list(self.notes),
                "files": list(self.files)}

    def lines(self) -> list[str]:
        """The summary as short text lines (the CLI prints them)."""
        out = [f"{self.rows} rows from {self.images} images ({self.from_} -> {self.to}) in {self.out}"]
        out += [f"  {key}: {n}" for key, n in sorted(self.per.items())]
        out += [f"  dropped {n}: {reason} (first: {self.first_dropped[reason]})" for reason, n in self.dropped.items()]
        out += [f"  {stat}: {n}" for stat, n in self.stats.items()]
        out += [f"  note: {note}" for note in self.notes]
        return out

    def require_rows(self) -> None:
        """Raise (before the output files are committed) when nothing was converted."""
        if self.rows == 0:
            reasons = "; ".join(f"{n} {reason} (first: {self.first_dropped[reason]})"
                                for reason, n in self.dropped.items()) or "the source has no records"
            raise FashionlabError(f"{self.source}: nothing to write for --to {self.to}: {reasons}")

    def finish(self, out: Path) -> Summary:
        self.files.append(SUMMARY_FILE)
        write_json(out / SUMMARY_FILE, self.as_dict())
        return self


def load_mapping_yaml(path: str | Path) -> Any:
    """A ``--mapping`` file's parsed YAML (an empty file is ``{}``); a missing file or bad YAML is one line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FashionlabError(f"--mapping {path}: no such file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise FashionlabError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None


def load_json(path: Path) -> Any:
    """A whole annotation JSON (the one file a converter may load at once)."""
    if not path.is_file():
        raise FashionlabError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise FashionlabError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise FashionlabError(f"{path}: not UTF-8 text ({exc.reason})") from None


class ListFile:
    """A DeepFashion list file: line 1 the number of rows, line 2 the column names, then one row per line.

    ``rows()`` streams ``(line number, text)``; a declared count that differs from the rows read becomes
    a note (a truncated download shows up there) unless reading stopped early (``limit``).
    """

    def __init__(self, path: Path, first_column: str) -> None:
        if not path.is_file():
            raise FashionlabError(f"{path}: no such file")
        self.path, self.first_column = path, first_column
        self.declared: int | None = None
        self.read = 0

    def rows(self) -> Iterator[tuple[int, str]]:
        try:
            with open(self.path, encoding="utf-8-sig") as handle:
                for number, line in enumerate(handle, start=1):
                    text = line.strip()
                    if number == 1:
                        if not text.isdigit():
                            raise bad(f"{self.path} line 1", "number of rows",
                                      f"'{text[:40]}' is not a count (a DeepFashion list starts with its row count)")
                        self.declared = int(text)
                    elif number == 2:
                        head = text.split()
                        if not head or head[0] != self.first_column:
                            raise bad(f"{self.path} line 2", "column names",
                                      f"expected '{self.first_column} ...', found '{text[:60]}'")
                    elif text:
                        self.read += 1
                        yield number, text
        except UnicodeDecodeError as exc:
            raise FashionlabError(f"{self.path}: not UTF-8 text ({exc.reason})") from None
        if self.declared is None:
            raise FashionlabError(f"{self.path}: empty file (expected a row count, column names, then rows)")

    def check_count(self, summary: Summary) -> None:
        if self.declared is not None and self.declared != self.read:
            summary.notes.append(f"{self.path.name} declares {self.declared} rows on line 1; read {self.read}")


def parse_int(where: str, field_name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad(where, field_name, f"'{text}' is not an integer") from None


def parse_number(where: str, field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad(where, field_name, f"{value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise bad(where, field_name, f"'{value}' is not a number") from None
    if not math.isfinite(number):
        raise bad(where, field_name, f"{value!r} is not a finite number")
    return number


def safe_relative(where: str, field_name: str, name: str) -> str:
    """An image name from an annotation as a relative POSIX path that stays inside its root."""
    rel = name.replace("\\", "/").strip()
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or rel.startswith("/") or re.match(r"^[A-Za-z]:", rel) or ".." in parts:
        raise bad(where, field_name, f"'{name}' is not a relative image path inside the image folder")
    return "/".join(parts)


def parse_splits(split: str | None, valid: tuple[str, ...], source: str) -> set[str] | None:
    """``--split a,b`` -> {"a", "b"}; None or ``all`` -> None (every row)."""
    if split is None or split.strip() == "all":
        return None
    wanted = {s.strip() for s in split.split(",") if s.strip()}
    unknown = sorted(wanted - set(valid))
    if unknown or not wanted:
        raise FashionlabError(f"--split '{split}': {source} splits are {', '.join(valid)} (comma-separated) or all")
    return wanted


def image_size(path: Path) -> tuple[int, int] | None:
    """(W, H) from the image header, or None when the file is missing or unreadable."""
    try:
        with Image.open(path) as img:
            return img.size
    except (FileNotFoundError, UnidentifiedImageError, OSError):
        return None


@dataclass
class Placed:
    """An image made available under the output folder: its offset in the source image and its size."""

    x0: float = 0.0
    y0: float = 0.0
    width: int = 0
    height: int = 0


class ImagePlacer:
    """Puts source images under the output folder: ``link`` (symlink to the absolute source path, the
    default), ``copy``, or ``crop`` (the box plus ``margin`` of its size on each side, as a JPEG)."""

    def __init__(self, out: Path, mode: str = "link", margin: float = 0.1) -> None:
        if mode not in IMAGE_MODES:
            raise FashionlabError(f"image mode '{mode}': expected one of {', '.join(IMAGE_MODES)}")
        if not 0 <= margin <= 2:
            raise FashionlabError(f"--crop-margin {margin}: expected a fraction of the box in [0, 2]")
        self.out, self.mode, self.margin = out, mode, margin

    def place(self, src: Path, rel: str, box: tuple[float, float, float, float] | None = None,
              need_size: bool = False) -> Placed | None:
        """Make ``out/rel`` show ``src`` (cropped to ``box`` = x1, y1, x2, y2 in crop mode). None when the
        source image is missing or unreadable. The size is read only in crop mode or with ``need_size``."""
        if not src.is_file():
            return None
        dest = self.out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.mode == "crop" and box is not None:
            return self._crop(src, dest, box)
        placed = Placed()
        if need_size:
            size = image_size(src)
            if size is None:
                return None
            placed.width, placed.height = size
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
        try:
            if self.mode == "copy":
                shutil.copyfile(src, tmp)
            else:
                os.unlink(tmp)
                os.symlink(src.resolve(), tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return placed

    def _crop(self, src: Path, dest: Path, box: tuple[float, float, float, float]) -> Placed | None:
        try:
            with Image.open(src) as img:
                w, h = img.size
                x1, y1, x2, y2 = box
                mx, my = self.margin * max(x2 - x1, 1.0), self.margin * max(y2 - y1, 1.0)
                x0, y0 = max(0, int(x1 - mx)), max(0, int(y1 - my))
                xe, ye = min(w, round(x2 + mx) + 1), min(h, round(y2 + my) + 1)
                if xe <= x0 or ye <= y0:
                    return None
                crop = img.convert("RGB").crop((x0, y0, xe, ye))
        except (UnidentifiedImageError, OSError):
            return None
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".jpg", dir=dest.parent)
        os.close(fd)
        try:
            crop.save(tmp, "JPEG", quality=95)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Placed(float(x0), float(y0), xe - x0, ye - y0)


def image_mode(copy_images: bool, crop: bool) -> str:
    if copy_images and crop:
        raise FashionlabError("--copy-images and --crop exclude each other (a crop is always a new file)")
    return "crop" if crop else "copy" if copy_images else "link"


def dataset_root(source: Path) -> Path:
    """The release folder: ``source`` itself, or the folder above an ``Anno``/``Eval`` file's folder."""
    base = source if source.is_dir() else source.parent
    return base.parent if base.name in ANNOTATION_FOLDERS else base


def find_file(source: Path, names: tuple[str, ...], what: str, use_source: bool = True) -> Path:
    """``source`` itself when it is a file (and ``use_source``), else the first of ``source/<file name>`` (a
    folder given directly) and ``<release root>/<name>`` that exists."""
    if source.is_file() and use_source:
        return source
    if not source.exists():
        raise FashionlabError(f"{source}: no such file or folder")
    root = dataset_root(source)
    here = [source / Path(n).name for n in names] if source.is_dir() else []
    for path in [*here, *(root / n for n in names)]:
        if path.is_file():
            return path
    raise FashionlabError(f"{source}: no {what} (looked for {', '.join(str(root / n) for n in names)})")


def images_root(source: Path, images: str | Path | None, candidates: tuple[str, ...]) -> Path:
    """``--images`` when given, else the first candidate folder under ``source`` (a folder), else ``source``."""
    if images is not None:
        root = Path(images)
        if not root.is_dir():
            raise FashionlabError(f"--images {images}: no such folder")
        return root
    base = dataset_root(source)
    for name in candidates:
        if (base / name).is_dir():
            return base / name
    return base


def clean_name(text: str) -> str:
    """A label or value name safe inside CSV headers and CLASSES.md lists (no commas, single spaces)."""
    return re.sub(r"\s+", " ", text.replace(",", " /")).strip()


def slug(text: str) -> str:
    """A task name: lower case, runs of other characters -> '_'."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"
