"""The no-training retrieval baseline: frozen efficientnet_lite0 ImageNet features, cosine similarity.

Global-pooled features of the offline weights (eval mode) of each photo resized to 224 x 224,
L2-normalised; every query ranks the gallery by inner product. Written as fashionlab's RANKS CSV
(``query_id,gallery_ids``), so ``fashionlab evaluate retrieval`` scores it like fashionlab's own search.

    python benchmarks/bench/retrieval_probe.py --gallery GALLERY.csv --query QUERIES.csv --out ranks.csv
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain import STARTED  # noqa: E402
from probe import features  # noqa: E402

from fashionlab.tasks.retrieval.data import read_images  # noqa: E402
from fashionlab.tasks.retrieval.embed import rank_exact, write_ranks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=Path, required=True, help="items CSV (its shop rows)")
    parser.add_argument("--query", type=Path, required=True, help="items CSV (its consumer rows)")
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--flip", action="store_true", help="average the features of each photo and its mirror")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    gallery, queries = read_images(args.gallery, "gallery"), read_images(args.query, "query")
    t0 = time.time()
    g = features(gallery.paths, args.imgsz, args.flip)
    q = features(queries.paths, args.imgsz, args.flip)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx, scores = rank_exact(q.astype(np.float32), g.astype(np.float32), args.top)
    write_ranks(args.out, [(queries.ids[i], [gallery.ids[j] for j in row], s.tolist())
                           for i, (row, s) in enumerate(zip(idx, scores))])
    info = {"imgsz": args.imgsz, "flip": args.flip, "gallery": len(gallery), "queries": len(queries),
            "extract_s": round(time.time() - t0, 1), "seconds": round(time.time() - STARTED, 1)}
    (args.out.parent / "info.json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
