"""``train_retrieval``: items CSV -> split by item -> Lightning loop in a time budget -> best-by-mAP@10 weights.

The run folder is the engine's (``RunFiles``): config.yaml, data.json, history.csv, state.json,
weights/best.pt (highest validation mAP@10 so far) and weights/last.ckpt (``--resume``), metrics.json,
plots/curves.png, plots/retrieval_examples.png, predictions/val.csv (RANKS) and
predictions/val_matches.csv (MATCHES), so ``fashionlab evaluate retrieval --pred RUN/predictions/val.csv
--truth RUN/predictions/val_matches.csv`` re-scores the run.
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ...config import save_config
from ...data.images import ImageDataset, check_images
from ...data.transforms import eval_transform, train_transform
from ...engine.callbacks import build_trainer
from ...engine.trainer import probe_train_speed
from ...engine.budget import Replanner, budget_clock_start, plan_epochs
from ...engine.image_size import native_size, size_for_photos
from ...engine.predictor import make_loader
from ...engine.run_files import RunFiles
from ...engine.trainer import TrainResult, resolve_device
from ...errors import FashionlabError
from ...io import atomic_open, write_json
from .config import RetrievalConfig
from .data import ItemTable, PKSampler, read_items, split_by_item, val_pairs
from .embed import LoadedRetrieval, embed_paths, rank_exact, write_ranks
from .features import create_feature_map
from .loss import retrieval_loss
from .metric import map_at_k
from .model import RetrievalNet, build_net, load_retrieval_payload, save_retrieval
from .plots import plot_examples

log = logging.getLogger(__name__)


def load_data(cfg: RetrievalConfig) -> tuple[ItemTable, ItemTable]:
    """Train/val tables: ``val_data`` if given, else whole items held out; images checked."""
    table = read_items(Path(cfg.data), cfg.root or None, skip_bad=cfg.skip_bad)
    if cfg.val_data:
        train, val = table, read_items(Path(cfg.val_data), cfg.root or None, skip_bad=cfg.skip_bad)
    else:
        train, val = split_by_item(table, cfg.val_fraction, getattr(cfg, "data_seed", cfg.seed))  # split_seed or seed
    train, val = train.subset(check_images(train.paths, cfg.skip_bad)), val.subset(check_images(val.paths, cfg.skip_bad))
    if len(set(train.items)) < 2:
        raise FashionlabError(f"{cfg.data}: fewer than two training items left")
    if not val_pairs(val)[0]:
        raise FashionlabError(f"{cfg.val_data or cfg.data}: no validation queries (held-out items need both shop and "
                              "consumer images; set val_fraction > 0 or pass --val-data)")
    return train, val


def ranking(val: ItemTable, embeddings: np.ndarray, top: int = 10) -> tuple[list, dict[str, set[str]]]:
    """Rank the val shop images for each val consumer image: (results, matches)."""
    queries, gallery, matches = val_pairs(val)
    idx, scores = rank_exact(embeddings[queries], embeddings[gallery], top)
    results = [(val.ids[q], [val.ids[gallery[j]] for j in row], s.tolist()) for q, row, s in zip(queries, idx, scores)]
    return results, matches


def score_embeddings(val: ItemTable, embeddings: np.ndarray) -> dict[str, float]:
    results, matches = ranking(val, embeddings)
    return map_at_k({q: ranked for q, ranked, _ in results}, matches, k=10)


def train_retrieval(cfg: RetrievalConfig, resume: bool = False) -> TrainResult:
    started = budget_clock_start()
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from .lit import LitRetrieval

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    train_set, val_set = load_data(cfg)  # before creating RUN: bad data leaves no folder behind
    files = RunFiles(Path(cfg.out))
    files.prepare()
    state = files.read_state() if resume else {}
    save_config(cfg, files.config)
    item_names = sorted(set(train_set.items))
    label_of = {name: i for i, name in enumerate(item_names)}
    labels = [label_of[i] for i in train_set.items]
    categories = sorted({c for c in train_set.categories if c}) if cfg.category_head else []
    cat_index = [categories.index(c) if c in categories else -1 for c in train_set.categories]
    write_json(files.run / "data.json", {
        "train_images": len(train_set), "train_items": len(item_names), "val_images": len(val_set),
        "val_items": len(set(val_set.items)), "val_queries": len(val_pairs(val_set)[0]),
        "val_gallery": len(val_pairs(val_set)[1]), "categories": categories,
        "train_counts": dict(sorted(Counter(train_set.domains).items()))})
    if cfg.imgsz is None:
        cfg.imgsz = size_for_photos(native_size(train_set.paths, seed=cfg.seed))
        log.info("image size %d (from the photos' own size)", cfg.imgsz)
    device = resolve_device(cfg.device)
    feature_map = create_feature_map(cfg.model, cfg.pretrained, cfg.output_stride)
    log.info("backbone %s (last feature map, stride %d), weights: %s", cfg.model, cfg.output_stride, feature_map.weights)
    spec = {"model": cfg.model, "imgsz": cfg.imgsz, "branches": cfg.branches, "embed_dim": cfg.embed_dim,
            "stripes": cfg.stripes, "rings": cfg.rings, "output_stride": cfg.output_stride, "categories": categories}
    net = build_net(feature_map, spec, n_ids=len(item_names))
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    mean, std = feature_map.mean, feature_map.std
    best = {"metric": state.get("best_metric", -math.inf)}
    history: list[dict] = list(state.get("history", []))

    def score(embeddings: np.ndarray) -> float:
        return float(score_embeddings(val_set, embeddings)["map@10"])

    def save_if_best(metric: float, stage: str, epoch: int) -> None:
        if metric > best["metric"]:
            best["metric"] = metric
            save_retrieval(files.best, net, spec, mean, std, {"metric": "map@10", "value": metric, "stage": stage,
                                                              "epoch": epoch, "train_items": len(item_names)})

    train_ds = ImageDataset(train_set.paths, list(zip(labels, cat_index)), train_transform(
        cfg.imgsz, mean, std, cfg.scale_min, cfg.hflip, cfg.color_jitter))
    if cfg.k_per_item > 0:
        sampler = PKSampler(labels, cfg.batch // cfg.k_per_item, cfg.k_per_item, cfg.seed)
        train_loader = DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg.workers,
                                  persistent_workers=cfg.workers > 0)
    else:
        train_loader = make_loader(train_ds, cfg.batch, cfg.workers, shuffle=True, drop_last=len(train_ds) > cfg.batch)
    val_ds = ImageDataset(val_set.paths, list(range(len(val_set))), eval_transform(cfg.imgsz, mean, std))
    val_loader = make_loader(val_ds, cfg.batch * 2, cfg.workers)

    resuming = resume and files.last_ckpt.is_file()
    if resume and not resuming:
        log.warning("%s: nothing to resume, starting from the beginning", files.last_ckpt)
    if resuming:
        epochs, plan = int(state["epochs"]), state.get("plan")
    elif cfg.time_budget > 0:
        def loss_of(trial, batch):
            images, (labels, categories) = batch
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            parts, logits, category = trial(images.to(device))
            loss, _ = retrieval_loss(parts, logits, category, labels.to(device), categories.to(device),
                                     cfg.label_smoothing, cfg.triplet_weight, cfg.margin, cfg.category_weight)
            return loss, len(images)

        # small batches: on 2 CPU cores a full batch costs seconds, and the probe comes out of the budget
        probe_loader = make_loader(train_ds, min(cfg.batch, 8), 0, shuffle=True, drop_last=True)
        train_s = probe_train_speed(net, probe_loader, loss_of, device, batches=3, warmup=1)
        n_train = len(train_loader) * cfg.batch if cfg.k_per_item else len(train_set)
        budget = plan_epochs(cfg.time_budget, time.perf_counter() - started, n_train, len(val_set), train_s,
                             train_s / 3, cfg.epochs)
        # the final evaluation embeds val twice (flip views): keep room for it
        final_s = 2 * len(val_set) * budget.infer_s_per_image + 5.0
        if final_s > budget.reserve_s:
            budget = plan_epochs(cfg.time_budget + budget.reserve_s - final_s, time.perf_counter() - started,
                                 n_train, len(val_set), train_s, train_s / 3, cfg.epochs)
        epochs, plan = budget.epochs, {**budget.to_dict(), "reserve_s": max(final_s, budget.reserve_s),
                                       "imgsz": cfg.imgsz}
        log.info("time budget %.0fs: %d epoch(s) (%s)", cfg.time_budget, epochs, budget.reason)
    else:
        epochs, plan = (10 if cfg.epochs is None else cfg.epochs), None
    save_config(cfg, files.config)
    if epochs == 0 and not files.best.is_file():  # nothing to train: the initial model is the result
        net.eval()
        save_if_best(score(embed_table(net, spec, mean, std, val_set, "none", cfg, device)), "init", 0)

    deadline = started + cfg.time_budget - (plan or {}).get("reserve_s", 0.0)
    planned = Replanner.from_plan(epochs, deadline, cfg.epochs, plan)

    def write_state() -> None:
        files.write_state({"epochs": planned.epochs, "plan": plan, "history": history, "best_metric": best["metric"]})

    write_state()

    def on_validated(epoch: int, train_loss: float, metric: float, images_per_s: float, wall_s: float) -> int | None:
        history.append({"stage": "finetune", "epoch": epoch, "train_loss": train_loss, "val_metric": metric,
                        "train_images_per_s": images_per_s})
        save_if_best(metric, "finetune", epoch)
        new_total = None
        if cfg.time_budget > 0 and not resuming:  # re-plan from the measured epoch time
            new_total = planned.after_epoch(epoch, wall_s)
        write_state()
        files.write_history(history)
        return new_total

    if epochs > 0:
        net.train()
        steps_per_epoch = len(train_loader)
        module = LitRetrieval(net, cfg, epochs * steps_per_epoch, steps_per_epoch, len(val_set), score, on_validated)
        callbacks: list = [ModelCheckpoint(dirpath=str(files.weights), filename="last", save_top_k=1, monitor=None,
                                           enable_version_counter=False)]
        if cfg.patience > 0:
            from lightning.pytorch.callbacks import EarlyStopping

            callbacks.append(EarlyStopping(monitor="val_metric", mode="max", patience=cfg.patience))
        trainer = build_trainer(cfg, files, epochs, device, callbacks, deadline - time.perf_counter(), resuming)
        fit_module = torch.compile(module) if cfg.compile else module
        trainer.fit(fit_module, train_loader, val_loader, ckpt_path=str(files.last_ckpt) if resuming else None,
                    weights_only=True)
    files.write_history(history)
    return finish(cfg, files, val_set, device, history, plan, time.perf_counter() - started)


def embed_table(net: RetrievalNet, spec: dict, mean, std, table: ItemTable, tta: str, cfg: RetrievalConfig,
                device: str) -> np.ndarray:
    model = LoadedRetrieval(net, {**spec, "dim": net.dim, "mean": mean, "std": std}, Path(""), "")
    return embed_paths(model, table.paths, tta, cfg.batch * 2, cfg.workers, device)


def finish(cfg: RetrievalConfig, files: RunFiles, val_set: ItemTable, device: str, history: list[dict],
           plan: dict | None, seconds: float) -> TrainResult:
    """Score the best weights on validation with ``cfg.tta`` (best.pt records its score without TTA);
    write metrics, the val rankings and matches, and the plots."""
    if not files.best.is_file():
        raise FashionlabError(f"{files.run}: training produced no checkpoint (no epochs ran?)")
    net, spec = load_retrieval_payload(files.best)
    net.to(device)
    embeddings = embed_table(net, spec, spec["mean"], spec["std"], val_set, cfg.tta, cfg, device)
    results, matches = ranking(val_set, embeddings)
    scores = map_at_k({q: r for q, r, _ in results}, matches, k=10)
    metrics = {"task": "retrieval", "metric": "map@10", "tta": cfg.tta, **scores,
               "map@10_no_tta": spec["extra"].get("value"), "embedding_dim": int(spec["dim"]),
               "branches": spec["branches"], "train_seconds": round(seconds, 1),
               "best": spec["extra"]}
    write_ranks(files.predictions / "val.csv", results)
    with atomic_open(files.predictions / "val_matches.csv", "w", encoding="utf-8", newline="") as handle:
        handle.write("query_id,gallery_id\n")
        handle.writelines(f"{q},{g}\n" for q, gs in matches.items() for g in sorted(gs))
    write_json(files.metrics, metrics)
    if plan:
        write_json(files.run / "plan.json", plan)
    files.plot(history, "map@10", metrics)
    plot_examples(val_set, results, matches, files.plots / "retrieval_examples.png")
    return TrainResult(files.run, files.best, metrics)
