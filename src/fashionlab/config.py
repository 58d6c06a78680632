"""Run configuration: one flat, validated model; YAML file < CLI options < ``--set key=value``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import FashionlabError


class RunConfig(BaseModel):
    """The options every task honours: data, split, model, optimiser, budget, engine. Unknown keys are
    errors, so a typo — or an option this task cannot honour — never passes silently. Each task's
    config class adds its own options (``Task.config_class``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str = "classify"
    data: str = ""
    out: str = "runs/train"
    exist_ok: bool = False  # train into a folder that holds a finished run (its files are replaced)
    # data
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    val_data: str = ""  # a separate validation folder/file; overrides val_fraction
    seed: int = 0
    split_seed: int | None = None  # seed of the train/val split (default: seed); fix it to compare models
    folds: int = Field(0, ge=0)  # K-fold: K models in RUN/fold<k>/, out-of-fold predictions in RUN/oof.csv
    fold: int = Field(0, ge=0)  # which fold this run validates on (set by the K-fold driver)
    test: str = ""  # K-fold: images to predict with every fold model; combined into RUN/test.csv
    imgsz: int | None = Field(None, ge=32, le=1024)  # None: from the photos' size (and the time budget)
    batch: int = Field(32, ge=1)
    workers: int = Field(2, ge=0)
    skip_bad: bool = False
    # model
    model: str = "efficientnet_lite0"
    pretrained: str = "auto"
    # optimisation
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    backbone_lr_mult: float = Field(1.0, gt=0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "onecycle", "step", "cyclic", "constant"] = "onecycle"
    step_size: int = Field(3, ge=1)  # epochs between x0.1 decays (step) or per half-cycle (cyclic)
    stages: int = Field(1, ge=1)  # staged fine-tuning: N stages, each unfreezing more of the backbone
    frozen_fraction: float = Field(0.0, ge=0, lt=1)  # earliest share of backbone tensors never unfrozen
    stage_lr_decay: float = Field(0.5, gt=0, le=1)  # backbone LR multiplier per later stage
    warmup_epochs: float = Field(0.0, ge=0)
    epochs: int | None = Field(None, ge=0)  # None: 10, or as many as fit in time_budget
    time_budget: float = Field(0.0, ge=0)  # seconds; 0 = no budget, run `epochs`
    ema_decay: float = Field(0.0, ge=0, lt=1)  # EMA of weights (e.g. 0.999); 0 = off
    swa: bool = False  # stochastic weight averaging over the last quarter of epochs
    save_top_k: int = Field(1, ge=1)  # keep the k best epochs' weights as weights/epochN.pt
    patience: int = Field(0, ge=0)  # early stopping on the val metric (in its own direction); 0 = off
    val_every: int = Field(1, ge=1)  # validate every N epochs (and always on the last planned one)
    # augmentation shared by every task
    hflip: float = Field(0.5, ge=0, le=1)
    color_jitter: float = Field(0.2, ge=0, le=1)
    # engine
    device: str = "auto"
    devices: int = Field(1, ge=1)  # data-parallel processes per node (Lightning DDP; GPUs, or CPU processes)
    nodes: int = Field(1, ge=1)  # machines; each runs the same command with NODE_RANK, MASTER_ADDR, MASTER_PORT
    freeze_bn: bool = False  # fine-tune with BatchNorm statistics frozen (small per-device batches; CPU DDP)
    amp: bool = True  # mixed precision, used on GPU only
    channels_last: bool = True
    compile: bool = False
    tensorboard: bool = False

    @field_validator("data")
    @classmethod
    def _data_exists(cls, value: str) -> str:
        if value and not Path(value).exists():
            raise ValueError(f"data path '{value}' does not exist")
        return value

    @property
    def data_seed(self) -> int:
        """The seed of the train/val (or fold) split."""
        return self.seed if self.split_seed is None else self.split_seed


def _format_validation(err: ValidationError, source: str, cls: type[RunConfig] = RunConfig,
                       others: dict[str, type[RunConfig]] | None = None) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        task = cls.model_fields["task"].default if "task" in cls.model_fields else ""
        owners = [name for name, other in (others or {}).items() if where in other.model_fields]
        if owners:
            msg = f"not an option of the {task} task (it is one of {', '.join(owners)})"
        else:
            of = f" of the {task} task" if task else ""
            msg = f"unknown option{of}; its options: {', '.join(sorted(cls.model_fields))}"
    return f"{source}: {where}: {msg}" if where else f"{source}: {msg}"  # no field: a rule across options


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "schedule=cosine"]`` -> dict with YAML-typed values."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise FashionlabError(f"--set '{item}': expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def read_yaml(path: str | Path) -> Any:
    """A config file's parsed YAML; a missing file or bad YAML is a one-line error naming the file."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FashionlabError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise FashionlabError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None


def load_config(path: str | Path | None = None, cls: type[RunConfig] = RunConfig,
                others: dict[str, type[RunConfig]] | None = None, **overrides: Any) -> RunConfig:
    """Merge a YAML file with overrides (None values are ignored) and validate the result as ``cls``.

    A task with options of its own declares a subclass of RunConfig (``Task.config_class``); ``others``
    (task name -> config class) lets an option of another task be named as such in the error.
    """
    values: dict[str, Any] = {}
    source = "config"
    if path:
        source = str(path)
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise FashionlabError(f"{path}: expected a mapping of option: value")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except ValidationError as err:
        raise FashionlabError(_format_validation(err, source, cls, others)) from None


def save_config(cfg: RunConfig, path: Path) -> None:
    from .io import write_text

    write_text(path, yaml.safe_dump(cfg.model_dump(), sort_keys=False))
