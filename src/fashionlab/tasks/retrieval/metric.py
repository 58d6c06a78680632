"""Retrieval metric: MAP@k and recall@1/5/10 over a ranking file and a matches file (numpy-free).

For each query in MATCHES: AP@k = (sum over ranks i <= k holding a match of precision@i) / min(#matches, k);
a query absent from RANKS scores 0. ``map@k`` is the mean over the queries of MATCHES. ``recall@n`` is the
share of those queries with a match among the first n ids (recall@1: the first id is a match).

A gallery id repeated within one ranking counts only at its first occurrence: the repeat still occupies
its rank (it shifts nothing up) but is never a hit, so it cannot earn precision twice.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import FashionlabError, at

RANKS_HEADER = ["query_id", "gallery_ids"]
MATCHES_HEADER = ["query_id", "gallery_id"]
RECALL_AT = (1, 5, 10)


def _hit_flags(ranking: list[str], relevant: set[str]) -> list[bool]:
    """Per rank: is it a match seen for the first time in this ranking?"""
    seen: set[str] = set()
    flags = []
    for gid in ranking:
        flags.append(gid in relevant and gid not in seen)
        seen.add(gid)
    return flags


def average_precision(ranking: list[str], relevant: set[str], k: int = 10) -> float:
    """AP@k of one ranking (best first) against its set of matching gallery ids."""
    if not relevant:
        return 0.0
    hits = 0
    total = 0.0
    for i, hit in enumerate(_hit_flags(ranking[:k], relevant), start=1):
        if hit:
            hits += 1
            total += hits / i
    return total / min(len(relevant), k)


def map_at_k(ranks: dict[str, list[str]], matches: dict[str, set[str]], k: int = 10) -> dict[str, float]:
    """{"map@k", "recall@1", "recall@5", "recall@10"} averaged over the queries of ``matches``."""
    if k < 1:
        raise FashionlabError(f"k must be at least 1, got {k}")
    if not matches:
        raise FashionlabError("no queries to score (the matches are empty)")
    ap_sum = 0.0
    recall_hits = dict.fromkeys(RECALL_AT, 0)
    for query, relevant in matches.items():
        ranking = ranks.get(query, [])
        ap_sum += average_precision(ranking, relevant, k)
        for n in RECALL_AT:
            recall_hits[n] += any(gid in relevant for gid in ranking[:n])
    n_queries = len(matches)
    out = {f"map@{k}": ap_sum / n_queries}
    out.update({f"recall@{n}": recall_hits[n] / n_queries for n in RECALL_AT})
    return out


def _rows(path: Path, header: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank data row after checking the header exactly."""
    if not path.is_file():
        raise FashionlabError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            first = next(reader, None)
            if first is None or not any(c.strip() for c in first):
                raise FashionlabError(f"{path}: empty file (expected the header {','.join(header)})")
            found = [c.strip() for c in first]
            if found != header:
                raise FashionlabError(f"{at(path, 1)}: header is '{','.join(found)}'; expected '{','.join(header)}'")
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise FashionlabError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise FashionlabError(f"{path}: cannot parse CSV ({exc})") from None
    if not rows:
        raise FashionlabError(f"{path}: no data rows after the header")
    for line, row in rows:
        if len(row) != len(header):
            raise FashionlabError(f"{at(path, line)}: {len(row)} columns; expected {len(header)} "
                                  f"({','.join(header)})")
        cells = [c.strip() for c in row]
        if not cells[0]:
            raise FashionlabError(f"{at(path, line)}: empty query_id")
        yield line, cells


def read_ranks_csv(path: str | Path) -> dict[str, list[str]]:
    """RANKS CSV ``query_id,gallery_ids`` (space-separated, best first) -> {query: [gallery ids]}."""
    path = Path(path)
    ranks: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    for line, (query, gallery) in _rows(path, RANKS_HEADER):
        if query in ranks:
            raise FashionlabError(f"{at(path, line)}: duplicate query '{query}' (first on line {lines[query]})")
        ranks[query] = gallery.split()
        lines[query] = line
    return ranks


def read_matches_csv(path: str | Path) -> dict[str, set[str]]:
    """MATCHES CSV ``query_id,gallery_id`` (one row per correct pair) -> {query: {gallery ids}}."""
    path = Path(path)
    matches: dict[str, set[str]] = {}
    for line, (query, gallery) in _rows(path, MATCHES_HEADER):
        if not gallery:
            raise FashionlabError(f"{at(path, line)}: empty gallery_id for query '{query}'")
        if len(gallery.split()) != 1:
            raise FashionlabError(f"{at(path, line)}: gallery_id '{gallery}' has spaces; "
                                  "write one row per correct pair")
        matches.setdefault(query, set()).add(gallery)
    return matches


def evaluate_retrieval_files(pred_path: str | Path, truth_path: str | Path, k: int = 10) -> dict[str, Any]:
    """Score a RANKS file against a MATCHES file; queries missing from RANKS score 0."""
    return map_at_k(read_ranks_csv(pred_path), read_matches_csv(truth_path), k)
