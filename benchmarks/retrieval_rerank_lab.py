"""Screening of batch re-ranking for retrieval search on cached embeddings (grocery-retrieval splits).

    python benchmarks/retrieval_rerank_lab.py embed SPLIT_DIR WEIGHTS OUT.npz [--probe]
    python benchmarks/retrieval_rerank_lab.py score A.npz B.npz ...

``embed`` stores the gallery and query embeddings (the product's own embed_fused, flip TTA) and, with
``--probe``, the frozen probe's features; ``score`` prints mAP@10 of each re-ranking variant per cache.
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


FROZEN = 1280  # the frozen copy's share of the default embedding: its last dims


def embed(split: Path, weights: Path, out: Path, probe: bool) -> None:
    gallery, queries = read_images(split / "gallery.csv", "gallery"), read_images(split / "queries.csv", "query")
    models = load_models([weights])
    arrays = {"G": embed_fused(models, gallery.paths), "Q": embed_fused(models, queries.paths),
              "gids": np.array(gallery.ids), "qids": np.array(queries.ids)}
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


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def query_expansion(q: np.ndarray, k: int, alpha: float) -> np.ndarray:
    sims = q @ q.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, axis=1)[:, :k]
    w = np.clip(np.take_along_axis(sims, nn, 1), 0, None) ** alpha
    return _normalise(q + (w[:, :, None] * q[nn]).sum(1))


def gallery_expansion(q: np.ndarray, g: np.ndarray, k: int, alpha: float) -> np.ndarray:
    sims = q @ g.T
    nn = np.argsort(-sims, axis=1)[:, :k]
    w = np.clip(np.take_along_axis(sims, nn, 1), 0, None) ** alpha
    return _normalise(q + (w[:, :, None] * g[nn]).sum(1))


def dual_softmax(s: np.ndarray, t: float) -> np.ndarray:
    z = s / t
    col = np.exp(z - z.max(0, keepdims=True))
    return s * col / col.sum(0, keepdims=True)


def k_reciprocal(q: np.ndarray, g: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    """Zhong et al. 2017 on cosine distances; returns a [Q, G] distance (smaller = better)."""
    feats = np.concatenate([q, g])
    n, nq = len(feats), len(q)
    dist = np.clip(2 - 2 * feats @ feats.T, 0, None)
    dist = (dist / dist.max(0, keepdims=True)).T
    rank = np.argsort(dist, axis=1)
    v = np.zeros((n, n), np.float32)
    half = int(round(k1 / 2))
    for i in range(n):
        fwd = rank[i, :k1 + 1]
        recip = fwd[np.any(rank[fwd, :k1 + 1] == i, axis=1)]
        expand = recip
        for c in recip:
            cf = rank[c, :half + 1]
            cr = cf[np.any(rank[cf, :half + 1] == c, axis=1)]
            if len(np.intersect1d(cr, recip)) > 2 / 3 * len(cr):
                expand = np.append(expand, cr)
        expand = np.unique(expand)
        w = np.exp(-dist[i, expand])
        v[i, expand] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    vg = v[nq:]
    jaccard = np.zeros((nq, len(g)), np.float32)
    for i in range(nq):
        inter = np.minimum(v[i][None, :], vg).sum(1)
        jaccard[i] = 1 - inter / (2 - inter)
    return jaccard * (1 - lam) + dist[:nq, nq:] * lam


def score_sims(sims: np.ndarray, qids, gids, truth) -> float:
    order = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    ranks = {q: [gids[j] for j in row] for q, row in zip(qids, order)}
    return map_at_k(ranks, {q: {t} for q, t in zip(qids, truth)})["map@10"]


def variants(q: np.ndarray, g: np.ndarray, full: bool = True) -> dict[str, np.ndarray]:
    out = {"none": q @ g.T}
    if not full:
        return {**out, "qe k10 a3": query_expansion(q, 10, 3.0) @ g.T, "k-reciprocal 20/6/0.3": -k_reciprocal(q, g)}
    for k in (5, 10, 20, 40):
        for alpha in (1.0, 3.0):
            out[f"qe k{k} a{alpha:g}"] = query_expansion(q, k, alpha) @ g.T
    for k in (1, 2):
        out[f"gallery-qe k{k}"] = gallery_expansion(q, g, k, 3.0) @ g.T
    for t in (0.02, 0.05, 0.1):
        out[f"dual-softmax t{t}"] = dual_softmax(q @ g.T, t)
    for k1, k2, lam in ((20, 6, 0.3), (10, 3, 0.3), (30, 6, 0.3), (20, 6, 0.1), (20, 6, 0.6)):
        out[f"k-reciprocal {k1}/{k2}/{lam}"] = -k_reciprocal(q, g, k1, k2, lam)
    qe = query_expansion(q, 10, 3.0)
    out["qe k10 a3 + dual t0.05"] = dual_softmax(qe @ g.T, 0.05)
    out["qe k10 a3 + k-recip 20/6/0.3"] = -k_reciprocal(qe, g, 20, 6, 0.3)
    return out


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
    args = parser.parse_args()
    if args.cmd == "embed":
        embed(args.split, args.weights, args.out, args.probe)
        return
    table: dict[str, list[float]] = {}
    for cache in args.caches:
        data = np.load(cache)
        q, g = data["Q"], data["G"]
        bases = {"": (q, g), "parts: ": (_normalise(q[:, :-FROZEN]), _normalise(g[:, :-FROZEN])),
                 "frozen: ": (_normalise(q[:, -FROZEN:]), _normalise(g[:, -FROZEN:]))}
        for w in (0.25, 0.75):
            bases[f"frozen w{w}: "] = tuple(_normalise(np.concatenate([b[0] * (1 - w) ** 0.5, b[1] * w ** 0.5], 1))
                                            for b in zip(bases["parts: "], bases["frozen: "]))
        if "PQ" in data:
            bases["probe: "] = (data["PQ"], data["PG"])
        for prefix, (q, g) in bases.items():
            for name, sims in variants(q, g, full=not prefix).items():
                table.setdefault(prefix + name, []).append(score_sims(sims, data["qids"], data["gids"], data["truth"]))
    for name, values in table.items():
        print(f"{name:36s} {np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}  "
              + " ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
