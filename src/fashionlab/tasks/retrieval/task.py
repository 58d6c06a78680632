"""retrieval: JD street-to-shop — find the shop images of the item in a consumer photo; scored by mAP@10.

``fashionlab train retrieval --data items.csv --out RUN``, ``fashionlab predict retrieval --weights
RUN/weights/best.pt --source items.csv --out RANKS.csv`` (consumer rows ranked against shop rows) and
``fashionlab evaluate retrieval --pred RANKS.csv --truth matches.csv`` reach this task through
``Task.fit``, ``Task.predict_files`` and metric.py. The folder, one idea per module:

config.py    RetrievalConfig (branches, embed_dim, stripes, rings, triplet_weight, margin, k_per_item, ...)
data.py      items CSV / folder / image readers with line-numbered errors, split by item, PK sampler
features.py  timm features_only last stage with the offline ImageNet weights
model.py     global / stripe / ring part pooling, part embeddings + ID heads, weights file
             (format fashionlab-retrieval-1)
loss.py      sum of part cross-entropies + batch-hard triplet + category CE
embed.py     embeddings with flip TTA and multi-model fusion, exact ranking, RANKS writer
search.py    FAISS index (flat / ivf / hnsw) build and search, category restriction, model-id check
hooks.py     the training hooks (split by item, PK batches, loss step, validation mAP@10, outputs)
plots.py     query -> top-k figure
metric.py    mAP@10 / recall@k and the RANKS/MATCHES readers (owned separately)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...config import RunConfig
from ...engine.devices import resolve_device
from ...engine.hooks import TrainResult
from ...errors import FashionlabError
from ..base import Task
from .config import RetrievalConfig
from .hooks import RetrievalHooks

TOP = 10  # ids written per query: the competition scores mAP@10


class RetrievalTask(Task):
    name = "retrieval"
    metric = "map@10"
    config_class = RetrievalConfig
    weights_format = "fashionlab-retrieval-1"
    evaluator = "fashionlab.tasks.retrieval.metric:evaluate_retrieval_files"
    synth_generator = "fashionlab.data.synth.retrieval:synth_retrieval"
    synth_count_arg = "n_items"
    tta = ("none", "flip")
    submit_tta = "flip"
    combine = ("concat",)  # several models: their embeddings are concatenated

    def hooks(self, cfg: RunConfig) -> RetrievalHooks:
        return RetrievalHooks(cfg)

    def gather_folds(self, cfg: RunConfig, results: list[TrainResult]) -> dict[str, Any]:
        """OOF rankings: every fold's val queries ranked against that fold's val gallery."""
        from ...io import atomic_open
        from .embed import write_ranks
        from .metric import map_at_k

        run = Path(cfg.out)
        ranked = [row for r in results for row in r.val_outputs[0]]
        matches = {q: g for r in results for q, g in r.val_outputs[1].items()}
        write_ranks(run / "oof.csv", ranked)
        with atomic_open(run / "oof_truth.csv", "w", encoding="utf-8", newline="") as handle:
            handle.write("query_id,gallery_id\n")
            handle.writelines(f"{q},{g}\n" for q, gs in matches.items() for g in sorted(gs))
        return {"oof_queries": len(ranked), **map_at_k({q: r for q, r, _ in ranked}, matches, k=10)}

    def predict_files(self, weights: Path | list[Path], source: Path, out: Path, tta: str = "none", batch: int = 64,
                      workers: int = 2, device: str = "auto", combine: str = "concat",
                      skip_bad: bool = False) -> Path:
        """Rank the shop images of the items CSV ``source`` for each of its consumer images; write RANKS.

        ``weights``: best.pt files, run folders, or folders of runs (their embeddings concatenated);
        ``skip_bad``: missing/unreadable images are left out (counted, with a warning).
        """
        from .data import read_images, readable
        from .embed import embed_fused, load_models, rank_exact, write_ranks

        if Path(source).suffix.lower() != ".csv":
            raise FashionlabError(f"{source}: predict retrieval needs an items CSV (image,item_id,domain); for "
                                  "a folder of queries build an index and use search")
        device = resolve_device(device)
        models = load_models(weights, device)
        gallery = readable(read_images(Path(source), "gallery", skip_bad=skip_bad), skip_bad)
        queries = readable(read_images(Path(source), "query", skip_bad=skip_bad), skip_bad)
        if not any(gallery.domains):
            raise FashionlabError(f"{source}: no domain column; predict ranks its consumer rows against its shop rows")
        g = embed_fused(models, gallery.paths, tta, "concat", batch, workers, device)
        q = embed_fused(models, queries.paths, tta, "concat", batch, workers, device)
        idx, scores = rank_exact(q, g, TOP)
        results = [(qid, [gallery.ids[j] for j in row], s.tolist()) for qid, row, s in zip(queries.ids, idx, scores)]
        return write_ranks(Path(out), results)


__all__ = ["RetrievalConfig", "RetrievalTask"]
