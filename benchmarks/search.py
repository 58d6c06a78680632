"""FAISS search at gallery scale: exact (IndexFlatIP) vs approximate (HNSW, IVF) on random unit vectors.

For each index: build time, memory (process RSS delta over the build, and the serialized index
size), per-query latency (batches of one query, median and p95 over ``--queries`` queries) and
recall@10 against the exact top 10. The approximate indexes are tuned on separate tuning queries: the
smallest ``nprobe`` (IVF) / ``efSearch`` (HNSW) whose recall@10 reaches ``--target-recall`` is then
measured on the evaluation queries. Builds use ``--threads``; latency is measured at each of
``--latency-threads`` (on a machine shared with other jobs one thread per query can beat two:
OpenMP threads wait for a busy core).

``--data iid`` (default): i.i.d. random unit vectors and fresh random queries — the worst case for
any index: in 256 dimensions a random point's 10 nearest neighbours are barely closer than the rest
of the million, so a graph or a coarse quantiser finds them only by visiting most of the data.
``--data clustered``: ``--clusters`` random centres, every vector a centre plus noise (cosine
``--spread`` to its centre) and every query a fresh member of a random cluster — what gallery
embeddings look like (several photos per item, low intrinsic dimension).

    python benchmarks/search.py                  # 1,000,000 vectors: ~2.5 GB RAM; the HNSW build
                                                 # takes ~20 min on 2 busy cores
    python benchmarks/search.py --data clustered
    python benchmarks/search.py --n 100000 --json /tmp/search.json

Prints a markdown table and writes JSON (``--json``, default ``benchmarks/out/search.json``, git-ignored).
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path

import faiss
import numpy as np

K = 10


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth)]))


def set_param(index: faiss.Index, value: int) -> None:
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = value
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = value


def latency_ms(index: faiss.Index, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Median and p95 milliseconds of single-query searches, and the ids found."""
    index.search(queries[:5], K)  # warm-up
    times, found = [], []
    for i in range(len(queries)):
        clock = time.perf_counter()
        _, ids = index.search(queries[i:i + 1], K)
        times.append((time.perf_counter() - clock) * 1000)
        found.append(ids[0])
    return float(np.median(times)), float(np.percentile(times, 95)), np.array(found)


def tune(index: faiss.Index, values: list[int], tune_q: np.ndarray, tune_truth: np.ndarray,
         target: float) -> tuple[int, list[dict]]:
    """Smallest value reaching ``target`` recall on the tuning queries (the largest tried otherwise)."""
    sweep = []
    for value in values:
        set_param(index, value)
        clock = time.perf_counter()
        _, ids = index.search(tune_q, K)
        per_query = (time.perf_counter() - clock) * 1000 / len(tune_q)
        sweep.append({"param": value, "recall@10": recall_at_k(ids, tune_truth), "batch_ms_per_query": per_query})
        if sweep[-1]["recall@10"] >= target:
            return value, sweep
    return values[-1], sweep


def build(kind: str, xb: np.ndarray, args: argparse.Namespace) -> tuple[faiss.Index, float, float]:
    d = xb.shape[1]
    gc.collect()
    before = rss_mb()
    clock = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
    else:
        nlist = args.nlist or int(np.sqrt(len(xb)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = xb[np.random.default_rng(1).choice(len(xb), min(len(xb), nlist * 64), replace=False)]
        index.train(sample)
    index.add(xb)
    return index, time.perf_counter() - clock, rss_mb() - before


def index_mb(index: faiss.Index) -> float:
    """Serialized size of the index: vectors plus graph links / list ids (what a save to disk holds)."""
    return faiss.serialize_index(index).nbytes / 2**20


def measure(index: faiss.Index, label: str, param: str, build_s: float, mem: float, queries: np.ndarray,
            truth: np.ndarray, threads: list[int], extra: dict | None = None) -> list[dict]:
    rows, size = [], index_mb(index)
    for n_threads in threads:
        faiss.omp_set_num_threads(n_threads)
        med, p95, found = latency_ms(index, queries)
        rows.append({"index": label, "param": param, "threads": n_threads, "build_s": build_s, "rss_delta_mb": mem,
                     "index_mb": size,
                     "median_ms": med, "p95_ms": p95, "recall@10": recall_at_k(found, truth), **(extra or {})})
        print({k: v for k, v in rows[-1].items() if k != "sweep"}, flush=True)
    return rows


def make_data(args: argparse.Namespace, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors: i.i.d. random, or members of the (seeded, shared) random clusters."""
    if args.data == "iid":
        return unit(rng.standard_normal((n, args.dim), dtype=np.float32))
    centres = unit(np.random.default_rng(args.seed + 1).standard_normal((args.clusters, args.dim), dtype=np.float32))
    sigma = np.sqrt((1 / args.spread ** 2 - 1) / args.dim)  # E cos(member, centre) = spread
    out = np.empty((n, args.dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = centres[rng.integers(0, args.clusters, stop - start)]
        out[start:stop] += rng.standard_normal((stop - start, args.dim), dtype=np.float32) * sigma
    return unit(out)


def run(args: argparse.Namespace) -> dict:
    threads = [int(t) for t in args.latency_threads.split(",")]
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    xb, queries, tune_q = (make_data(args, n, rng) for n in (args.n, args.queries, args.tune_queries))
    flat, build_s, mem = build("flat", xb, args)
    truth, tune_truth = flat.search(queries, K)[1], flat.search(tune_q, K)[1]
    rows = measure(flat, "IndexFlatIP (exact)", "", build_s, mem, queries, truth, threads)
    del flat
    sweeps = {"hnsw": [16, 32, 64, 128, 256, 512, 1024, 2048], "ivf": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]}
    for kind in ("hnsw", "ivf"):
        faiss.omp_set_num_threads(args.threads)
        index, build_s, mem = build(kind, xb, args)
        label = (f"IndexHNSWFlat M={args.hnsw_m} efC={args.ef_construction}" if kind == "hnsw"
                 else f"IndexIVFFlat nlist={index.nlist}")
        value, sweep = tune(index, sweeps[kind], tune_q, tune_truth, args.target_recall)
        set_param(index, value)
        param = f"{'efSearch' if kind == 'hnsw' else 'nprobe'}={value}"
        rows += measure(index, label, param, build_s, mem, queries, truth, threads, {"sweep": sweep})
        del index
        gc.collect()
    data = "iid" if args.data == "iid" else f"clustered: {args.clusters:,} clusters, cosine {args.spread} to the centre"
    return {"n": args.n, "dim": args.dim, "data": data, "build_threads": args.threads, "queries": args.queries,
            "tune_queries": args.tune_queries, "target_recall": args.target_recall, "faiss": faiss.__version__,
            "machine": platform.processor() or platform.machine(), "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"{result['n']:,} × {result['dim']}-d random unit vectors ({result.get('data', 'iid')}); built with "
             f"{result['build_threads']} threads; {result['queries']} single-query searches; faiss {result['faiss']}",
             "",
             "| index | setting | search threads | build s | RSS Δ MiB | index MiB | median ms/query | p95 ms "
             "| recall@10 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['index']} | {r['param'] or '—'} | {r['threads']} | {r['build_s']:.1f} | "
                     f"{r.get('rss_delta_mb', r.get('memory_mb', 0)):.0f} | {r.get('index_mb', float('nan')):.0f} | "
                     f"{r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['recall@10']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="gallery vectors")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200, help="evaluation queries (>= 200)")
    parser.add_argument("--tune-queries", type=int, default=200)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=2, help="OpenMP threads for building")
    parser.add_argument("--latency-threads", default="2,1", help="thread counts to time searches at")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists (0: sqrt(n))")
    parser.add_argument("--data", choices=("iid", "clustered"), default="iid")
    parser.add_argument("--clusters", type=int, default=50_000, help="clustered: number of centres")
    parser.add_argument("--spread", type=float, default=0.8, help="clustered: cosine of a vector to its centre")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", type=Path, help="only print the table of a results JSON written earlier")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "out" / "search.json")
    args = parser.parse_args()
    result = json.loads(args.table.read_text()) if args.table else run(args)
    print(markdown(result))
    if not args.table:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
