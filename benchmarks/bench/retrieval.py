"""Street-to-shop search on real photos (``grocery-retrieval``): fashionlab's default vs frozen features.

Split per seed s: a seeded 20 % of the products (items with both in-store and catalogue photos) are held
out. Training sees only the other products' rows. Test: the held-out products' in-store photos are the
queries, and the gallery is EVERY catalogue photo (the trained products' ones are distractors, as in a
real shop). The split is written as items CSVs beside a link to the release's ``images/``:

- ``train.csv`` (``fashionlab train retrieval --data``), ``gallery.csv`` (all shop rows),
  ``queries.csv`` (held-out consumer rows), ``matches.csv`` (held-out queries -> their catalogue photo).

Rows, each scored by ``fashionlab evaluate retrieval``'s function (mAP@10, recall@k):

- **fashionlab default**: ``train retrieval --time-budget B --seed s``, ``index retrieval``, ``search
  retrieval`` with their defaults;
- **frozen probe** (``bench/retrieval_probe.py``): global-pooled efficientnet_lite0 ImageNet features at
  224 px, cosine similarity, no training.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fashionlab import api

from .common import fashionlab, run
from .splits import Split

BENCH = Path(__file__).resolve().parent


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict[str, str]], header: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def retrieval_split(root: Path, dest: Path, seed: int, fraction: float = 0.2,
                    per_item: int | None = None) -> Split:
    """Hold out a seeded ``fraction`` of the products; ``per_item`` caps each product's in-store photos
    (quick mode). ``Split.test`` is the queries CSV; the gallery is ``dest/gallery.csv``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest / "images").symlink_to((root / "images").resolve())
    rows = _read(root / "items.csv")
    header = list(rows[0])
    domains: dict[str, set[str]] = {}
    for r in rows:
        domains.setdefault(r["item_id"], set()).add(r["domain"])
    eligible = sorted(i for i, d in domains.items() if d >= {"shop", "consumer"})
    order = np.random.default_rng(seed).permutation(len(eligible))
    held = {eligible[j] for j in order[:max(1, round(len(eligible) * fraction))]}
    if per_item is not None:
        rng = np.random.default_rng(seed)
        keep: list[dict[str, str]] = []
        for item in sorted(domains):
            consumer = [r for r in rows if r["item_id"] == item and r["domain"] == "consumer"]
            picked = sorted(rng.choice(len(consumer), min(per_item, len(consumer)), replace=False).tolist())
            keep += [r for r in rows if r["item_id"] == item and r["domain"] == "shop"] + [consumer[i] for i in picked]
        rows = keep
    train = [r for r in rows if r["item_id"] not in held]
    gallery = [r for r in rows if r["domain"] == "shop"]
    queries = [r for r in rows if r["item_id"] in held and r["domain"] == "consumer"]
    shop_of = {r["item_id"]: r["image"] for r in gallery}
    _write(dest / "train.csv", train, header)
    _write(dest / "gallery.csv", gallery, header)
    _write(dest / "queries.csv", queries, header)
    (dest / "matches.csv").write_text("query_id,gallery_id\n" + "".join(
        f"{r['image']},{shop_of[r['item_id']]}\n" for r in queries))
    (dest / "held_out.json").write_text(json.dumps(sorted(held), indent=1) + "\n")
    return Split("retrieval", dest / "train.csv", dest / "queries.csv", dest / "matches.csv", len(train), len(queries))


def score(ranks: Path, truth: Path) -> dict[str, Any]:
    scores = api.evaluate("retrieval", ranks, truth)
    return {"value": scores["map@10"], **{k: scores[k] for k in scores if k.startswith("recall")}}


def index_and_search(weights: Path, gallery: Path, queries: Path, truth: Path, out: Path) -> dict[str, Any]:
    """``fashionlab index`` the gallery with ``weights`` into OUT/index, ``search`` the queries into
    OUT/ranks.csv, score it against ``truth``: the fields of a row that the search sets."""
    indexed = run(fashionlab("index", "retrieval", "--weights", str(weights), "--gallery", str(gallery),
                             "--out", str(out / "index")), log=out / "index.log")
    searched = run(fashionlab("search", "retrieval", "--index", str(out / "index"), "--query", str(queries),
                              "--out", str(out / "ranks.csv")), log=out / "search.log")
    return {**score(out / "ranks.csv", truth), "index_s": round(indexed.seconds, 1),
            "search_s": round(searched.seconds, 1), "predict_command": f"{indexed.command} && {searched.command}"}


def fashionlab_row(split: Split, out: Path, budget: float, seed: int, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``extra``: options added to the train command (the README's ablation rows)."""
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    train = run(fashionlab("train", "retrieval", "--exist-ok", "--data", str(split.train), "--out", str(run_dir),
                           "--time-budget", str(budget), "--seed", str(seed), *extra), log=out / "train.log")
    searched = index_and_search(run_dir / "weights" / "best.pt", split.test.parent / "gallery.csv", split.test,
                                split.truth, out)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    imgsz = yaml.safe_load((run_dir / "config.yaml").read_text())["imgsz"]
    return {**searched, "imgsz": imgsz, "test_imgsz": imgsz, "val_map@10": metrics.get("map@10"),
            "seconds": round(train.seconds, 1), "peak_rss_mib": round(train.peak_rss_mib), "command": train.command}


def search_again(split: Split, out: Path) -> dict[str, Any]:
    """Index + search a stored fashionlab run's weights (OUT/run/weights/best.pt) again: the fields of the
    row that the search sets."""
    weights = out / "run" / "weights" / "best.pt"
    if not weights.is_file():
        raise SystemExit(f"{weights}: not found; --search-again needs the stored runs' work folder (--work)")
    shutil.rmtree(out / "index", ignore_errors=True)
    return index_and_search(weights, split.test.parent / "gallery.csv", split.test, split.truth, out)


def probe_row(split: Split, out: Path, seed: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    ran = run([sys.executable, str(BENCH / "retrieval_probe.py"), "--gallery", str(split.test.parent / "gallery.csv"),
               "--query", str(split.test), "--out", str(out / "ranks.csv")], log=out / "probe.log")
    return {**score(out / "ranks.csv", split.truth), "seconds": round(ran.seconds, 1),
            "peak_rss_mib": round(ran.peak_rss_mib), "command": ran.command}
