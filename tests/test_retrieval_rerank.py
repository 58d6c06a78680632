"""Batch re-ranking: query expansion within the batch, k-reciprocal re-ranking, and both through search."""
from __future__ import annotations

import numpy as np
import pytest

from fashionlab.errors import FashionlabError
from fashionlab.tasks.retrieval import rerank
from fashionlab.tasks.retrieval.rerank import expand_queries, k_reciprocal_distance


def _unit(rows) -> np.ndarray:
    x = np.array(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


GALLERY = _unit([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])  # one catalogue photo per product
# in-store photos share a 4th "store" direction (the domain gap): four photos of product 0 (row 3 looks
# more like product 1's catalogue photo) and one of product 2, close to its catalogue photo
QUERIES = _unit([[0.5, 0.2, 0, 0.84], [0.55, 0.15, 0.05, 0.82], [0.5, 0.25, -0.05, 0.83], [0.3, 0.4, 0, 0.87],
                 [0.05, 0.1, 0.95, 0.2]])


def test_query_expansion_pulls_an_outlier_photo_to_its_product() -> None:
    sims = QUERIES @ GALLERY.T
    assert sims.argmax(1).tolist() == [0, 0, 0, 1, 2]  # row 3 is wrong alone
    expanded = expand_queries(QUERIES, sims.max(1), k=3)
    assert (expanded @ GALLERY.T).argmax(1).tolist() == [0, 0, 0, 0, 2]  # its neighbours correct it
    assert np.allclose(np.linalg.norm(expanded, axis=1), 1, atol=1e-5)
    # row 4's neighbours are less like it than its catalogue photo: the gate leaves it exactly as it was
    assert np.array_equal(expanded[4], QUERIES[4])
    assert not np.allclose(expand_queries(QUERIES, None, k=3)[4], QUERIES[4])  # ungated, it moves
    assert np.array_equal(expand_queries(QUERIES[:1]), QUERIES[:1])  # a single query: nothing to expand with


def test_k_reciprocal_distance_shape_order_and_size_limit(monkeypatch) -> None:
    dist = k_reciprocal_distance(QUERIES, GALLERY, k1=3, k2=1)
    assert dist.shape == (5, 3) and dist.argmin(1)[4] == 2
    again = k_reciprocal_distance(QUERIES, GALLERY, k1=3, k2=1, lam=1.0)  # λ = 1: the original distance alone
    original = np.clip(2 - 2 * QUERIES @ GALLERY.T, 0, None)
    assert np.array_equal(again.argsort(1), original.argsort(1))
    monkeypatch.setattr(rerank, "K_RECIPROCAL_MAX", 6)
    with pytest.raises(FashionlabError, match="limited to 6 in all"):
        k_reciprocal_distance(QUERIES, GALLERY)


def test_unknown_rerank_is_a_clear_error() -> None:
    with pytest.raises(FashionlabError, match="rerank 'dba': expected one of none, qe, k-reciprocal"):
        rerank.check_rerank("dba")
