"""Bring your own data: public fashion datasets -> the task formats fashionlab trains on.

``convert(source, from_, to, out, **options)`` runs the converter registered in ``FORMATS`` for
``from_`` and returns a ``Summary`` (also written as ``out/convert_summary.json``). One module per
source; ``targets.py`` writes the task formats, ``maps.py`` holds the landmark tables as data.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FashionlabError
from . import (
    coco_keypoints,
    deepfashion,
    deepfashion2,
    deepfashion_attributes,
    fashionpedia,
)
from .common import Summary

NON_COMMERCIAL = "non-commercial research only"


@dataclass(frozen=True)
class Format:
    name: str
    targets: tuple[str, ...]
    run: Callable[..., None]
    licence: str

    @property
    def options(self) -> tuple[str, ...]:
        skip = {"source", "to", "out", "summary"}
        return tuple(p for p in inspect.signature(self.run).parameters if p not in skip)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("deepfashion2", ("keypoints", "retrieval"), deepfashion2.convert, NON_COMMERCIAL),
    Format("deepfashion-landmark", ("keypoints",), deepfashion.convert_landmarks, NON_COMMERCIAL),
    Format("deepfashion-inshop", ("retrieval",), deepfashion.convert_inshop, NON_COMMERCIAL),
    Format("deepfashion-c2s", ("retrieval",), deepfashion.convert_c2s, NON_COMMERCIAL),
    Format("deepfashion-attributes", ("styles", "attributes"), deepfashion_attributes.convert, NON_COMMERCIAL),
    Format("fashionpedia", ("styles", "attributes"), fashionpedia.convert,
           "annotations CC BY 4.0; images under their own licences"),
    Format("coco-keypoints", ("keypoints",), coco_keypoints.convert, "that of the source"),
)}


def convert(source: str | Path, from_: str, to: str, out: str | Path, **options: Any) -> Summary:
    """Convert ``source`` (format ``from_``) to task ``to`` under ``out``; options left as None are ignored."""
    fmt = FORMATS.get(from_)
    if fmt is None:
        raise FashionlabError(f"--from '{from_}': unknown format; formats: {', '.join(FORMATS)}")
    if to not in fmt.targets:
        raise FashionlabError(f"--to '{to}': {from_} converts to {' or '.join(fmt.targets)}")
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(fmt.options))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        takes = ", ".join("--" + k.replace("_", "-") for k in fmt.options)
        raise FashionlabError(f"{flags}: not an option of --from {from_} (it takes {takes})")
    if given.get("limit") is not None and given["limit"] < 1:
        raise FashionlabError(f"--limit {given['limit']}: expected at least 1")
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FashionlabError(f"{source}: no such file or folder")
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(str(source), from_, to, str(out))
    fmt.run(source, to, out, summary, **given)
    summary.notes.append(f"licence of the source data: {fmt.licence}")
    return summary.finish(out)


__all__ = ["FORMATS", "Format", "Summary", "convert"]
