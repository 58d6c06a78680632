"""Multi-label tags on real photos (``grocery-retrieval/tags.csv``): fashionlab's default vs a frozen probe.

Split per seed s: 20 % of the photos held out, stratified by each photo's rarest tag (drawn with s),
written as ``train.csv`` / ``test.csv`` (``image,<tags>`` of 0/1) beside a link to ``images/``.

Rows, scored by ``fashionlab evaluate styles`` (sample F2, per-label F2):

- **fashionlab default** (``accuracy._fashionlab``): ``train styles --time-budget B --seed s``,
  ``predict styles`` with its defaults, evaluated with the run's own thresholds
  (``RUN/thresholds.json``, tuned on its validation split);
- **frozen probe** (``bench/styles_probe.py``): efficientnet_lite0 features at 224 px, one logistic
  regression per tag; thresholds tuned the same way — on held-out predictions inside the training part
  (3-fold out-of-fold probabilities), with fashionlab's own greedy search — then applied to the test set.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fashionlab import api

from .common import run
from .splits import Split, stratified_indices

BENCH = Path(__file__).resolve().parent
RAREST = 5  # per-label F2 reported for this many rarest tags (by training count)


def tags_split(root: Path, dest: Path, seed: int, fraction: float = 0.2, per_tag: int | None = None) -> Split:
    """``per_tag`` (quick mode): at most that many photos per rarest tag, kept first."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest / "images").symlink_to((root / "images").resolve())
    with open(root / "tags.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], [r for r in rows[1:] if r]
    y = np.array([[int(v) for v in r[1:]] for r in body])
    counts = y.sum(0)
    order = np.argsort(counts, kind="stable")
    strata = [header[1 + next((j for j in order if row[j]), 0)] for row in y]
    if per_tag is not None:
        rng = np.random.default_rng(seed)
        keep: list[int] = []
        for stratum in sorted(set(strata)):
            idx = [i for i, s in enumerate(strata) if s == stratum]
            keep += sorted(rng.choice(idx, min(per_tag, len(idx)), replace=False).tolist())
        body, strata = [body[i] for i in sorted(keep)], [strata[i] for i in sorted(keep)]
    train, test = stratified_indices(strata, fraction, seed)
    for name, idx in (("train.csv", train), ("test.csv", test)):
        with open(dest / name, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(body[i] for i in idx)
    return Split("styles", dest / "train.csv", dest / "test.csv", dest / "test.csv", len(train), len(test))


def _rarest(split: Split, per_label: dict[str, float]) -> dict[str, dict[str, float]]:
    with open(split.train, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    counts = {label: sum(int(r[j]) for r in rows[1:] if r) for j, label in enumerate(rows[0]) if j}
    rare = sorted(counts, key=lambda label: (counts[label], label))[:RAREST]
    return {label: {"train_images": counts[label], "f2": round(per_label[label], 4)} for label in rare}


def score(split: Split, pred: Path, thresholds: Path | None) -> dict[str, Any]:
    at_half = api.evaluate("styles", pred, split.truth)
    tuned = api.evaluate("styles", pred, split.truth, thresholds_path=thresholds) if thresholds else at_half
    return {"value": tuned["f2"], "f2_at_0.5": at_half["f2"], "rarest": _rarest(split, tuned["per_label_f2"])}


def probe_row(split: Split, out: Path, seed: int, quick: bool = False) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    grid = ["--c-grid", "0.03,0.3"] if quick else []
    ran = run([sys.executable, str(BENCH / "styles_probe.py"), "--train", str(split.train), "--test", str(split.test),
               "--seed", str(seed), "--out", str(out), *grid], log=out / "probe.log")
    info = json.loads((out / "info.json").read_text())
    return {**score(split, out / "pred.csv", out / "thresholds.json"), **info, "seconds": round(ran.seconds, 1),
            "peak_rss_mib": round(ran.peak_rss_mib), "command": ran.command}
