"""FAISS gallery index and batch search.

An index is a folder: ``index.faiss`` (inner product on unit vectors = cosine), ``gallery.csv``
(``id,category,path`` in index order) and ``meta.json`` (format, model id = hash of the weights
files + fusion + dimension, the weights' paths and hashes, TTA, kind and its parameters). Searching
with other weights than the index's is an error naming both model ids.

Kinds: ``flat`` (exact, IndexFlatIP; the default), ``hnsw`` (IndexHNSWFlat, ``ef_search``) and
``ivf`` (IndexIVFFlat, ``nprobe``) for large galleries; see ``benchmarks/search.py`` for their
speed/recall trade-off at 1M vectors.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.devices import resolve_device
from ...errors import FashionlabError
from ...io import atomic_open, check_output, write_json
from .data import read_images, readable
from .embed import embed_fused, embed_paths, load_models, model_id, write_ranks
from .rerank import check_rerank, expand_queries, k_reciprocal_distance

log = logging.getLogger(__name__)
INDEX_FORMAT = "fashionlab-retrieval-index-1"
KINDS = ("flat", "ivf", "hnsw")
Result = tuple[str, list[str], list[float]]


def _faiss():
    try:
        import faiss
    except ImportError:
        raise FashionlabError("retrieval search needs FAISS: pip install faiss-cpu") from None
    return faiss


def _make_index(kind: str, vectors: np.ndarray, nlist: int | None, hnsw_m: int, ef_construction: int):
    faiss = _faiss()
    d = vectors.shape[1]
    params: dict[str, Any] = {}
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        params = {"hnsw_m": hnsw_m, "ef_construction": ef_construction}
    elif kind == "ivf":
        nlist = nlist or max(1, min(int(math.sqrt(len(vectors))), len(vectors) // 39))
        if nlist > len(vectors):
            raise FashionlabError(f"ivf: nlist {nlist} exceeds the gallery size {len(vectors)}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        params = {"nlist": nlist}
    else:
        raise FashionlabError(f"index kind '{kind}': expected one of {', '.join(KINDS)}")
    index.add(vectors)
    return index, params


def build_index(weights: Path | Sequence[Path], gallery: Path, out: Path, kind: str = "flat", batch: int = 64,
                workers: int = 2, device: str = "auto", tta: str = "flip", fusion: str = "concat",
                root: str | Path | None = None, nlist: int | None = None, hnsw_m: int = 32,
                ef_construction: int = 80, ef_search: int = 128, nprobe: int | None = None,
                skip_bad: bool = False) -> Path:
    """Embed the gallery (shop rows of an items CSV, or every image of a folder) and write the index
    folder ``out``; ``weights`` may be several (fused by ``fusion``). Returns ``out``.
    ``skip_bad``: missing/unreadable gallery images are left out of the index (with a warning)."""
    if kind not in KINDS:
        raise FashionlabError(f"index kind '{kind}': expected one of {', '.join(KINDS)}")
    check_output(Path(out), folder=True)
    device = resolve_device(device)
    models = load_models(weights, device)
    table = readable(read_images(Path(gallery), "gallery", root, skip_bad), skip_bad)
    vectors = embed_fused(models, table.paths, tta, fusion, batch, workers, device)
    index, params = _make_index(kind, vectors, nlist, hnsw_m, ef_construction)
    if kind == "hnsw":
        params["ef_search"] = ef_search
    if kind == "ivf":
        params["nprobe"] = nprobe or max(1, params["nlist"] // 8)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    faiss = _faiss()
    with atomic_open(out / "index.faiss", "wb") as handle:
        handle.write(faiss.serialize_index(index).tobytes())
    with atomic_open(out / "gallery.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "category", "path"])
        writer.writerows(zip(table.ids, table.categories, [str(p) for p in table.paths]))
    write_json(out / "meta.json", {
        "format": INDEX_FORMAT, "model_id": model_id(models, fusion), "dim": int(vectors.shape[1]),
        "count": len(table), "kind": kind, "params": params, "tta": tta, "fusion": fusion,
        "weights": [{"path": str(m.path.resolve()), "sha256": m.sha256} for m in models],
        "categories": sorted({c for c in table.categories if c}), "source": str(gallery)})
    log.info("indexed %d gallery images (%s, dim %d) in %s", len(table), kind, vectors.shape[1], out)
    return out


def read_index(index: Path) -> tuple[Any, dict[str, Any], list[str], list[str]]:
    """(faiss index, meta, gallery ids, gallery categories), checked against each other; a missing,
    damaged or inconsistent file is one line naming it."""
    index = Path(index)
    if not (index / "meta.json").is_file() or not (index / "index.faiss").is_file():
        raise FashionlabError(f"{index}: not a retrieval index folder (needs meta.json and index.faiss; "
                              "build one with build_index / fashionlab index retrieval)")
    try:
        meta = json.loads((index / "meta.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FashionlabError(f"{index / 'meta.json'}: damaged ({exc}); rebuild the index") from None
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise FashionlabError(f"{index}/meta.json: format '{found}'; expected {INDEX_FORMAT}")
    missing = [k for k in ("dim", "count", "kind", "fusion", "model_id", "weights", "tta") if k not in meta]
    if missing:
        raise FashionlabError(f"{index / 'meta.json'}: lacks {', '.join(missing)}; rebuild the index")
    faiss = _faiss()
    try:
        loaded = faiss.deserialize_index(np.fromfile(index / "index.faiss", dtype=np.uint8))
    except Exception as exc:  # noqa: BLE001 - FAISS raises RuntimeError with a C++ trace for damaged files
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise FashionlabError(f"{index / 'index.faiss'}: damaged or not a FAISS index ({first}); rebuild the "
                              "index with fashionlab index retrieval") from None
    table = index / "gallery.csv"
    if not table.is_file():
        raise FashionlabError(f"{table}: missing (the ids of the indexed images); rebuild the index")
    try:
        with open(table, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FashionlabError(f"{table}: damaged ({exc}); rebuild the index") from None
    if rows and not {"id", "category"} <= set(rows[0]):
        raise FashionlabError(f"{table}: header must hold id,category,path; rebuild the index")
    if loaded.d != meta["dim"] or loaded.ntotal != len(rows) or len(rows) != meta["count"]:
        raise FashionlabError(f"{index}: index.faiss ({loaded.ntotal} x {loaded.d}), gallery.csv ({len(rows)} rows) "
                              f"and meta.json ({meta['count']} x {meta['dim']}) disagree; rebuild the index")
    return loaded, meta, [r["id"] for r in rows], [r["category"] for r in rows]


def _search_params(faiss, meta: dict[str, Any], allowed: np.ndarray | None, nprobe: int | None,
                   ef_search: int | None):
    sel = faiss.IDSelectorBatch(allowed.astype(np.int64)) if allowed is not None else None
    kwargs = {"sel": sel} if sel is not None else {}
    if meta["kind"] == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=ef_search or meta["params"]["ef_search"], **kwargs), sel
    if meta["kind"] == "ivf":
        return faiss.SearchParametersIVF(nprobe=nprobe or meta["params"]["nprobe"], **kwargs), sel
    return (faiss.SearchParameters(**kwargs) if sel is not None else None), sel


class Searcher:
    """An index with its model(s) loaded once: the CLI ranks one batch of queries with it, the
    service keeps one for its whole life (loading the model per request cost ~1 s on a CPU)."""

    def __init__(self, index: Path, weights: Path | Sequence[Path] | None = None, device: str = "auto") -> None:
        self.index = Path(index)
        self.faiss = _faiss()
        self.loaded, self.meta, self.ids, self.categories = read_index(self.index)
        self.device = resolve_device(device)
        meta = self.meta
        if weights is None:
            missing = [w["path"] for w in meta["weights"] if not Path(w["path"]).is_file()]
            if missing:
                raise FashionlabError(f"{index}: the weights it was built with are gone ({missing[0]}); pass weights=")
            weights = [Path(w["path"]) for w in meta["weights"]]
        self.models = load_models(weights, self.device)
        found = model_id(self.models, meta["fusion"])
        if found != meta["model_id"]:
            raise FashionlabError(f"{index}: built with model {meta['model_id']} (embedding dim {meta['dim']}), but "
                                  f"the weights {', '.join(str(m.path) for m in self.models)} are model {found}; "
                                  "rebuild the index with these weights or search with the index's own")

    def gallery_vectors(self) -> np.ndarray:
        """The indexed embeddings [N, D] (read back from the index, not re-embedded)."""
        if self.meta["kind"] == "ivf":
            self.faiss.extract_index_ivf(self.loaded).make_direct_map()
        return self.loaded.reconstruct_n(0, self.loaded.ntotal)

    def search_paths(self, paths: Sequence[Path], query_ids: Sequence[str], top: int = 10,
                     category: str | None = None, batch: int = 64, workers: int = 2, nprobe: int | None = None,
                     ef_search: int | None = None, rerank: str = "none") -> list[Result]:
        """``rerank`` (rerank.py): ``qe`` expands each query with its nearest queries of this batch,
        ``k-reciprocal`` re-ranks queries and gallery together (exact, whatever the index kind)."""
        if top < 1:
            raise FashionlabError(f"top must be at least 1, got {top}")
        check_rerank(rerank)
        meta, models, loaded = self.meta, self.models, self.loaded
        want, own = _query_categories(category, models, list(paths), meta, self.categories, batch, workers,
                                      self.device)
        vectors = own if own is not None and len(models) == 1 else \
            embed_fused(models, list(paths), meta["tta"], meta["fusion"], batch, workers, self.device)
        if vectors.shape[1] != loaded.d:
            raise FashionlabError(f"{self.index}: index dimension {loaded.d} != query embedding dimension "
                                  f"{vectors.shape[1]}")
        if rerank == "qe":
            params, _sel = _search_params(self.faiss, meta, None, nprobe, ef_search)
            best_match = loaded.search(vectors, 1, params=params)[0][:, 0]
            vectors = expand_queries(vectors, best_match)
        gallery = self.gallery_vectors() if rerank == "k-reciprocal" else None
        results: list[Result] = [("", [], [])] * len(paths)
        groups: dict[str | None, list[int]] = {}
        for i, c in enumerate(want):
            groups.setdefault(c, []).append(i)
        for cat, rows in groups.items():
            allowed = None if cat is None else np.flatnonzero(np.array(self.categories) == cat)
            if gallery is not None:
                self._k_reciprocal(vectors, gallery, rows, allowed, query_ids, top, results)
                continue
            params, _sel = _search_params(self.faiss, meta, allowed, nprobe, ef_search)  # keep sel alive
            k = min(top, loaded.ntotal if allowed is None else len(allowed))
            scores, found_idx = loaded.search(vectors[rows], k, params=params) if k else (None, None)
            for j, row in enumerate(rows):
                keep = [(self.ids[g], float(s)) for g, s in zip(found_idx[j], scores[j]) if g >= 0] if k else []
                results[row] = (query_ids[row], [g for g, _ in keep], [s for _, s in keep])
        return results

    def _k_reciprocal(self, vectors: np.ndarray, gallery: np.ndarray, rows: list[int], allowed: np.ndarray | None,
                      query_ids: Sequence[str], top: int, results: list[Result]) -> None:
        candidates = np.arange(len(gallery)) if allowed is None else allowed
        dist = k_reciprocal_distance(vectors[rows], gallery[candidates])
        order = np.argsort(dist, axis=1, kind="stable")[:, :min(top, len(candidates))]
        for j, row in enumerate(rows):
            results[row] = (query_ids[row], [self.ids[candidates[i]] for i in order[j]],
                            [float(1 - dist[j, i]) for i in order[j]])


def search(index: Path, query: Path, top: int = 10, out: Path | None = None, weights: Path | None = None,
           category: str | None = None, batch: int = 64, workers: int = 2, device: str = "auto",
           root: str | Path | None = None, nprobe: int | None = None,
           ef_search: int | None = None, skip_bad: bool = False, rerank: str = "qe") -> list[Result]:
    """Rank the gallery of ``index`` for each query image (an image, a folder or an items CSV: its
    consumer rows). Returns ``[(query_id, [gallery ids], [scores])]``, best first; with ``out`` also
    writes the RANKS CSV. ``weights`` (default: the index's own) must be the model the index was built
    with. ``category``: search only gallery images of this category; ``auto``: of the category the
    model's category head predicts for each query. ``rerank``: ``qe`` (default; query expansion
    within the batch: +0.040 mAP@10 on grocery-retrieval, README), ``k-reciprocal`` or ``none``."""
    if top < 1:
        raise FashionlabError(f"top must be at least 1, got {top}")
    check_rerank(rerank)
    if out is not None:
        check_output(Path(out))
    searcher = Searcher(Path(index), weights, device)
    table = readable(read_images(Path(query), "query", root, skip_bad), skip_bad)
    results = searcher.search_paths(table.paths, table.ids, top, category, batch, workers, nprobe, ef_search, rerank)
    if out is not None:
        write_ranks(Path(out), results)
    return results


def _query_categories(category: str | None, models, paths, meta, categories: list[str], batch: int,
                      workers: int, device: str) -> tuple[list[str | None], np.ndarray | None]:
    """The gallery category each query is restricted to (None: no restriction), and with ``auto`` the
    embeddings computed on the way (so a single model embeds the queries once)."""
    if category is None or category == "":
        return [None] * len(paths), None
    known = sorted({c for c in categories if c})
    if not known:
        raise FashionlabError(f"category '{category}': the index's gallery has no categories")
    if category != "auto":
        if category not in known:
            raise FashionlabError(f"category '{category}' is not in the gallery; categories: {', '.join(known)}")
        return [category] * len(paths), None
    model = next((m for m in models if m.categories), None)
    if model is None:
        raise FashionlabError("category 'auto' needs a model trained with a category head (items CSV with a "
                              "category column and category_head: true)")
    vectors, probs = embed_paths(model, paths, meta["tta"], batch, workers, device, with_categories=True)
    names = model.categories
    return [names[int(p.argmax())] if names[int(p.argmax())] in known else None for p in probs], vectors
