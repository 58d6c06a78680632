"""Retrieval recipes on one held-out-product split of grocery-retrieval (the README's "what was tried" table).

    python benchmarks/retrieval_variants.py NAME [--set key=value ...]   # train + index + search + evaluate
    python benchmarks/retrieval_variants.py --rescore RUN/weights/best.pt [--untrained 16,32]
    python benchmarks/retrieval_variants.py --summarise OUT [--collect runs.json]   # OUT/NAME_sSEED.json -> table
    python benchmarks/retrieval_variants.py NAME --attach-frozen 0.5 --from RUN   # RUN's best.pt + a frozen copy

The split is ``bench/retrieval.py``'s (seed ``--seed``, written under ``--work``). ``--rescore`` embeds
the gallery and queries once (no flip) and scores several ``raw_weight`` mixes of the same weights;
``--untrained`` scores the pooled head-conv map of the pretrained net before any training; with both, the
trained parts are also mixed with that untrained map ("frozen w=…": a second, frozen ImageNet embedding).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.retrieval import fashionlab_row, index_and_search, retrieval_split  # noqa: E402

from fashionlab.data.transforms import eval_transform  # noqa: E402
from fashionlab.tasks.retrieval.data import read_images  # noqa: E402
from fashionlab.tasks.retrieval.embed import rank_exact  # noqa: E402
from fashionlab.tasks.retrieval.features import create_feature_map  # noqa: E402
from fashionlab.tasks.retrieval.metric import map_at_k  # noqa: E402
from fashionlab.tasks.retrieval.model import (OPTIONAL_SPEC, SPEC_KEYS, build_net, frozen_embedding,  # noqa: E402
                                               load_retrieval_payload, save_retrieval)

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def _pooled(net, paths: list[Path], imgsz: int, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(normalised trained parts, normalised average-pooled map) of every photo."""
    transform = eval_transform(imgsz, mean, std)
    parts_out, mean_out = [], []
    for start in range(0, len(paths), 32):
        x = torch.stack([transform(np.asarray(Image.open(p).convert("RGB"))) for p in paths[start:start + 32]])
        parts, pooled, _ = net.eval()._run(x)
        parts_out.append(F.normalize(parts.flatten(1), dim=1))
        mean_out.append(F.normalize(pooled, dim=1))
    return torch.cat(parts_out).numpy(), torch.cat(mean_out).numpy()


def rescore(split_dir: Path, weights: list[Path], untrained: list[int]) -> dict[str, dict[str, float]]:
    gallery, queries = read_images(split_dir / "gallery.csv", "gallery"), read_images(split_dir / "queries.csv", "query")
    matches: dict[str, set[str]] = {}
    for line in (split_dir / "matches.csv").read_text().splitlines()[1:]:
        query, shop = line.split(",")
        matches.setdefault(query, set()).add(shop)

    def score(g: np.ndarray, q: np.ndarray) -> float:
        idx, _ = rank_exact(q.astype(np.float32), g.astype(np.float32), 10)
        ranked = {queries.ids[i]: [gallery.ids[j] for j in row] for i, row in enumerate(idx)}
        return round(float(map_at_k(ranked, matches, k=10)["map@10"]), 4)

    def mixed(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], w: float) -> float:
        """cosine = (1 - w) · cosine of a + w · cosine of b (both L2-normalised)."""
        return score(np.hstack([a[0] * (1 - w) ** .5, b[0] * w ** .5]), np.hstack([a[1] * (1 - w) ** .5, b[1] * w ** .5]))

    out: dict[str, dict[str, float]] = {}
    frozen: tuple[np.ndarray, np.ndarray] | None = None
    for stride in untrained:
        fm = create_feature_map("efficientnet_lite0", "auto", stride, head_conv=True)
        net = build_net(fm, {"branches": ["global"], "embed_dim": 8, "stripes": [2], "rings": 2, "categories": []})
        (_, gm), (_, qm) = (_pooled(net, t.paths, 224, fm.mean, fm.std) for t in (gallery, queries))
        out[f"untrained stride {stride}"] = {"raw": score(gm, qm)}
        frozen = (gm, qm)
    for path in weights:
        net, spec = load_retrieval_payload(path)
        (gp, gm), (qp, qm) = (_pooled(net, t.paths, spec["imgsz"], spec["mean"], spec["std"]) for t in (gallery, queries))
        out[str(path)] = {f"w={w}": mixed((gp, qp), (gm, qm), w) for w in WEIGHTS}
        if frozen is not None:  # the trained parts beside the untrained net's pooled map (the last --untrained stride)
            out[str(path)].update({f"frozen w={w}": mixed((gp, qp), frozen, w) for w in WEIGHTS})
    return out


def attach_frozen(split_dir: Path, trained: Path, weight: float, out: Path) -> dict[str, Any]:
    """``trained``'s best.pt saved again as a run with ``frozen_weight=weight`` saves it (training and its
    choice of weights do not depend on it), then index + search through the CLI and score."""
    net, spec = load_retrieval_payload(trained)
    weights = out / "weights" / "best.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_retrieval(weights, net, {k: spec[k] for k in (*SPEC_KEYS, *OPTIONAL_SPEC)} | {"frozen_weight": weight},
                   spec["mean"], spec["std"], spec["extra"], frozen_embedding(spec["model"], "auto"))
    return {**index_and_search(weights, split_dir / "gallery.csv", split_dir / "queries.csv", split_dir / "matches.csv",
                               out), "from": str(trained)}


def collect(folder: Path) -> list[dict[str, Any]]:
    """Every ``NAME_sSEED.json`` this script wrote in ``folder`` (in the order they ran), with its variant, seed
    and the epoch its weights were taken at (from the run's metrics.json)."""
    runs = []
    for path in sorted(folder.glob("*_s*.json"), key=lambda p: p.stat().st_mtime):
        name, _, seed = path.stem.rpartition("_s")
        text = path.read_text()  # the commands the run printed ("$ ..." lines), then the JSON
        start = 0 if text.startswith("{") else text.find("\n{") + 1  # 0 also when no JSON follows
        run = json.loads(text[start:]) if text[start:start + 1] == "{" else {}
        if "value" not in run or "command" not in run:
            continue  # not a finished variant run (e.g. a saved --rescore output)
        metrics = Path(run["command"].split("--out ")[1].split()[0]) / "metrics.json"
        epoch = json.loads(metrics.read_text())["best"]["epoch"] if metrics.is_file() else None
        history = metrics.parent / "history.csv"
        epochs = len(history.read_text().splitlines()) - 1 if history.is_file() else None
        runs.append({"variant": name, "seed": int(seed), "epoch": epoch, "epochs": epochs, **run})
    return runs


def summarise(runs: list[dict[str, Any]]) -> str:
    """A markdown table: per variant, mean ± sd (ddof 1) over its seeds."""
    def pm(values: list[float]) -> str:
        sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
        return f"{np.mean(values):.3f}{sd}"

    by_variant: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)
    lines = ["| variant | options | seeds | test mAP@10 | per seed | test R@1 | epochs kept / run | run val mAP@10 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, rows in by_variant.items():
        rows = sorted(rows, key=lambda r: r["seed"])
        values = [r["value"] for r in rows]
        epochs = ", ".join(f"{r['epoch']}/{r.get('epochs')}" for r in rows)
        lines.append(f"| {name} | {' '.join(rows[0]['options']) or 'default'} | {','.join(str(r['seed']) for r in rows)} | "
                     f"{pm(values)} | {' / '.join(f'{v:.3f}' for v in values)} | "
                     f"{pm([r['recall@1'] for r in rows])} | {epochs} | "
                     f"{pm([r['val_map@10'] for r in rows])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="variant name (its folder under --work)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="train option key=value")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
                        / "grocery-retrieval")
    parser.add_argument("--work", type=Path, default=Path("runs/retrieval-variants"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=480.0)
    parser.add_argument("--rescore", type=Path, action="append", default=[])
    parser.add_argument("--untrained", default="", help="strides, e.g. 16,32")
    parser.add_argument("--summarise", type=Path,
                        help="print the table of the NAME_sSEED.json files in this folder, or of a --collect file")
    parser.add_argument("--attach-frozen", type=float, help="with NAME and --from RUN: score RUN's weights "
                        "with a frozen ImageNet copy of this share (no training)")
    parser.add_argument("--from", dest="source", type=Path, help="a variant's run folder (for --attach-frozen)")
    parser.add_argument("--collect", type=Path, help="with --summarise FOLDER: also write its runs to this JSON file")
    args = parser.parse_args()
    if args.summarise:
        runs = json.loads(args.summarise.read_text()) if args.summarise.is_file() else collect(args.summarise)
        if args.collect:
            args.collect.write_text(json.dumps(runs, indent=1) + "\n")
        print(summarise(runs))
        return
    split_dir = args.work / f"split{args.seed}"
    if not (split_dir / "matches.csv").is_file():
        retrieval_split(args.data, split_dir, args.seed)
    if args.rescore or args.untrained:
        strides = [int(s) for s in args.untrained.split(",") if s]
        print(json.dumps(rescore(split_dir, args.rescore, strides), indent=1))
        return
    if not args.name:
        parser.error("give a variant NAME (or --rescore)")
    if args.attach_frozen is not None:
        result = attach_frozen(split_dir, args.source / "weights" / "best.pt", args.attach_frozen, args.work / args.name)
        print(json.dumps({"name": args.name, "frozen_weight": args.attach_frozen, **result}, indent=1))
        return
    from bench.splits import Split

    on_disk = Split("retrieval", split_dir / "train.csv", split_dir / "queries.csv", split_dir / "matches.csv", 0, 0)
    extra = tuple(x for kv in args.sets for x in ("--set", kv))
    result = fashionlab_row(on_disk, args.work / args.name, args.budget, args.seed, extra)
    print(json.dumps({"name": args.name, "options": args.sets, **result}, indent=1))


if __name__ == "__main__":
    main()
