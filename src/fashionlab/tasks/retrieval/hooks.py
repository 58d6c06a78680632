"""The retrieval task's training hooks: items CSV split by item, multi-branch embedding net trained as
ID classification (+ batch-hard triplet, + category), validation mAP@10 of val consumer photos ranked
against val shop photos.

The run folder is the engine's: config.yaml, data.json, history.csv, state.json, weights/best.pt
(highest validation mAP@10 so far), weights/last.ckpt, metrics.json, plots/curves.png,
plots/retrieval_examples.png, predictions/val.csv (RANKS) and predictions/val_matches.csv (MATCHES), so
``fashionlab evaluate retrieval --pred RUN/predictions/val.csv --truth RUN/predictions/val_matches.csv``
re-scores the run.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.images import ImageDataset, check_images
from ...data.transforms import eval_transform, train_transform
from ...engine.hooks import FitHooks, TrainResult
from ...engine.predictor import make_loader
from ...engine.run_files import RunFiles
from ...errors import FashionlabError
from ...io import atomic_open
from .config import EPOCH_IMAGES_CAP
from .data import DOMAINS, ItemTable, PKSampler, read_items, split_by_item, val_pairs, with_distractors
from .embed import LoadedRetrieval, embed_paths, rank_exact, write_ranks
from .features import StageWithHead, create_feature_map
from .loss import retrieval_loss
from .metric import map_at_k
from .model import build_net, frozen_embedding, load_retrieval_payload, save_retrieval
from .plots import plot_examples

log = logging.getLogger(__name__)


def fold_by_item(table: ItemTable, folds: int, fold: int, seed: int) -> tuple[ItemTable, ItemTable]:
    """Fold ``fold`` of K: items with both shop and consumer images are dealt round-robin into K folds
    (seeded); the others always train."""
    domains: dict[str, set[str]] = {}
    for item, domain in zip(table.items, table.domains):
        domains.setdefault(item, set()).add(domain)
    eligible = [i for i in sorted(domains) if domains[i] >= set(DOMAINS)]
    if len(eligible) < folds:
        raise FashionlabError(f"{folds} folds need at least {folds} items with shop and consumer images; "
                              f"found {len(eligible)}")
    order = np.random.default_rng(seed).permutation(len(eligible))
    val_items = {eligible[j] for n, j in enumerate(order) if n % folds == fold}
    train = [i for i, item in enumerate(table.items) if item not in val_items]
    val = [i for i, item in enumerate(table.items) if item in val_items]
    return table.subset(train), table.subset(val)


def ranking(val: ItemTable, embeddings: np.ndarray, top: int = 10) -> tuple[list, dict[str, set[str]]]:
    """Rank the val shop images for each val consumer image: (results, matches)."""
    queries, gallery, matches = val_pairs(val)
    idx, scores = rank_exact(embeddings[queries], embeddings[gallery], top)
    results = [(val.ids[q], [val.ids[gallery[j]] for j in row], s.tolist()) for q, row, s in zip(queries, idx, scores)]
    return results, matches


def score_embeddings(val: ItemTable, embeddings: np.ndarray) -> dict[str, float]:
    results, matches = ranking(val, embeddings)
    return map_at_k({q: ranked for q, ranked, _ in results}, matches, k=10)


class RetrievalHooks(FitHooks):
    """``cfg`` is a RetrievalConfig."""

    metric = "map@10"
    higher_is_better = True
    find_unused = True  # the category head sees no gradient in batches without categories

    def load_data(self) -> None:
        """Train/val tables: ``val_data`` if given, else whole items held out (or a fold of items)."""
        cfg = self.cfg
        table = read_items(Path(cfg.data), cfg.root or None, skip_bad=cfg.skip_bad)
        held_out = not cfg.val_data
        if cfg.folds > 1:
            train, val = fold_by_item(table, cfg.folds, cfg.fold, cfg.data_seed)
        elif cfg.val_data:
            train, val = table, read_items(Path(cfg.val_data), cfg.root or None, skip_bad=cfg.skip_bad)
        else:
            train, val = split_by_item(table, cfg.val_fraction, cfg.data_seed)
        train = train.subset(check_images(train.paths, cfg.skip_bad))
        val = val.subset(check_images(val.paths, cfg.skip_bad))
        if held_out and cfg.distractors and len(val):
            val = with_distractors(val, train)
        if len(set(train.items)) < 2:
            raise FashionlabError(f"{cfg.data}: fewer than two training items left")
        if not val_pairs(val)[0]:
            raise FashionlabError(f"{cfg.val_data or cfg.data}: no validation queries (held-out items need both shop "
                                  "and consumer images; set val_fraction > 0 or pass --val-data)")
        self.train_set, self.val_set = train, val
        self.item_names = sorted(set(train.items))
        label_of = {name: i for i, name in enumerate(self.item_names)}
        self.labels = [label_of[i] for i in train.items]
        self.categories = sorted({c for c in train.categories if c}) if cfg.category_head else []
        self.cat_index = [self.categories.index(c) if c in self.categories else -1 for c in train.categories]

    def data_summary(self) -> dict[str, Any]:
        train, val = self.train_set, self.val_set
        queries, gallery, _ = val_pairs(val)
        query_items, gallery_items = {val.items[i] for i in queries}, {val.items[i] for i in gallery}
        return {"train_images": len(train), "train_items": len(self.item_names), "val_images": len(val),
                "val_items": len(query_items), "val_queries": len(queries), "val_gallery": len(gallery),
                "val_distractors": len(gallery_items - query_items),
                "categories": self.categories, "train_counts": dict(sorted(Counter(train.domains).items()))}

    def build_model(self) -> torch.nn.Module:
        cfg = self.cfg
        feature_map = create_feature_map(cfg.model, cfg.pretrained, cfg.output_stride, cfg.head_conv)
        head_conv = cfg.head_conv and isinstance(feature_map.model, StageWithHead)
        if cfg.head_conv and not head_conv:
            log.warning("head_conv: %s has no 1x1 head convolution to keep; the branches read its last stage",
                        cfg.model)
        log.info("backbone %s (last feature map%s, stride %d, %d channels), weights: %s", cfg.model,
                 " + head conv" if head_conv else "", cfg.output_stride, feature_map.channels, feature_map.weights)
        self.spec = {"model": cfg.model, "imgsz": cfg.imgsz, "branches": cfg.branches, "embed_dim": cfg.embed_dim,
                     "stripes": cfg.stripes, "rings": cfg.rings, "output_stride": cfg.output_stride,
                     "categories": self.categories, "head_conv": head_conv, "raw_weight": cfg.raw_weight,
                     "frozen_weight": cfg.frozen_weight}
        net = build_net(feature_map, self.spec, n_ids=len(self.item_names))
        self.frozen = frozen_embedding(cfg.model, cfg.pretrained) if cfg.frozen_weight > 0 else None
        if self.frozen is not None and self.frozen.source == "random init":
            log.info("frozen_weight: %s has no pretrained weights here; the embedding is the trained parts alone",
                     cfg.model)
            self.frozen, self.spec["frozen_weight"] = None, 0.0
        if cfg.channels_last:
            net.to(memory_format=torch.channels_last)
        self.mean, self.std = feature_map.mean, feature_map.std
        return net

    def datasets(self, imgsz: int):
        cfg = self.cfg
        train_ds = ImageDataset(self.train_set.paths, list(zip(self.labels, self.cat_index)), train_transform(
            imgsz, self.mean, self.std, cfg.scale_min, cfg.hflip, cfg.color_jitter))
        val_ds = ImageDataset(self.val_set.paths, list(range(self.n_val)), eval_transform(imgsz, self.mean, self.std))
        return train_ds, val_ds

    def train_loader(self, dataset, rank: int, world: int):
        cfg = self.cfg
        if cfg.k_per_item <= 0:
            return None
        anchors: dict[int, list[int]] = {}
        if cfg.shop_anchor:
            for i, (label, domain) in enumerate(zip(self.labels, self.train_set.domains)):
                if domain == "shop":
                    anchors.setdefault(label, []).append(i)
        epoch_images = min(len(self.labels), EPOCH_IMAGES_CAP) if cfg.epoch_images < 0 else cfg.epoch_images
        sampler = PKSampler(self.labels, cfg.batch // cfg.k_per_item, cfg.k_per_item, cfg.seed, rank, world,
                            epoch_images, anchors)
        return make_loader(dataset, cfg.batch, cfg.workers, batch_sampler=sampler)

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else images

    def loss_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        images, (labels, categories) = batch
        cfg = self.cfg
        parts, logits, category = net(self._images(images))
        loss, _ = retrieval_loss(parts, logits, category, labels, categories, cfg.label_smoothing,
                                 cfg.triplet_weight, cfg.margin, cfg.category_weight)
        return loss, len(images)

    def val_step(self, net: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, index = batch
        return index, net.embed(self._images(images))

    def score(self, outputs: np.ndarray) -> float:
        return float(score_embeddings(self.val_set, outputs)["map@10"])

    def final_eval_s(self, infer_s_per_image: float) -> float:
        """``finish`` embeds val twice (flip views), with the frozen copy's pass too when best.pt holds one."""
        frozen = 1.5 if self.cfg.frozen_weight > 0 else 1.0  # the copy runs at stride 32: cheaper than the net
        return 2 * self.n_val * infer_s_per_image * frozen + 5.0

    def save_weights(self, path: Path, net: torch.nn.Module, imgsz: int, info: dict[str, Any]) -> None:
        save_retrieval(path, net, self.spec, self.mean, self.std, {**info, "train_items": len(self.item_names)},
                       self.frozen)

    def finish(self, files: RunFiles, device: str) -> TrainResult:
        """Score the best weights on validation with ``cfg.tta`` (best.pt records its score without TTA);
        write the val rankings and matches, and the examples plot."""
        cfg = self.cfg
        net, spec = load_retrieval_payload(files.best)
        net.to(device)
        model = LoadedRetrieval(net, spec, files.best, "")
        embeddings = embed_paths(model, self.val_set.paths, cfg.tta, cfg.batch * 2, cfg.workers, device)
        results, matches = ranking(self.val_set, embeddings)
        scores = map_at_k({q: r for q, r, _ in results}, matches, k=10)
        metrics = {"tta": cfg.tta, **scores, "map@10_no_tta": spec["extra"].get("value"),
                   "embedding_dim": int(spec["dim"]), "branches": spec["branches"], "best": spec["extra"]}
        write_ranks(files.predictions / "val.csv", results)
        with atomic_open(files.predictions / "val_matches.csv", "w", encoding="utf-8", newline="") as handle:
            handle.write("query_id,gallery_id\n")
            handle.writelines(f"{q},{g}\n" for q, gs in matches.items() for g in sorted(gs))
        plot_examples(self.val_set, results, matches, files.plots / "retrieval_examples.png")
        return TrainResult(files.run, files.best, metrics, self.val_set, (results, matches))
