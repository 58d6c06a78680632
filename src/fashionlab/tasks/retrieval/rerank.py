"""Batch re-ranking of a search: the queries of one batch and the gallery re-rank each other.

- ``qe`` (query expansion among the queries, α-QE of Radenović et al. 2018 applied to the batch): each
  query embedding is replaced by itself plus its ``k`` most similar other queries, weighted by their
  cosine similarity to the power α, renormalised; a neighbour counts only when the two queries are
  more alike than either is to its best gallery match. Photos of one product taken in a store resemble
  each other more than they resemble its catalogue photo, so the average of a query's neighbours is a
  less noisy description of the product than the photo alone.
- ``k-reciprocal`` (Zhong et al. 2017, the re-identification standard, as in fast-reid): a query and a
  gallery image are close when their k-reciprocal neighbourhoods (over queries and gallery together)
  overlap; the Jaccard distance of the neighbourhoods is mixed with the original distance (λ).

Both need the whole batch at once: a single query (the web service) is ranked as it is. Pure numpy.
"""
from __future__ import annotations

import numpy as np

from ...errors import FashionlabError

RERANKS = ("none", "qe", "k-reciprocal")
K_RECIPROCAL_MAX = 12_000  # queries + gallery: the method holds an N x N float32 matrix (0.58 GB here)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def expand_queries(queries: np.ndarray, best_match: np.ndarray | None = None, k: int = 10, alpha: float = 3.0,
                   chunk: int = 2048) -> np.ndarray:
    """α-query expansion within the batch: q + Σ_j max(sim_j, 0)^α q_j over the ``k`` nearest other
    queries j, renormalised. With ``best_match`` (each query's similarity to its best gallery match) a
    neighbour counts only when the two queries are more alike than either is to any gallery image: photos
    of one product from the same domain pass, photos of different products rarely do, so a batch holding
    one photo per product is left almost as it is. Fewer than two queries: returned as they are."""
    n = len(queries)
    k = min(k, n - 1)
    if k < 1:
        return queries
    out = np.empty_like(queries, dtype=np.float32)
    for start in range(0, n, chunk):
        sims = queries[start:start + chunk] @ queries.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        near_sims = np.take_along_axis(sims, nearest, 1)
        if best_match is not None:
            gate = np.maximum(best_match[start:start + chunk, None], best_match[nearest])
            near_sims = np.where(near_sims > gate, near_sims, 0)
        weights = np.clip(near_sims, 0, None) ** alpha
        out[start:start + chunk] = queries[start:start + chunk] + (weights[:, :, None] * queries[nearest]).sum(1)
    return _normalise(out)


def k_reciprocal_distance(queries: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6,
                          lam: float = 0.3) -> np.ndarray:
    """[Q, G] re-ranked distances (smaller is closer), Zhong et al. 2017 on squared cosine distances."""
    feats = np.concatenate([queries, gallery]).astype(np.float32)
    n, nq = len(feats), len(queries)
    if n > K_RECIPROCAL_MAX:
        raise FashionlabError(f"k-reciprocal re-ranking of {nq} queries against {len(gallery)} gallery images: "
                              f"limited to {K_RECIPROCAL_MAX} in all (it holds an N x N matrix); search fewer "
                              "queries at a time or use rerank 'qe'")
    k1, k2 = min(k1, n - 1), max(1, min(k2, n))
    dist = np.clip(2 - 2 * feats @ feats.T, 0, None)
    dist = (dist / np.maximum(dist.max(0, keepdims=True), 1e-12)).T
    rank = np.argsort(dist, axis=1, kind="stable")
    half = int(round(k1 / 2))
    v = np.zeros((n, n), np.float32)
    for i in range(n):
        forward = rank[i, :k1 + 1]
        reciprocal = forward[np.any(rank[forward, :k1 + 1] == i, axis=1)]
        expanded = [reciprocal]
        for c in reciprocal:
            near = rank[c, :half + 1]
            near = near[np.any(rank[near, :half + 1] == c, axis=1)]
            if len(np.intersect1d(near, reciprocal)) > 2 / 3 * len(near):
                expanded.append(near)
        members = np.unique(np.concatenate(expanded))
        weight = np.exp(-dist[i, members])
        v[i, members] = weight / weight.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    in_gallery = v[nq:]
    jaccard = np.empty((nq, len(gallery)), np.float32)
    for i in range(nq):
        shared = np.minimum(v[i][None, :], in_gallery).sum(1)
        jaccard[i] = 1 - shared / (2 - shared)
    return jaccard * (1 - lam) + dist[:nq, nq:] * lam


def check_rerank(name: str) -> str:
    if name not in RERANKS:
        raise FashionlabError(f"rerank '{name}': expected one of {', '.join(RERANKS)}")
    return name
