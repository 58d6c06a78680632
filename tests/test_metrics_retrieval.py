"""Retrieval MAP@k / recall@n: hand-computed values, duplicates, readers' error paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from fashionlab.errors import FashionlabError
from fashionlab.tasks.retrieval.metric import (
    average_precision,
    evaluate_retrieval_files,
    map_at_k,
    read_matches_csv,
    read_ranks_csv,
)

RANKS = {
    "q1": ["x", "a", "y", "b"],           # hits at 2 and 4: (1/2 + 2/4) / min(2, 10) = 0.5
    "q2": ["c", "z"],                     # hit at 1: 1/1 / 1 = 1
    "q4": ["1", "2", "3", "4", "5", "e"],  # hit at 6: (1/6) / 1 = 1/6
    "q9": ["a"],                          # not in matches: ignored
}
MATCHES = {"q1": {"a", "b"}, "q2": {"c"}, "q3": {"d"}, "q4": {"e"}}  # q3 has no ranking: AP 0


def test_hand_computed() -> None:
    out = map_at_k(RANKS, MATCHES)
    # map = (0.5 + 1 + 0 + 1/6) / 4 = 5/12
    assert out["map@10"] == pytest.approx(5 / 12)
    assert out["recall@1"] == pytest.approx(1 / 4)   # q2 only
    assert out["recall@5"] == pytest.approx(2 / 4)   # q1, q2
    assert out["recall@10"] == pytest.approx(3 / 4)  # q1, q2, q4
    assert set(out) == {"map@10", "recall@1", "recall@5", "recall@10"}


def test_k_generalises_and_cuts_the_ranking() -> None:
    out = map_at_k(RANKS, MATCHES, k=3)
    # q1: only the hit at 2 is within 3 -> (1/2) / min(2, 3) = 1/4; q4's hit at 6 is cut -> 0
    assert out["map@3"] == pytest.approx((0.25 + 1 + 0 + 0) / 4)
    assert out["recall@10"] == pytest.approx(3 / 4)  # recall keys stay at 1/5/10
    with pytest.raises(FashionlabError, match="k must be"):
        map_at_k(RANKS, MATCHES, k=0)


def test_denominator_is_min_matches_k() -> None:
    relevant = {f"g{i}" for i in range(12)}
    # 10 hits in 10 ranks, 12 matches: 10 / min(12, 10) = 1
    assert average_precision([f"g{i}" for i in range(10)], relevant) == pytest.approx(1.0)
    # the same 12 matches, one hit at rank 1 -> 1/10
    assert average_precision(["g0", "x"], relevant) == pytest.approx(0.1)
    assert average_precision(["a"], set()) == 0.0


def test_duplicate_ids_count_once() -> None:
    # 'a' at ranks 1 and 2: the repeat is not a hit but holds its rank; 'b' at 3 -> (1/1 + 2/3) / 2 = 5/6
    assert average_precision(["a", "a", "b"], {"a", "b"}) == pytest.approx(5 / 6)
    out = map_at_k({"q": ["a", "a", "a"]}, {"q": {"a", "b"}})
    assert out["map@10"] == pytest.approx(0.5)  # (1/1) / 2


def test_empty_matches_error() -> None:
    with pytest.raises(FashionlabError, match="no queries"):
        map_at_k(RANKS, {})


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_evaluate_files(tmp_path: Path) -> None:
    ranks = "query_id,gallery_ids\n" + "".join(f"{q},{' '.join(g)}\n" for q, g in RANKS.items())
    matches = "query_id,gallery_id\n" + "".join(f"{q},{g}\n" for q, gs in MATCHES.items() for g in sorted(gs))
    out = evaluate_retrieval_files(write(tmp_path / "ranks.csv", ranks), write(tmp_path / "m.csv", matches))
    assert out["map@10"] == pytest.approx(5 / 12) and out["recall@10"] == pytest.approx(3 / 4)


def test_readers_keep_ids_as_strings(tmp_path: Path) -> None:
    ranks = read_ranks_csv(write(tmp_path / "r.csv", "query_id,gallery_ids\n007,NA 1.0  nan\n008,\n"))
    assert ranks == {"007": ["NA", "1.0", "nan"], "008": []}
    matches = read_matches_csv(write(tmp_path / "m.csv", "query_id,gallery_id\n007,NA\n007,1.0\n007,NA\n"))
    assert matches == {"007": {"NA", "1.0"}}


@pytest.mark.parametrize("text, match", [
    ("", "r.csv: empty file"),
    ("query_id,gallery_ids\n", "r.csv: no data rows"),
    ("query,gallery_ids\nq,a\n", "r.csv line 1: header is 'query,gallery_ids'; expected 'query_id,gallery_ids'"),
    ("query_id,gallery_ids,score\nq,a,1\n", "r.csv line 1: header is"),
    ("query_id,gallery_ids\nq,a b\nr,c\nq,d\n", r"r.csv line 4: duplicate query 'q' \(first on line 2\)"),
    ("query_id,gallery_ids\nq,a,b\n", "r.csv line 2: 3 columns; expected 2"),
    ("query_id,gallery_ids\n,a\n", "r.csv line 2: empty query_id"),
])
def test_ranks_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(FashionlabError, match=match):
        read_ranks_csv(write(tmp_path / "r.csv", text))


@pytest.mark.parametrize("text, match", [
    ("", "m.csv: empty file"),
    ("query_id,gallery_id\n\n", "m.csv: no data rows"),
    ("query_id,gallery_ids\nq,a\n", "m.csv line 1: header is"),
    ("query_id,gallery_id\nq,\n", "m.csv line 2: empty gallery_id for query 'q'"),
    ("query_id,gallery_id\nq,a b\n", "m.csv line 2: gallery_id 'a b' has spaces"),
    ("query_id,gallery_id\nq\n", "m.csv line 2: 1 columns; expected 2"),
])
def test_matches_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(FashionlabError, match=match):
        read_matches_csv(write(tmp_path / "m.csv", text))
    with pytest.raises(FashionlabError, match="nope.csv: no such file"):
        read_matches_csv(tmp_path / "nope.csv")
