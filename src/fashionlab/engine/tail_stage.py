"""The tail stage: partial fine-tuning on cached feature maps, the classification family's first stage.

The backbone's early blocks (``conv_stem`` .. ``blocks[at-1]``) stay frozen, so their output for a photo
never changes: it is computed once per photo and per view (the photo and its mirror) at ``imgsz`` and
kept as float16 maps. Training then runs only the rest — ``blocks[at:]``, ``conv_head`` and the task's
heads — on those maps, many epochs in the time a full fine-tune spends on a few. With efficientnet_lite0
cut at ``at=5`` a tail step at 224 px costs about a fifth of a full step at 224 px, and the network
still sees 224 px photos (``benchmarks/recipe_lab.py`` measured it against full fine-tuning at 112-192 px
and the frozen probe). Optimiser: AdamW, a short linear warm-up then cosine to zero, an EMA of the
weights; the steps are planned from measured step times to fit the time allowed and re-planned as
the run goes (a machine slowed by another process shrinks the schedule instead of overrunning).

The trained modules are the network's own, so the result is an ordinary ``ClassifierNet`` (best.pt,
predict, export and serve need nothing new) that predicts at ``imgsz`` with the usual whole-photo resize.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch
from torch import nn

from ..data.images import ImageDataset
from ..data.labelled import LabelledSet
from ..data.memory import normalise
from ..errors import FashionlabError
from ..models.losses import Objective
from ..models.net import ClassifierNet
from ..models.partial import MapAugment, split_backbone
from .budget import Replanner
from .head_stage import fit_heads
from .predictor import make_loader

log = logging.getLogger(__name__)
MAX_CACHE_BYTES = 3 * 2**30  # beyond this the maps do not stay in memory: the linear head stage instead
# scoring best.pt on a validation photo afterwards costs this many times caching one view (measured on 2 cores at
# 224 px: 48 ms a photo on TrashNet and 52 ms on clothing-256, against 12-16 ms a cached view)
FINAL_SCORING_PER_VIEW = 4.0
Mixer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TailStageResult:
    best_metric: float
    best_epoch: float  # passes over the training maps when the best weights were taken
    history: list[dict]
    infer_s_per_image: float  # stem + tail forward per image, measured while caching
    imgsz: int


class _TailNet(nn.Module):
    """The trainable part: the backbone's tail (its own modules, shared with ``net``) and the heads, with
    dropout ``drop`` on the pooled features before the heads."""

    def __init__(self, tail: nn.Module, head: nn.Module, drop: float = 0.0) -> None:
        super().__init__()
        self.tail, self.head, self.drop = tail, head, nn.Dropout(drop)

    def forward(self, maps: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        pooled = self.tail(maps.contiguous(memory_format=torch.channels_last)).flatten(1)
        return self.head(self.drop(pooled), task_index)


def supports_tail(net: ClassifierNet, at: int) -> str:
    """'' when ``net``'s backbone can be cut before ``blocks[at]``, else why not (one line)."""
    try:
        split_backbone(net.backbone, at)
    except FashionlabError as err:
        return str(err)
    return ""


def cache_bytes(net: ClassifierNet, at: int, imgsz: int, n_images: int, views: int = 2) -> int:
    split = split_backbone(net.backbone, at)
    side = -(-imgsz // split.reduction)
    return n_images * views * split.channels * side * side * 2


class ThreadChooser:
    """Times the first calls of a repeated piece of work with each candidate number of torch threads and
    keeps the fastest per item. On a shared CPU, threads that wait for each other spin: measured on 2
    cores with 3 other processes running, a tail step took 4.5 s with 2 threads and 0.49 s with 1, the
    map caching 0.117 s per view with 2 and 0.058 with 1; on an idle machine 2 threads win. The first
    ``warmup`` calls are not timed: the very first call pays one-off set-up (an idle clothing-256 run with
    efficientnet_lite2 timed its first caching batch at 144.8 ms a photo with 2 threads against 113.6
    with 1 and cached at 1 thread; untimed warm-up: 2 threads, 64.8 ms)."""

    def __init__(self, device: str, trials: int = 2, warmup: int = 1) -> None:
        self.enabled = device == "cpu" and torch.get_num_threads() > 1
        self.candidates = sorted({torch.get_num_threads(), 1}, reverse=True) if self.enabled else []
        self.trials, self.seconds = trials, {n: [] for n in self.candidates}
        self.warmup = warmup if self.enabled else 0
        self._untimed_left = self.warmup
        self.chosen: int | None = None if self.enabled else torch.get_num_threads()
        self._previous = torch.get_num_threads()

    def __enter__(self) -> "ThreadChooser":
        return self

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self._previous)

    @property
    def calls_to_choose(self) -> int:
        """Calls of ``run`` before the thread count is chosen (untimed warm-up, then the trials)."""
        return self.warmup + self.trials * len(self.candidates)

    def run(self, work: Callable[[], object], items: int) -> object:
        if self.chosen is not None:
            torch.set_num_threads(self.chosen)
            return work()
        if self._untimed_left > 0:
            self._untimed_left -= 1
            torch.set_num_threads(self.candidates[0])
            return work()
        threads = next(n for n in self.candidates if len(self.seconds[n]) < self.trials)
        torch.set_num_threads(threads)
        clock = time.perf_counter()
        out = work()
        self.seconds[threads].append((time.perf_counter() - clock) / max(1, items))
        if all(len(v) >= self.trials for v in self.seconds.values()):
            self.chosen = min(self.candidates, key=lambda n: min(self.seconds[n]))
            log.info("torch threads: %d (per item: %s)", self.chosen,
                     ", ".join(f"{n} threads {min(v) * 1000:.1f} ms" for n, v in self.seconds.items()))
        return out


def crop_views(imgsz: int, crops: int, scale_min: float, hflip: float,
               seed: int) -> Callable[[np.ndarray], torch.Tensor]:
    """A transform giving uint8 [1 + crops, 3, imgsz, imgsz]: the whole photo resized (as prediction sees it),
    then ``crops`` random-resized crops (area share in [scale_min, 1], each mirrored with chance ``hflip``),
    drawn with ``seed`` so a run's views are repeatable. uint8, not normalised floats: the loader's workers
    pass a quarter of the bytes (float views made a crop cost twice its network time on 2 cores)."""
    resize = A.Resize(imgsz, imgsz)
    crop = A.Compose([A.RandomResizedCrop(size=(imgsz, imgsz), scale=(scale_min, 1.0)), A.HorizontalFlip(p=hflip)],
                     seed=seed)

    def views(image: np.ndarray) -> torch.Tensor:
        out = [resize(image=image)["image"]] + [crop(image=image)["image"] for _ in range(crops)]
        return torch.from_numpy(np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2)))

    return views


@torch.no_grad()
def cache_maps(stem: nn.Module, data: LabelledSet, imgsz: int, mean, std, flip: bool, batch: int, workers: int,
               device: str, crops: int = 0, scale_min: float = 0.5, hflip: float = 0.5, seed: int = 0) -> torch.Tensor:
    """float16 maps [N, V, C, h, w] of every image of ``data``: the same whole-photo resize that prediction
    uses, then with ``flip`` its mirror, then ``crops`` random-resized crops (``crop_views``); V = 1 + flip
    + crops."""
    dataset = ImageDataset(data.paths, list(range(len(data))), crop_views(imgsz, crops, scale_min, hflip, seed))
    stem.eval().to(device)
    chunks = []
    with ThreadChooser(device, trials=1) as threads:
        for images, _ in make_loader(dataset, batch, workers):
            images = images.to(device)  # uint8 [B, 1 + crops, 3, H, W]

            def forward() -> torch.Tensor:
                whole = normalise(images[:, 0], mean, std)
                maps = [stem(whole)] + ([stem(whole.flip(-1))] if flip else [])
                if crops:
                    extra = normalise(images[:, 1:].flatten(0, 1), mean, std)
                    maps += list(stem(extra).unflatten(0, (len(images), crops)).unbind(1))
                return torch.stack(maps, 1)

            chunks.append(threads.run(forward, len(images)).half().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0)


def train_tail(net: ClassifierNet, train: LabelledSet, val: LabelledSet, score: Callable[[list[np.ndarray]], float],
               objective: Objective, imgsz: int, mean, std, at: int, seconds: float | None, epochs: int, lr: float,
               weight_decay: float, ema_decay: float, batch: int, workers: int, device: str,
               seed: int = 0, probe_epochs: int = 0, probe_lr: float = 3e-3, hflip: float = 0.5,
               mix: Mixer | None = None, drop: float = 0.0, crops: int = 0,
               crop_scale: float = 0.5) -> TailStageResult:
    """Train ``net``'s tail and heads on cached maps; leaves the best weights (by ``score`` on ``val``,
    or the last ones without a validation set) in ``net``. ``seconds``: the time allowed, caching
    and the later scoring of ``val`` by the caller included (None: ``epochs`` passes over the training maps). ``probe_epochs`` > 0 (with a validation
    set): a copy of the heads is first fitted alone on the frozen tail's pooled features (a linear probe)
    and scored as the first candidate, so a run cut short keeps at least the probe. The tail then trains
    from the heads as they were: starting it from the probed heads (LP-FT, commit 2f5305b) scored lower
    at 480 s on TrashNet, 0.8828 ± 0.0066 against 0.9061 ± 0.0180 (3 seeds, README "What was tried").
    ``hflip``: the chance a training map is the mirrored view; ``mix(maps, task_index, targets)`` returns
    mixed maps and targets (the task's mixup / CutMix, applied to the cached maps); ``drop``: dropout on
    the pooled features before the heads; ``crops``: random-resized crops of each training photo cached beside
    the photo and its mirror (area share in [``crop_scale``, 1]), more views for the many passes over the maps."""
    start = time.perf_counter()
    split = split_backbone(net.backbone, at)
    train_maps = cache_maps(split.stem, train, imgsz, mean, std, True, batch * 2, workers, device, crops, crop_scale,
                            hflip, seed)
    cached = time.perf_counter()
    val_maps = cache_maps(split.stem, val, imgsz, mean, std, False, batch * 2, workers, device)[:, 0] \
        if len(val) else None
    infer_s = (cached - start) / max(1, train_maps.shape[1] * len(train))
    if seconds is not None:  # time to score best.pt on every validation photo afterwards (decode + whole network)
        seconds -= len(val) * FINAL_SCORING_PER_VIEW * infer_s
    model = _TailNet(split.tail, net.head, drop).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ema = _Ema(model, ema_decay)
    task_index = torch.as_tensor(train.task_index)
    targets = torch.as_tensor(train.targets)
    generator = torch.Generator().manual_seed(seed)
    augment = MapAugment(crop=None, hflip=hflip)
    n, size = len(train), min(batch, len(train))
    per_epoch = max(1, math.ceil(n / size))
    total = epochs * per_epoch if seconds is None else None
    history: list[dict] = []
    best = {"metric": -math.inf, "step": 0, "state": None}
    checks = 5  # validations spread over the run (cheap: the tail on cached maps)

    def evaluate(step: int, losses: list[float], module: nn.Module | None = None) -> None:
        module = module or (ema.module if ema else model)
        metric = -float(np.mean(losses)) if val_maps is None else score(_probs(module, val_maps, val, objective))
        history.append({"stage": "tail", "epoch": round(step / per_epoch, 2), "train_loss": float(np.mean(losses)),
                        "val_metric": metric})
        if metric > best["metric"] or val_maps is None:
            best.update(metric=metric, step=step, state=copy.deepcopy(module.state_dict()))

    if probe_epochs > 0 and val_maps is not None:  # a fallback candidate; the tail trains from the heads as they were
        probed = _TailNet(split.tail, copy.deepcopy(net.head)).to(device)
        evaluate(0, [_probe_heads(probed, train_maps, train, objective, probe_epochs, probe_lr, weight_decay, device,
                                  seed)], probed)
    order, pos, step, losses = torch.randperm(n, generator=generator), 0, 0, []
    threads = ThreadChooser(device)
    # the steps that choose the threads come first; the plan is made from steps at the chosen thread count
    planner = StepPlanner(threads.calls_to_choose + 1, start + seconds) if seconds is not None else None
    while total is None or step < total:
        if planner is not None:
            total = planner.after_step(step, time.perf_counter())
        if pos + size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        index = order[pos:pos + size]
        pos += size
        maps, rows, wanted = augment(train_maps[index], generator), task_index[index], targets[index]
        if mix is not None:
            maps, wanted = mix(maps, rows, wanted)
        maps = maps.to(device)
        for group in optimizer.param_groups:
            group["lr"] = lr * _factor(step, total or 1000)

        def train_step() -> torch.Tensor:
            loss = objective(model(maps, rows.to(device)), wanted.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ema.update(model)
            return loss

        loss = threads.run(train_step, len(index))
        losses.append(loss.item())
        step += 1
        if total is not None and (step >= total or step % max(1, total // checks) == 0):
            evaluate(step, losses)
            losses = []
    torch.set_num_threads(threads._previous)
    model.load_state_dict(best["state"])
    model.eval()
    log.info("tail stage: %d steps (%.1f epochs) on cached %d px maps in %.0fs", step, step / per_epoch, imgsz,
             time.perf_counter() - start)
    return TailStageResult(float(best["metric"]), round(best["step"] / per_epoch, 2), history, infer_s, imgsz)


@torch.no_grad()
def _pooled(tail: nn.Module, maps: torch.Tensor, device: str, batch: int = 128) -> torch.Tensor:
    tail.eval()
    out = [tail(maps[i:i + batch].float().to(device).contiguous(memory_format=torch.channels_last)).flatten(1).cpu()
           for i in range(0, len(maps), batch)]
    tail.train()
    return torch.cat(out)


def _probe_heads(model: _TailNet, train_maps: torch.Tensor, train: LabelledSet, objective: Objective, epochs: int,
                 lr: float, weight_decay: float, device: str, seed: int) -> float:
    """Fit ``model.head`` on the frozen tail's pooled features of every cached view (AdamW, cosine);
    returns the last epoch's mean loss."""
    clock = time.perf_counter()
    views = train_maps.shape[1]
    feats = _pooled(model.tail, train_maps.flatten(0, 1), device)  # view-major within each photo
    loss = fit_heads(model.head.train(), feats, torch.as_tensor(train.task_index).repeat_interleave(views),
                     torch.as_tensor(train.targets).repeat_interleave(views, dim=0), objective, epochs, lr,
                     weight_decay, seed + 1, "cosine")
    log.info("tail stage: linear probe of the heads on the frozen tail's features (%d epochs, loss %.4f, %.1fs)", epochs,
             loss, time.perf_counter() - clock)
    return loss


def _factor(step: int, total: int, warmup: float = 0.05) -> float:
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


class StepPlanner:
    """How many tail steps fit before ``deadline``. After ``warm`` steps it times ``probe`` more and plans
    from them; then every ``block`` steps the engine's ``Replanner`` re-plans with blocks as its epochs:
    the median of the last three blocks' times, so it shrinks when the machine slows (another process)
    and, in the first half of the plan, extends by a tenth or more when it speeds up again (before, the
    tail only shrank: under load a run ended at 400 s of its 480)."""

    def __init__(self, warm: int, deadline: float, probe: int = 4, block: int = 10) -> None:
        self.warm, self.deadline, self.probe, self.block = warm, deadline, probe, block
        self.origin = warm + probe  # blocks are counted from here
        self._replanner: Replanner | None = None
        self._mark = 0.0  # time at the last boundary (the end of warm-up, then of each block)

    @property
    def total(self) -> int | None:
        """The planned number of steps in all (None until planned)."""
        return None if self._replanner is None else self.origin + self._replanner.epochs * self.block

    def after_step(self, step: int, now: float) -> int | None:
        """``step`` steps are done at ``now``: the planned number of steps in all (None until planned)."""
        if step == self.warm:
            self._mark = now
        elif step == self.origin and self._replanner is None:
            per_step = max((now - self._mark) / self.probe, 1e-6)
            blocks = max(1, int((self.deadline - now) * 0.97 / (per_step * self.block)))
            self._replanner = Replanner(blocks, self.deadline, None, [per_step * self.block], "block")
            self._mark = now
        elif self._replanner is not None and step > self.origin and (step - self.origin) % self.block == 0:
            self._replanner.after_epoch((step - self.origin) // self.block, now - self._mark, now)
            self._mark = now
        return self.total


@torch.no_grad()
def _probs(module: nn.Module, maps: torch.Tensor, data: LabelledSet, objective: Objective,
           batch: int = 128) -> list[np.ndarray]:
    module.eval()
    sizes = module.head.sizes
    out: list[np.ndarray] = []
    for i in range(0, len(maps), batch):
        task_index = torch.as_tensor(data.task_index[i:i + batch])
        device = next(module.parameters()).device
        probs = objective.activate(module(maps[i:i + batch].float().to(device), task_index.to(device))).cpu().numpy()
        out += [p[: sizes[t]] for p, t in zip(probs, task_index.tolist())]
    module.train()
    return out


class _Ema:
    """An exponential moving average of a module's weights and buffers (``decay`` per step; 0 = off),
    warmed up as ``min(decay, (1 + t) / (10 + t))`` at step t so that a short run is not dominated by
    the initial weights (as in timm's ModelEmaV3)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval() if decay > 0 else None

    def __bool__(self) -> bool:
        return self.module is not None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self.module is None:
            return
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for ema_v, v in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_v.dtype.is_floating_point:
                ema_v.mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                ema_v.copy_(v)
