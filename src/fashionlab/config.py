"""Run configuration: one flat, validated model; YAML file < CLI options < ``--set key=value``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import FashionlabError


class RunConfig(BaseModel):
    """Every knob of a training run. Unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: str = "attributes"
    data: str = ""
    out: str = "runs/train"
    # data
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    val_data: str = ""  # a separate validation folder/file; overrides val_fraction
    seed: int = 0
    split_seed: int | None = None  # seed of the train/val split (default: seed); fix it to compare models
    folds: int = Field(0, ge=0)  # K-fold: K models in RUN/fold<k>/, out-of-fold probabilities in RUN/oof.csv
    fold: int = Field(0, ge=0)  # which fold this run validates on (set by the K-fold driver)
    test: str = ""  # K-fold: images to predict with every fold model; averaged into RUN/test.csv
    imgsz: int | None = Field(None, ge=32, le=1024)  # None: from the photos' size (and the time budget)
    test_imgsz: int | None = Field(None, ge=32, le=1024)  # validation/prediction size; None: imgsz scaled
    # up by the train crops' mean zoom (FixRes), e.g. 128 -> 144 with scale_min 0.5
    batch: int = Field(32, ge=1)
    workers: int = Field(2, ge=0)
    skip_bad: bool = False
    # model
    model: str = "efficientnet_lite0"
    pretrained: str = "auto"
    drop_rate: float = Field(0.2, ge=0.0, lt=1.0)
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
    head_epochs: int = Field(30, ge=0)  # stage 1: head only, backbone frozen (on cached features)
    head_lr: float = Field(3e-3, gt=0)
    time_budget: float = Field(0.0, ge=0)  # seconds; 0 = no budget, run `epochs`
    min_epochs: int = Field(6, ge=1)  # with a budget and auto imgsz: shrink images until this many fit
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    loss: Literal["ce", "focal", "bce"] = "ce"  # bce: multi-label tasks; focal works for both
    focal_gamma: float = Field(2.0, ge=0)
    focal_alpha: float | None = Field(None, ge=0, le=1)  # multi-label focal: weight of positives
    cost_matrix: list[list[float]] | str | None = None  # K×K severities (rows truth, cols predicted) or CSV
    cost_weight: float = Field(1.0, ge=0)
    mixup: float = Field(0.0, ge=0)  # Beta(α, α) for mixup; 0 = off
    cutmix: float = Field(0.0, ge=0)  # Beta(α, α) for CutMix; 0 = off
    mix_prob: float = Field(1.0, ge=0, le=1)  # share of batches mixed when mixup/cutmix is on
    ema_decay: float = Field(0.0, ge=0, lt=1)  # EMA of weights (e.g. 0.999); 0 = off
    swa: bool = False  # stochastic weight averaging over the last quarter of epochs
    save_top_k: int = Field(1, ge=1)  # keep the k best fine-tune checkpoints as weights/epochN.pt
    head: Literal["linear", "se"] = "linear"  # se: squeeze-excitation gating of pooled features
    head_hidden: int = Field(0, ge=0)  # >0: FC hidden -> BN -> ReLU -> FC per head
    hflip: float = Field(0.5, ge=0, le=1)
    scale_min: float = Field(0.5, gt=0, le=1)  # RandomResizedCrop area lower bound
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
    patience: int = Field(0, ge=0)  # early stopping on the val metric; 0 = off
    # attributes
    maybe_weight: float = Field(0.5, ge=0, le=1)  # target mass of an 'm' letter relative to 'y'
    multitask: bool = True  # false: one model per attribute task, in RUN/<task>/
    tasks: list[str] = Field(default_factory=list)  # attributes: train only these tasks (default all)

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


def _format_validation(err: ValidationError, source: str, cls: type[RunConfig] = RunConfig) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(cls.model_fields))
        msg = f"unknown option; known options: {known}"
    return f"{source}: {where}: {msg}"


def refuse_test_imgsz(task: str, value: int | None) -> int | None:
    """Validator for tasks that validate and predict at ``imgsz`` (no random-resized-crop zoom to undo)."""
    if value is not None:
        raise ValueError(f"{task} validates and predicts at imgsz; test_imgsz is for classify, attributes and styles")
    return value


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


def load_config(path: str | Path | None = None, cls: type[RunConfig] = RunConfig, **overrides: Any) -> RunConfig:
    """Merge a YAML file with overrides (None values are ignored) and validate the result as ``cls``.

    A task with options of its own declares a subclass of RunConfig (``Task.config_class``).
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
        raise FashionlabError(_format_validation(err, source, cls)) from None


def save_config(cfg: RunConfig, path: Path) -> None:
    from .io import write_text

    write_text(path, yaml.safe_dump(cfg.model_dump(), sort_keys=False))
