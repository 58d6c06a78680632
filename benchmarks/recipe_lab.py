"""Recipe lab (issue 16, part B): what should the default do with 480 s on 2 CPU cores?

Trains efficientnet_lite0 variants on the real sets with a compact loop of its own and scores them on
the benchmark's held-out photos (trashnet: stratified 20 % test split, seed 0; clothing: train/ ->
validation/; attributes: 20 % of label.csv, seed 0).

Compute convention. The CPU is shared with other jobs, so budgets are never wall clock, and not
2-thread CPU time either (under contention, OpenMP threads spin while waiting for each other and
CPU-s per image doubled or halved between sizes in the same minute). The lab runs with ONE torch
thread, where ``time.process_time`` is a clean measure of work, and every run gets a fixed number of
training image-steps derived from a 1-thread calibration of CPU-s per image for each method and size
(``calibrate``). The budget is anchored on the plain loop of issue 16, which trained 9 epochs of 1,609
TrashNet photos at 112 px in 480 s on 2 quiet cores: 14,500 training images at 112 px. In 1-thread
CPU-s the budget is ``BUDGET_112_IMAGES x cost(full@112)``, shared between decoding, feature
extraction and training steps exactly as each recipe spends it. (Assumption, stated in the report: the 2-thread speed-up is about the same at every
size and for every method.) Every run also records the CPU-s it actually used.

    python benchmarks/recipe_lab.py calibrate                  # -> out/recipe_lab/calibration.json
    python benchmarks/recipe_lab.py pipeline --data clothing   # Q1: data pipeline cost (workers vs memory)
    python benchmarks/recipe_lab.py full --data trashnet size=112 seed=0 ema=0.999
    python benchmarks/recipe_lab.py partial --data clothing size=224 cache_size=256 seed=1
    python benchmarks/recipe_lab.py probe --data attributes size=224
    python benchmarks/recipe_lab.py table                      # results.jsonl -> a markdown table

Records go to benchmarks/out/recipe_lab/results.jsonl (one JSON line per run) and test probabilities to
benchmarks/out/recipe_lab/probs/<run id>.npz (for ensembles: ``ensemble ID:KEY ID:KEY ...``).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from plain import Rows, read_attributes, read_classify
from splits import attributes_split, classify_split

from fashionlab.data.memory import BatchAugment, decode_images, normalise, resize_batch
from fashionlab.models.backbone import create_backbone
from fashionlab.models.partial import TailClassifier, TailRecipe, cache_maps, fit_tail, predict_tail, split_backbone
from fashionlab.tasks.attributes.metric import attributes_map

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "recipe_lab"
ROOT = REPO.parent / "shared" / "data"
BUDGET_112_IMAGES = 14_500  # issue 16's plain loop in 480 s on 2 quiet cores: 9 epochs of 1,609 photos at 112 px
THREADS = int(os.environ.get("LAB_THREADS", "1"))
torch.set_num_threads(THREADS)


@dataclass
class Data:
    name: str
    task: str
    train: Rows
    test: Rows
    width: int


def load(name: str, seed: int = 0) -> Data:
    """The benchmark's split for ``seed``, written once (concurrent lab runs then share the folders)."""
    work = OUT / "splits" / f"{name}{seed}"
    if name == "clothing":
        folders, task = (ROOT / "clothing-256" / "train", ROOT / "clothing-256" / "validation"), "classify"
    elif name in ("trashnet", "attributes"):
        task = "classify" if name == "trashnet" else "attributes"
        if not (work / "ready").is_file():
            if name == "trashnet":
                classify_split(ROOT / "trashnet-112", work, seed)
            else:
                attributes_split(ROOT / "clothing-attributes", work, seed)
            (work / "ready").write_text("")
        folders = (work / "train", work / "test")
    else:
        raise SystemExit(f"unknown data '{name}'")
    reader = read_attributes if task == "attributes" else read_classify
    train, test, _, width = reader(*folders)
    return Data(name, task, train, test, width)


def subset(rows: Rows, index: np.ndarray) -> Rows:
    return Rows([rows.paths[i] for i in index], [rows.keys[i] for i in index], [rows.tasks[i] for i in index],
                rows.target[index], rows.lo[index], rows.hi[index])


def score(data: Data, probs: list[np.ndarray]) -> dict[str, float]:
    """accuracy (classify) or the official attributes mAP (labels rebuilt: this release has no 'm')."""
    t = data.test
    if data.task == "classify":
        return {"value": float(np.mean([int(np.argmax(p)) == y for p, y in zip(probs, t.target)]))}
    labels = ["".join("y" if j == y - lo else "n" for j in range(hi - lo)) for y, lo, hi in zip(t.target, t.lo, t.hi)]
    m = attributes_map(zip(t.tasks, labels, probs))
    return {"value": m["map"], "accuracy": m["accuracy"], **{f"ap_{k}": v for k, v in m["per_task"].items()}}


def sliced_probs(logits: torch.Tensor, rows: Rows, index: np.ndarray) -> list[np.ndarray]:
    return [logits[j, rows.lo[i]:rows.hi[i]].softmax(0).numpy() for j, i in enumerate(index)]


def sliced_loss(logits: torch.Tensor, rows: Rows, index: np.ndarray, smoothing: float) -> torch.Tensor:
    lo, hi, target = rows.lo[index], rows.hi[index], rows.target[index]
    total = logits.new_zeros(())
    for a, b in sorted(set(zip(lo.tolist(), hi.tolist()))):
        sel = np.flatnonzero((lo == a) & (hi == b))
        total = total + F.cross_entropy(logits[sel, a:b], torch.as_tensor(target[sel] - a), label_smoothing=smoothing,
                                        reduction="sum")
    return total / len(index)


def lr_at(step: int, total: int, lr: float, schedule: str, warmup: float) -> float:
    w = int(total * warmup)
    if step < w:
        return lr * (step + 1) / w
    if schedule == "constant":
        return lr
    progress = (step - w) / max(1, total - w)
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return lr * (1 - progress)
    raise SystemExit(f"unknown schedule '{schedule}'")


class Ema:
    """Exponential moving average of parameters and buffers (BatchNorm statistics too)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.model = decay, copy.deepcopy(model).eval()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, m in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(self.decay).add_(m.detach(), alpha=1 - self.decay)
            else:
                e.copy_(m)


def calibration() -> dict[str, float]:
    path = OUT / "calibration.json"
    if not path.is_file():
        raise SystemExit(f"{path}: run `python benchmarks/recipe_lab.py calibrate` first")
    return json.loads(path.read_text())["cpu_s_per_image"]


def cost(kind: str, size: int, cal: dict[str, float]) -> float:
    """CPU-s per image for ``kind`` at ``size``, interpolated in pixels from the calibrated sizes."""
    known = sorted((int(k.split("@")[1]), v) for k, v in cal.items() if k.split("@")[0] == kind)
    if not known:
        raise SystemExit(f"calibration has no '{kind}' entries")
    for s, v in known:
        if s == size:
            return v
    # cost per pixel is near constant between neighbouring sizes: interpolate the per-pixel cost
    per_px = [(s, v / s**2) for s, v in known]
    lo = max([p for p in per_px if p[0] <= size], default=per_px[0], key=lambda p: p[0])
    hi = min([p for p in per_px if p[0] >= size], default=per_px[-1], key=lambda p: p[0])
    f = 0.0 if hi[0] == lo[0] else (size - lo[0]) / (hi[0] - lo[0])
    return (lo[1] + f * (hi[1] - lo[1])) * size**2


def budget_cpu_s(cfg: dict[str, Any], cal: dict[str, float]) -> float:
    """The run's budget in 1-thread CPU-s: ``budget`` (a fraction of the 480 s anchor, default 1)."""
    return float(cfg.get("budget", 1.0)) * BUDGET_112_IMAGES * cost("full", 112, cal)


# ---------------------------------------------------------------- full fine-tuning on the memory cache
def build(width: int, model_name: str = "efficientnet_lite0", drop: float = 0.0) -> tuple[nn.Module, tuple, tuple]:
    backbone = create_backbone(model_name, drop_rate=drop)
    model = nn.Sequential(backbone.model, nn.Linear(backbone.num_features, width))
    return model.to(memory_format=torch.channels_last), backbone.mean, backbone.std


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, rows: Rows, mean, std, size: int, flip: bool,
            batch: int = 64) -> list[np.ndarray]:
    model.eval()
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch):
        x = normalise(resize_batch(images[start:start + batch], size), mean, std)
        index = np.arange(start, start + len(x))
        probs = sliced_probs(model(x), rows, index)
        if flip:
            probs = [(p + q) / 2 for p, q in zip(probs, sliced_probs(model(x.flip(-1)), rows, index))]
        out += probs
    return out


@torch.no_grad()
def reestimate_bn(model: nn.Module, images: torch.Tensor, mean, std, size: int, n: int, gen: torch.Generator,
                  augment: BatchAugment) -> None:
    """Replace every BatchNorm's running statistics by their average over ``n`` augmented training images."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for start in range(0, n, 64):
        idx = torch.randint(0, len(images), (min(64, n - start),), generator=gen)
        model(normalise(augment(images[idx], size, gen), mean, std))
    for m in bns:
        m.momentum = 0.1


def fit_head(model: nn.Sequential, images: torch.Tensor, rows: Rows, mean, std, size: int, epochs: int,
             gen: torch.Generator) -> None:
    """Train ``model[1]`` (the linear layer) on the frozen backbone's pooled features (eval-mode BatchNorm)."""
    with torch.no_grad():
        model[0].eval()
        feats = torch.cat([model[0](normalise(resize_batch(images[i:i + 64], size), mean, std))
                           for i in range(0, len(images), 64)])
    head = model[1]
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        order = torch.randperm(len(feats), generator=gen).numpy()
        for i in range(0, len(order), 128):
            index = order[i:i + 128]
            loss = sliced_loss(head(feats[index]), rows, index, 0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()


def _emas(cfg: dict[str, Any], model: nn.Module) -> dict[str, Ema]:
    """``ema=0.99/0.998``: one EMA per decay, all updated every step (their evaluation is free)."""
    decays = [float(d) for d in str(cfg.get("ema", "0")).split("/") if float(d) > 0]
    return {f"ema{d:g}": Ema(model, d) for d in decays}


def run_full(data: Data, cfg: dict[str, Any], cal: dict[str, float]) -> tuple[dict[str, Any], dict[str, list]]:
    """Full fine-tune on decoded-once photos; sizes ``size`` or a progressive ``sizes`` list (112/160)."""
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train = data.train
    if float(cfg.get("holdout", 0)) > 0:  # train on (1 - holdout) of the photos, as fashionlab's default does
        from splits import stratified_indices

        strata = [f"{t}:{y}" for t, y in zip(train.tasks, train.target)]
        keep, _ = stratified_indices(strata, float(cfg["holdout"]), seed)
        train = subset(train, np.array(keep))
    sizes = [int(s) for s in str(cfg.get("sizes", cfg.get("size", 112))).split("/")]
    cache = max(sizes)
    model_name = cfg.get("model", "efficientnet_lite0")
    kind = "full" if model_name == "efficientnet_lite0" else f"full_{model_name}"
    budget = budget_cpu_s(cfg, cal)
    batch, lr = int(cfg.get("batch", 32)), float(cfg.get("lr", 1e-3))
    cpu0 = time.process_time()
    images = decode_images(train.paths, cache)
    spent = cost("decode", cache, cal) * len(images)
    bn_images = int(cfg.get("bn_reestimate", 0))
    spent += bn_images * cost("fwd", sizes[0], cal)
    # the remaining budget split equally (in CPU-s) between the progressive sizes
    per_size = (budget - spent) / len(sizes)
    steps_per_size = [max(1, int(per_size / cost(kind, s, cal) / batch)) for s in sizes]
    total = sum(steps_per_size)
    model, mean, std = build(data.width, model_name, float(cfg.get("drop", 0.0)))
    augment = BatchAugment(scale=(float(cfg.get("scale_min", 0.35)), 1.0), jitter=float(cfg.get("jitter", 0.0)))
    if bn_images:
        reestimate_bn(model, images, mean, std, sizes[0], bn_images, gen, augment)
    if int(cfg.get("head_init", 0)):  # fashionlab's head stage: the new layer fitted on frozen features first
        spent += len(images) * cost("fwd", sizes[0], cal)
        fit_head(model, images, train, mean, std, sizes[0], int(cfg["head_init"]), gen)
        steps_per_size = [max(1, int((budget - spent) / len(sizes) / cost(kind, s, cal) / batch)) for s in sizes]
        total = sum(steps_per_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(cfg.get("wd", 0.01)))
    emas = _emas(cfg, model)
    evals_at = {int(float(f) * total) for f in str(cfg.get("evals_at", "")).split("/") if f}
    test_sizes = sorted({sizes[-1], *[int(s) for s in str(cfg.get("test_sizes", sizes[-1])).split("/")]})
    test_images = decode_images(data.test.paths, max(test_sizes))  # evaluation: not charged to the budget
    scores: dict[str, Any] = {}
    probs: dict[str, list] = {}
    eval_cpu = 0.0
    n = len(images)
    step, order, pos = 0, torch.randperm(n, generator=gen).numpy(), 0
    for size, steps in zip(sizes, steps_per_size):
        for _ in range(steps):
            model.train()
            if pos + batch > n:
                order, pos = torch.randperm(n, generator=gen).numpy(), 0
            index = order[pos:pos + batch]
            pos += batch
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, total, lr, cfg.get("schedule", "constant"), float(cfg.get("warmup", 0.0)))
            loss = sliced_loss(model(normalise(augment(images[index], size, gen), mean, std)), train, index,
                               float(cfg.get("smoothing", 0.1)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for ema in emas.values():
                ema.update(model)
            step += 1
            if step in evals_at and step < total:  # a mid-run look (constant LR: what a shorter budget gives)
                e0 = time.process_time()
                for name, net in (("raw", model), *((k, e.model) for k, e in emas.items())):
                    key = f"{name}@{size}@{step / total:.2f}"
                    scores[key] = score(data, predict(net, test_images, data.test, mean, std, size, False))
                eval_cpu += time.process_time() - e0
    cpu_train = time.process_time() - cpu0 - eval_cpu
    for name, net in (("raw", model), *((k, e.model) for k, e in emas.items())):
        for ts in test_sizes:
            for flip in (False, True):
                key = f"{name}@{ts}{'+flip' if flip else ''}"
                probs[key] = predict(net, test_images, data.test, mean, std, ts, flip)
                scores[key] = score(data, probs[key])
    record = {"epochs": round(step * batch / n, 2), "steps": step, "n_train": n, "cpu_s": round(cpu_train, 1),
              "budget_cpu_s": round(budget, 1),
              "planned_cpu_s": round(spent + sum(s * batch * cost(kind, z, cal) for s, z in zip(steps_per_size, sizes)), 1),
              "scores": scores}
    return record, probs


# ---------------------------------------------------------------- partial fine-tuning on cached maps
def run_partial(data: Data, cfg: dict[str, Any], cal: dict[str, float]) -> tuple[dict[str, Any], dict[str, list]]:
    """Cache the frozen stem's maps once (optionally a mirrored view and a larger training size), then train
    the tail for the rest of the budget."""
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    size = int(cfg.get("size", 224))  # the test size, and the training size without cache_size
    train_size = int(cfg.get("cache_size", size))
    at = int(cfg.get("at", 5))
    flip = cfg.get("flip", "cache")  # cache: a mirrored view is cached too; map: flip the maps; none
    runtime = cfg.get("runtime", "onnx")
    budget = budget_cpu_s(cfg, cal)
    backbone = create_backbone(cfg.get("model", "efficientnet_lite0"))
    split = split_backbone(backbone.model, at)
    crop = size // split.reduction
    cpu0 = time.process_time()
    decode_at = max(train_size, size)
    images = decode_images(data.train.paths, decode_at)
    views = 2 if flip == "cache" else 1
    maps = cache_maps(split.stem, images, backbone.mean, backbone.std, train_size, flip=flip == "cache",
                      runtime=runtime, threads=torch.get_num_threads())
    spent = cost("decode", decode_at, cal) * len(images) + views * len(images) * cost(f"stem{at}_{runtime}", train_size, cal)
    batch = int(cfg.get("batch", 32))
    steps = max(1, int((budget - spent) / cost(f"tail{at}", size, cal) / batch))
    net = TailClassifier(split.tail, split.num_features, data.width, float(cfg.get("drop", 0.2)))
    net = net.to(memory_format=torch.channels_last)
    decay = float(str(cfg.get("ema", "0.99")).split("/")[0])
    recipe = TailRecipe(steps=steps, batch=batch, lr=float(cfg.get("lr", 1e-3)), weight_decay=float(cfg.get("wd", 0.01)),
                        warmup=float(cfg.get("warmup", 0.05)), smoothing=float(cfg.get("smoothing", 0.1)), ema=decay,
                        crop=crop if train_size > size else None, mirror_maps=flip == "map")
    fitted = fit_tail(net, maps, data.train.target, data.train.lo, data.train.hi, recipe, gen)
    n = len(maps)
    cpu_train = time.process_time() - cpu0
    test_images = decode_images(data.test.paths, size)
    test_maps = cache_maps(split.stem, test_images, backbone.mean, backbone.std, size, flip=True, runtime=runtime,
                           threads=torch.get_num_threads())
    scores: dict[str, Any] = {}
    probs: dict[str, list] = {}
    for name, model in (("raw", net), *(((f"ema{decay:g}", fitted),) if fitted is not net else ())):
        probs[f"{name}@{size}"] = predict_tail(model, test_maps[:, 0], data.test.lo, data.test.hi)
        probs[f"{name}@{size}+flip"] = predict_tail(model, test_maps, data.test.lo, data.test.hi)
        for key in (f"{name}@{size}", f"{name}@{size}+flip"):
            scores[key] = score(data, probs[key])
    record = {"epochs": round(steps * batch / n, 2), "steps": steps, "n_train": n, "cpu_s": round(cpu_train, 1),
              "planned_cpu_s": round(spent + steps * batch * cost(f"tail{at}", size, cal), 1),
              "budget_cpu_s": round(budget, 1), "extract_cpu_s_planned": round(spent, 1), "scores": scores}
    return record, probs


# ---------------------------------------------------------------- frozen probe (features + logistic regression)
@torch.no_grad()
def pooled_features(split, maps: torch.Tensor, batch: int = 64) -> np.ndarray:
    tail = split.tail.eval()
    views = [maps] if maps.dim() == 4 else [maps[:, v] for v in range(maps.shape[1])]
    feats = [torch.cat([tail(v[i:i + batch].float().contiguous(memory_format=torch.channels_last))
                        for i in range(0, len(v), batch)]) for v in views]
    return torch.stack(feats).mean(0).numpy()


def run_probe(data: Data, cfg: dict[str, Any], cal: dict[str, float]) -> tuple[dict[str, Any], dict[str, list]]:
    from probe import fit_predict

    size, flip = int(cfg.get("size", 224)), bool(int(cfg.get("flip", 0)))
    backbone = create_backbone(cfg.get("model", "efficientnet_lite0"))
    split = split_backbone(backbone.model, 5)
    cpu0 = time.process_time()
    feats = {}
    for part, rows in (("train", data.train), ("test", data.test)):
        images = decode_images(rows.paths, size)
        maps = cache_maps(split.stem, images, backbone.mean, backbone.std, size, flip=flip, runtime="onnx",
                          threads=torch.get_num_threads())
        feats[part] = pooled_features(split, maps)
    cpu_extract = time.process_time() - cpu0
    probs: list[np.ndarray | None] = [None] * len(data.test.paths)
    chosen = {}
    for lo in sorted(set(data.train.lo.tolist())):
        tr, te = np.flatnonzero(data.train.lo == lo), np.flatnonzero(data.test.lo == lo)
        hi = int(data.train.hi[tr[0]])
        p, chosen[data.train.tasks[tr[0]]] = fit_predict(feats["train"][tr], data.train.target[tr] - lo,
                                                         feats["test"][te], hi - lo, int(cfg.get("seed", 0)))
        for i, row in zip(te, p):
            probs[i] = row
    key = f"probe@{size}{'+flip' if flip else ''}"
    n = len(data.train.paths)
    record = {"cpu_s": round(time.process_time() - cpu0, 1), "cpu_extract_s": round(cpu_extract, 1), "C": chosen,
              "planned_cpu_s": round(n * (cost("decode", size, cal) + (1 + flip) * (
                  cost("stem5_onnx", size, cal) + cost("tailfwd5", size, cal))), 1),
              "n_train": n, "scores": {key: score(data, probs)}}
    return record, {key: probs}


# ---------------------------------------------------------------- calibration and the data pipeline (Q1)
def _cpu_per_image(fn, images: int, repeats: int = 6, warmup: int = 2) -> tuple[float, float]:
    """(CPU-s, wall s) per image of ``fn()``, which processes ``images`` images; medians over repeats."""
    for _ in range(warmup):
        fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append((time.process_time() - c) / images)
        wall.append((time.perf_counter() - w) / images)
    return float(np.median(cpu)), float(np.median(wall))


def calibrate(sizes: list[int], models: list[str], cuts: list[int]) -> None:
    """CPU-s per image: decode, full fine-tune step, forward, stem extraction, tail step — on clothing photos."""
    data = load("clothing")
    paths = data.train.paths[:256]
    result: dict[str, float] = {}
    wall: dict[str, float] = {}
    rows = data.train
    for size in sizes:
        c, w = _cpu_per_image(lambda: decode_images(paths[:64], size), 64, repeats=3, warmup=1)
        result[f"decode@{size}"], wall[f"decode@{size}"] = c, w
    images = decode_images(paths, max(sizes))
    gen = torch.Generator().manual_seed(0)
    augment = BatchAugment()
    for model_name in models:
        kind = "full" if model_name == "efficientnet_lite0" else f"full_{model_name}"
        model, mean, std = build(data.width, model_name)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        index = np.arange(32)
        for size in sizes:
            def step() -> None:
                model.train()
                loss = sliced_loss(model(normalise(augment(images[:32], size, gen), mean, std)), rows, index, 0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()

            result[f"{kind}@{size}"], wall[f"{kind}@{size}"] = _cpu_per_image(step, 32)
            if model_name == "efficientnet_lite0":
                def forward() -> None:
                    with torch.no_grad():
                        model.eval()(normalise(resize_batch(images[:64], size), mean, std))

                result[f"fwd@{size}"], wall[f"fwd@{size}"] = _cpu_per_image(forward, 64, repeats=3)
    backbone = create_backbone("efficientnet_lite0")
    for at in cuts:
        split = split_backbone(copy.deepcopy(backbone.model), at)
        tail = TailClassifier(split.tail, split.num_features, data.width).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(tail.parameters(), lr=1e-4)
        for size in (s for s in sizes if s >= 128):
            for runtime in ("onnx", "torch"):
                c, w = _cpu_per_image(lambda: cache_maps(split.stem, images[:64], backbone.mean, backbone.std, size,
                                                         runtime=runtime, threads=torch.get_num_threads()), 64, repeats=3)
                result[f"stem{at}_{runtime}@{size}"], wall[f"stem{at}_{runtime}@{size}"] = c, w
            maps = cache_maps(split.stem, images[:64], backbone.mean, backbone.std, size).float()

            def tail_step() -> None:
                tail.train()
                loss = sliced_loss(tail(maps[:32]), rows, np.arange(32), 0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()

            result[f"tail{at}@{size}"], wall[f"tail{at}@{size}"] = _cpu_per_image(tail_step, 32)
            with torch.no_grad():
                result[f"tailfwd{at}@{size}"], wall[f"tailfwd{at}@{size}"] = _cpu_per_image(
                    lambda: split.tail.eval()(maps.contiguous(memory_format=torch.channels_last)), 64, repeats=3)
    path = OUT / "calibration.json"
    previous = json.loads(path.read_text()) if path.is_file() else {"cpu_s_per_image": {}, "runs": []}
    previous["runs"].append({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": torch.get_num_threads(),
                             "cpu_s_per_image": {k: round(v, 5) for k, v in result.items()},
                             "wall_s_per_image": {k: round(v, 5) for k, v in wall.items()},
                             "loadavg": list(__import__("os").getloadavg())})
    keys = {k for r in previous["runs"] for k in r["cpu_s_per_image"]}
    previous["cpu_s_per_image"] = {k: round(float(np.median([r["cpu_s_per_image"][k] for r in previous["runs"]
                                                               if k in r["cpu_s_per_image"]])), 5) for k in sorted(keys)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(previous, indent=1) + "\n")
    for k, v in result.items():
        print(f"{k:28s} {v * 1000:8.2f} ms CPU / image   ({wall[k] * 1000:7.2f} ms wall)")


def pipeline(data_name: str, size: int, batches: int) -> dict[str, Any]:
    """Q1: CPU-s per training image, (a) PIL/OpenCV decode + albumentations in 2 DataLoader workers (what
    ``fashionlab train`` does) vs (b) decoded once into memory + BatchAugment in the main process. Both
    run the same model steps; the worker CPU is read from /proc for the child processes."""
    import psutil
    from torch.utils.data import DataLoader

    from fashionlab.data.images import ImageDataset
    from fashionlab.data.transforms import train_transform

    data = load(data_name)
    rows = data.train
    model, mean, std = build(data.width)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    n = batches * 32
    out: dict[str, Any] = {"data": data_name, "size": size, "images": n}

    def train_step(x: torch.Tensor, index: np.ndarray) -> None:
        loss = sliced_loss(model(x), rows, index, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    # (a) the streaming path: decode + albumentations per image in 2 worker processes
    dataset = ImageDataset(rows.paths[:n], list(range(n)), train_transform(size, mean, std), draft=int(size / 0.875) + 1)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=2, persistent_workers=True, drop_last=True)
    me = psutil.Process()
    for _ in range(2):  # first pass: worker start-up and warm-up
        c0, w0 = me.cpu_times(), time.perf_counter()
        kids0 = {p.pid: p.cpu_times() for p in me.children(recursive=True)}
        for x, index in loader:
            train_step(x.contiguous(memory_format=torch.channels_last), index.numpy())
        c1, w1 = me.cpu_times(), time.perf_counter()
        kids = sum((p.cpu_times().user + p.cpu_times().system) - (kids0[p.pid].user + kids0[p.pid].system)
                   for p in me.children(recursive=True) if p.pid in kids0)
    main = (c1.user + c1.system) - (c0.user + c0.system)
    out["workers"] = {"main_cpu_s_per_image": round(main / n, 5), "worker_cpu_s_per_image": round(kids / n, 5),
                      "total_cpu_s_per_image": round((main + kids) / n, 5), "wall_images_per_s": round(n / (w1 - w0), 1)}
    del loader
    # (b) decode once (charged per image), then batches from memory
    c0 = time.process_time()
    images = decode_images(rows.paths[:n], size)
    decode_cpu = time.process_time() - c0
    augment = BatchAugment(scale=(0.5, 1.0), jitter=0.2)
    for _ in range(2):
        c0, w0 = time.process_time(), time.perf_counter()
        aug_cpu = 0.0
        for start in range(0, n, 32):
            index = np.arange(start, start + 32)
            a0 = time.process_time()
            x = normalise(augment(images[index], size, gen), mean, std)
            aug_cpu += time.process_time() - a0
            train_step(x, index)
        c1, w1 = time.process_time(), time.perf_counter()
    out["memory"] = {"decode_once_cpu_s_per_image": round(decode_cpu / n, 5),
                     "augment_cpu_s_per_image": round(aug_cpu / n, 5),
                     "epoch_cpu_s_per_image": round((c1 - c0) / n, 5), "wall_images_per_s": round(n / (w1 - w0), 1)}
    out["loadavg"] = list(__import__("os").getloadavg())
    return out


# ---------------------------------------------------------------- records, ensembles, the table
def _record(kind: str, data: Data, cfg: dict[str, Any], result: dict[str, Any], probs: dict[str, list]) -> str:
    run_id = f"{kind}-{data.name}-" + "-".join(f"{k}{v}" for k, v in sorted(cfg.items()) if k != "note") + \
        f"-{time.strftime('%H%M%S')}"
    run_id = run_id.replace("/", "_")
    (OUT / "probs").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "probs" / f"{run_id}.npz", **{k: np.array(v, dtype=object) for k, v in probs.items()})
    line = {"id": run_id, "kind": kind, "data": data.name, "cfg": cfg, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "loadavg": list(__import__("os").getloadavg()), **result}
    with open(OUT / "results.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")
    best = max(result["scores"].items(), key=lambda kv: kv[1]["value"])
    print(json.dumps({"id": run_id, "cpu_s": result["cpu_s"], "planned_cpu_s": result.get("planned_cpu_s"),
                      "epochs": result.get("epochs"), "scores": {k: round(v["value"], 4) for k, v in result["scores"].items()},
                      "best": best[0]}))
    return run_id


def ensemble(data_name: str, members: list[str], weights: list[float] | None = None) -> dict[str, float]:
    """Average stored test probabilities: MEMBER = 'ID:KEY' (e.g. 123537:ema0.99@128+flip), ID any part of
    the run id that names one run (its time stamp, say)."""
    data = load(data_name)
    stack = []
    for member in members:
        part, key = member.rsplit(":", 1)
        found = [p for p in (OUT / "probs").glob("*.npz") if part in p.stem and f"-{data_name}-" in p.stem]
        if len(found) != 1:
            raise SystemExit(f"'{part}' names {len(found)} stored runs of {data_name}, not one")
        stored = np.load(found[0], allow_pickle=True)
        stack.append(list(stored[key]))
    w = weights or [1.0] * len(stack)
    probs = [sum(wi * m[i] for wi, m in zip(w, stack)) / sum(w) for i in range(len(stack[0]))]
    return score(data, probs)


def table(filter_data: str | None = None) -> str:
    lines = ["| id | data | kind | cfg | epochs | CPU-s used / planned | best score (key) |", "|---|---|---|---|---|---|---|"]
    for raw in (OUT / "results.jsonl").read_text().splitlines():
        r = json.loads(raw)
        if filter_data and r["data"] != filter_data:
            continue
        best = max(r["scores"].items(), key=lambda kv: kv[1]["value"])
        cfg = " ".join(f"{k}={v}" for k, v in r["cfg"].items())
        lines.append(f"| {r['id'][-6:]} | {r['data']} | {r['kind']} | {cfg} | {r.get('epochs', '')} | "
                     f"{r['cpu_s']} / {r.get('planned_cpu_s', '')} | {best[1]['value']:.4f} ({best[0]}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("calibrate", "pipeline", "full", "partial", "probe", "ensemble", "table"))
    parser.add_argument("--data", default="trashnet", help="trashnet | clothing | attributes")
    parser.add_argument("--sizes", default="96,112,128,160,192,224", help="calibrate: image sizes")
    parser.add_argument("--models", default="efficientnet_lite0", help="calibrate: models")
    parser.add_argument("--cuts", default="5", help="calibrate: partial fine-tuning cuts (stem = blocks[:cut])")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("options", nargs="*", help="key=value run options; ensemble: RUNID:KEY members")
    args = parser.parse_intermixed_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.command == "calibrate":
        calibrate([int(s) for s in args.sizes.split(",")], args.models.split(","),
                  [int(c) for c in args.cuts.split(",")])
        return
    if args.command == "pipeline":
        cfg = dict(o.split("=", 1) for o in args.options)
        result = pipeline(args.data, int(cfg.get("size", 128)), int(cfg.get("batches", 12)))
        with open(OUT / "pipeline.jsonl", "a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(json.dumps(result, indent=1))
        return
    if args.command == "table":
        print(table(args.data if args.data != "all" else None))
        return
    if args.command == "ensemble":
        print(json.dumps(ensemble(args.data, args.options)))
        return
    cfg = dict(o.split("=", 1) for o in args.options)
    data = load(args.data, args.split_seed)
    runner = {"full": run_full, "partial": run_partial, "probe": run_probe}[args.command]
    result, probs = runner(data, cfg, calibration())
    _record(args.command, data, cfg, result, probs)


if __name__ == "__main__":
    main()
