"""Screening of batch re-ranking for retrieval search on cached embeddings (grocery-retrieval splits).

    python benchmarks/retrieval_rerank_lab.py embed SPLIT_DIR WEIGHTS OUT.npz [--probe]
    python benchmarks/retrieval_rerank_lab.py score A.npz B.npz ... [--per-product N --draws 20]

``embed`` stores the gallery and query embeddings (the product's own embed_fused, flip TTA) and, with
``--probe``, the frozen probe's features; ``score`` prints mAP@10 of each re-ranking variant per cache
(mean ± sd over the caches, then each cache). ``--per-product N``: batches of N random queries per
product (``--draws`` batches per cache, averaged): how batch re-ranking behaves when the batch holds
few photos of each product.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

from fashionlab.tasks.retrieval.data import read_images  # noqa: E402
from fashionlab.tasks.retrieval.embed import embed_fused, load_models  # noqa: E402
from fashionlab.tasks.retrieval.metric import map_at_k  # noqa: E402
from fashionlab.tasks.retrieval.rerank import _normalise, expand_queries, k_reciprocal_distance  # noqa: E402


def embed(split: Path, weights: Path, out: Path, probe: bool) -> None:
    gallery, queries = read_images(split / "gallery.csv", "gallery"), read_images(split / "queries.csv", "query")
    models = load_models([weights])
    arrays = {"G": embed_fused(models, gallery.paths), "Q": embed_fused(models, queries.paths),
              "gids": np.array(gallery.ids), "qids": np.array(queries.ids),
              # the frozen copy's share of the embedding: its last dims (0 without a copy)
              "frozen_dims": np.array(models[0].net.frozen.channels if models[0].net.frozen is not None else 0)}
    if probe:
        import torch
        from probe import features
        torch.set_grad_enabled(False)
        for key, table in (("PG", gallery), ("PQ", queries)):
            f = features(table.paths, 224, False)
            arrays[key] = (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)
    matches: dict[str, str] = dict(line.split(",") for line in (split / "matches.csv").read_text().splitlines()[1:])
    arrays["truth"] = np.array([matches[q] for q in queries.ids])
    np.savez(out, **arrays)


def query_expansion(q: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """The product's expansion without its gate (every one of the k neighbours counts)."""
    return expand_queries(q, None, k, alpha)


def gallery_expansion(q: np.ndarray, g: np.ndarray, k: int, alpha: float) -> np.ndarray:
    sims = q @ g.T
    nn = np.argsort(-sims, axis=1)[:, :k]
    w = np.clip(np.take_along_axis(sims, nn, 1), 0, None) ** alpha
    return _normalise(q + (w[:, :, None] * g[nn]).sum(1))


def dual_softmax(s: np.ndarray, t: float) -> np.ndarray:
    z = s / t
    col = np.exp(z - z.max(0, keepdims=True))
    return s * col / col.sum(0, keepdims=True)


def score_sims(sims: np.ndarray, qids, gids, truth) -> float:
    order = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    ranks = {q: [gids[j] for j in row] for q, row in zip(qids, order)}
    return map_at_k(ranks, {q: {t} for q, t in zip(qids, truth)})["map@10"]


def gated(q: np.ndarray, g: np.ndarray, k: int = 10) -> np.ndarray:
    """The product's default (``search --rerank qe``)."""
    return expand_queries(q, (q @ g.T).max(1), k)


def variants(q: np.ndarray, g: np.ndarray, full: bool = True) -> dict[str, np.ndarray]:
    out = {"none": q @ g.T, "qe (default: k10 a3, gated)": gated(q, g) @ g.T}
    if not full:
        return out
    out["qe k20 gated"] = gated(q, g, 20) @ g.T
    for k in (5, 10, 20, 40):
        out[f"qe k{k} a3 ungated"] = query_expansion(q, k, 3.0) @ g.T
    for k in (1, 2):
        out[f"gallery-qe k{k}"] = gallery_expansion(q, g, k, 3.0) @ g.T
    for t in (0.05, 0.1):
        out[f"dual-softmax t{t}"] = dual_softmax(q @ g.T, t)
    for k1, k2, lam in ((20, 6, 0.3), (10, 3, 0.3), (20, 6, 0.6)):
        out[f"k-reciprocal {k1}/{k2}/{lam}"] = -k_reciprocal_distance(q, g, k1, k2, lam)
    return out


def _batches(truth: np.ndarray, per_product: int | None, draws: int) -> list[np.ndarray]:
    if per_product is None:
        return [np.arange(len(truth))]
    rng = np.random.default_rng(0)
    return [np.concatenate([rng.choice(np.flatnonzero(truth == t), min(per_product, int((truth == t).sum())),
                                       replace=False) for t in np.unique(truth)]) for _ in range(draws)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed")
    e.add_argument("split", type=Path)
    e.add_argument("weights", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--probe", action="store_true")
    s = sub.add_parser("score")
    s.add_argument("caches", type=Path, nargs="+")
    s.add_argument("--per-product", type=int, default=None)
    s.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    if args.cmd == "embed":
        embed(args.split, args.weights, args.out, args.probe)
        return
    table: dict[str, list[float]] = {}
    for cache in args.caches:
        data = np.load(cache)
        q, g = data["Q"], data["G"]
        frozen = int(data["frozen_dims"]) if "frozen_dims" in data else 1280  # caches before it: lite0's copy
        bases = {"": (q, g)}
        if frozen:
            bases |= {"parts: ": (_normalise(q[:, :-frozen]), _normalise(g[:, :-frozen])),
                      "frozen: ": (_normalise(q[:, -frozen:]), _normalise(g[:, -frozen:]))}
        if "PQ" in data:
            bases["probe: "] = (data["PQ"], data["PG"])
        per_cache: dict[str, list[float]] = {}
        for rows in _batches(data["truth"], args.per_product, args.draws):
            for prefix, (bq, bg) in bases.items():
                for name, sims in variants(bq[rows], bg, full=not prefix).items():
                    per_cache.setdefault(prefix + name, []).append(
                        score_sims(sims, data["qids"][rows], data["gids"], data["truth"][rows]))
        for name, values in per_cache.items():
            table.setdefault(name, []).append(float(np.mean(values)))
    for name, values in table.items():
        print(f"{name:36s} {np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}  "
              + " ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
