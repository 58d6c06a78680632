"""The ``sweep:`` section of a sweep YAML and its expansion into combinations and trials.

A combination is one (backbone, hyper-parameters) setting; with ``folds: K`` it is a K-fold run in
SWEEP_OUT/<combination>/ whose folds are K trials. Random-search samples are drawn here, not by Ray,
so that the K fold trials of one sample share the same values.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import RunConfig, _format_validation, read_yaml
from .errors import FashionlabError

FOLD_TASKS = ("attributes", "classify", "styles")
RESERVED = {"task": "the sweep's task", "data": "data:", "out": "--out", "folds": "sweep.folds", "fold": "sweep.folds",
            "model": "sweep.backbones"}
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
PATH_FIELDS = ("data", "val_data", "test", "cost_matrix", "recolour_masks", "pretrained")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSpec(_Strict):
    num_samples: int = Field(0, ge=0)  # random combinations drawn from ``space`` (per backbone)
    seed: int = 0
    space: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)  # key: {loguniform: [lo, hi]} ...

    @field_validator("space")
    @classmethod
    def _distributions(cls, space: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list[Any]]]:
        for key, dist in space.items():
            if len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
                raise ValueError(f"{key}: expected one of {{{', '.join(DISTRIBUTIONS)}: [...]}}, got {dist}")
            name, args = next(iter(dist.items()))
            if name != "choice" and (len(args) != 2 or not all(isinstance(a, (int, float)) for a in args)
                                     or args[0] >= args[1] or (name == "loguniform" and args[0] <= 0)):
                raise ValueError(f"{key}: {name} needs [low, high] with low < high (and low > 0 for loguniform)")
            if name == "choice" and not args:
                raise ValueError(f"{key}: choice needs at least one value")
        return space


class EarlyStop(_Strict):
    scheduler: Literal["none", "asha", "median"] = "none"
    grace_epochs: int = Field(1, ge=1)  # fine-tune epochs every trial runs before it can be stopped
    reduction_factor: float = Field(2.0, gt=1)  # asha: keep the best 1/rf of trials at each rung


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0)  # per trial; torch uses this many threads
    gpu: float = Field(0.0, ge=0)  # per trial; fractions share a GPU


class SweepSpec(_Strict):
    folds: int = Field(0, ge=0)  # 0/1: one run per combination; K >= 2: K fold trials + OOF per combination
    backbones: list[str] = Field(default_factory=list)  # empty: the base config's model
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # every combination of these values
    search: SearchSpec = Field(default_factory=SearchSpec)
    early_stop: EarlyStop = Field(default_factory=EarlyStop)
    resources: Resources = Field(default_factory=Resources)
    address: str | None = None  # None: a local Ray; "auto" or "ray://host:10001": join a cluster
    num_cpus: int | None = Field(None, ge=1)  # local Ray only; default: every core
    max_concurrent: int = Field(0, ge=0)  # 0: as many trials as the resources allow

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, v in grid.items() if not v]
        if empty:
            raise ValueError(f"{empty[0]}: needs at least one value")
        return grid


@dataclass
class Combination:
    name: str
    cfg: RunConfig  # out = SWEEP_OUT/<name>
    backbone: str
    hparams: dict[str, Any]


@dataclass
class Trial:
    name: str  # <combination>/fold<k>, or <combination> without folds
    combination: Combination
    fold: int | None
    cfg: RunConfig  # the run this trial trains (out = its folder)
    extra: dict[str, Any] = field(default_factory=dict)


def _short(value: Any) -> str:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _sample(dist: dict[str, list[Any]], rng: np.random.Generator) -> Any:
    name, args = next(iter(dist.items()))
    if name == "choice":
        return args[int(rng.integers(len(args)))]
    if name == "randint":
        return int(rng.integers(int(args[0]), int(args[1])))
    if name == "loguniform":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    return float(rng.uniform(args[0], args[1]))


def read_sweep(path: Path, overrides: dict[str, Any]) -> tuple[dict[str, Any], SweepSpec]:
    """(base run options, sweep spec) from the YAML; ``sweep.KEY`` overrides go into the sweep section."""
    loaded = read_yaml(path)
    if not isinstance(loaded, dict):
        raise FashionlabError(f"{path}: expected a mapping of option: value with a sweep: section")
    base = dict(loaded)
    section = base.pop("sweep", None)
    if section is None:
        raise FashionlabError(f"{path}: no sweep: section (backbones, grid, folds, ...)")
    if not isinstance(section, dict):
        raise FashionlabError(f"{path}: sweep: expected a mapping")
    section = dict(section)
    for key, value in overrides.items():
        if key.startswith("sweep."):
            section[key[len("sweep."):]] = value
        elif value is not None:
            base[key] = value
    try:
        spec = SweepSpec(**section)
    except ValidationError as err:
        message = _format_validation(err, f"{path}: sweep", SweepSpec)
        raise FashionlabError(message.replace(f"{path}: sweep: ", f"{path}: sweep.", 1)) from None
    return base, spec


def expand(path: Path, base: dict[str, Any], spec: SweepSpec, out: Path) -> list[Combination]:
    """Every combination, validated as a complete run config (one-line errors name the key)."""
    from .tasks import get_task

    task_name = base.get("task")
    if not task_name:
        raise FashionlabError(f"{path}: task: is required (attributes | classify | styles ...)")
    task = get_task(task_name)
    cls = task.config_class
    if not base.get("data"):
        raise FashionlabError(f"{path}: data: is required")
    for key in list(spec.grid) + list(spec.search.space):
        if key in RESERVED:
            raise FashionlabError(f"{path}: sweep: '{key}' cannot be swept; use {RESERVED[key]}")
        if key not in cls.model_fields:
            raise FashionlabError(f"{path}: sweep: '{key}' is not a {task_name} run option")
    if spec.folds >= 2 and task_name not in FOLD_TASKS:
        raise FashionlabError(f"{path}: sweep.folds: the {task_name} task has no K-fold; use folds: 0")
    for key in PATH_FIELDS:  # Ray workers may run elsewhere: hand them absolute paths
        value = base.get(key)
        if isinstance(value, str) and value and Path(value).exists():
            base[key] = str(Path(value).resolve())
    backbones = spec.backbones or [base.get("model", cls.model_fields["model"].default)]
    keys = list(spec.grid)
    settings = [dict(zip(keys, values)) for values in itertools.product(*(spec.grid[k] for k in keys))]
    rng = np.random.default_rng(spec.search.seed)
    samples = [{k: _sample(d, rng) for k, d in spec.search.space.items()} for _ in range(spec.search.num_samples)]
    if samples:
        settings = [{**s, **r} for s in settings for r in samples]
    combos: list[Combination] = []
    for backbone in backbones:
        for hp in settings:
            name = "-".join([_short(backbone)] + [f"{k}={_short(v)}" for k, v in hp.items()])
            if any(c.name == name for c in combos):
                name = f"{name}-{len(combos)}"
            values = {**base, "model": backbone, **hp, "out": str((out / name).resolve()),
                      "folds": spec.folds if spec.folds >= 2 else 0, "fold": 0}
            try:
                cfg = cls(**values)
            except ValidationError as err:
                raise FashionlabError(_format_validation(err, f"{path} (combination {name})", cls)) from None
            combos.append(Combination(name, cfg, backbone, hp))
    return combos


def trials_of(combos: list[Combination]) -> list[Trial]:
    from .engine.kfold import fold_config

    trials: list[Trial] = []
    for combo in combos:
        if combo.cfg.folds >= 2:
            trials += [Trial(f"{combo.name}/fold{k}", combo, k, fold_config(combo.cfg, k))
                       for k in range(combo.cfg.folds)]
        else:
            trials.append(Trial(combo.name, combo, None, combo.cfg))
    return trials
