"""What a task is, for every verb: the one registry entry that the CLI, API, engine, sweeps and the
service read (config class, metric and its direction, training hooks, evaluator, synthetic data,
weights format, serve adapter, capabilities). A sixth task is one folder with a ``Task`` subclass
and one line in ``tasks/__init__.py``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

from ..config import RunConfig
from ..data.labelled import (LabelledSet, TaskMeta, one_hot_targets, stratified_kfold,  # noqa: F401 - re-exported
                             stratified_split)
from ..engine.hooks import FitHooks, TrainResult
from ..errors import FashionlabError

TTA_ALL = ("none", "flip", "5crop", "10crop")


def load_object(target: str) -> Any:
    """``"package.module:name"`` -> the object (imported only when used)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


class Task:
    """A task's registry entry and its verbs. Subclasses set the class attributes and ``hooks``."""

    name: ClassVar[str] = ""
    metric: ClassVar[str] = ""  # picks the best checkpoint; ``higher_is_better`` gives its direction
    higher_is_better: ClassVar[bool] = True
    config_class: ClassVar[type[RunConfig]] = RunConfig
    multilabel: ClassVar[bool] = False
    weights_format: ClassVar[str] = ""  # the ``format`` field of this task's weights files
    evaluator: ClassVar[str] = ""  # "module:function(pred, truth, **options) -> dict"
    synth_generator: ClassVar[str] = ""  # "module:function(out, ..., seed) -> out"; "" = no synthetic set
    synth_count_arg: ClassVar[str] = "n"  # the generator's size argument (``data synth --n``)
    serve_adapter: ClassVar[str] = ""  # "module:Class" of the service adapter; "" = not servable
    tta: ClassVar[tuple[str, ...]] = ("none", "flip")  # what predict --tta accepts
    predict_tta: ClassVar[str] = "flip"  # predict's default TTA: the photo and its mirror, averaged
    submit_tta: ClassVar[str] = "flip"  # the competition submission's default TTA
    combine: ClassVar[tuple[str, ...]] = ("mean",)  # how predict combines several --weights
    exportable: ClassVar[bool] = False  # fashionlab export --format onnx
    probability_csv: ClassVar[bool] = False  # writes image,<columns> probability CSVs (fashionlab ensemble)
    data_parallel: ClassVar[bool] = True  # --devices/--nodes > 1

    # -- training ----------------------------------------------------------------------------------
    def hooks(self, cfg: RunConfig) -> FitHooks:
        """The training hooks of one run of this task."""
        raise NotImplementedError

    def fit(self, cfg: RunConfig, resume: bool = False) -> Any:
        """Train one model, or K fold models with out-of-fold files when ``cfg.folds > 1``."""
        from ..engine.fit import fit
        from ..engine.kfold import train_kfold

        if cfg.folds > 1:
            return train_kfold(self, cfg, resume)
        return fit(self.hooks(cfg), resume=resume)

    def gather_folds(self, cfg: RunConfig, results: list[TrainResult]) -> dict[str, Any]:
        """K-fold: write ``RUN/oof.csv`` (+ ``oof_truth.csv``) from the folds' validation outputs and
        return the metrics over all out-of-fold rows."""
        raise NotImplementedError

    def rescore(self, fold_cfg: RunConfig) -> TrainResult:
        """A finished fold's result rebuilt from its best weights (K-fold re-runs reuse finished folds)."""
        hooks = self.hooks(fold_cfg)
        hooks.load_data()
        from ..engine.devices import resolve_device
        from ..engine.run_files import RunFiles

        return hooks.finish(RunFiles(Path(fold_cfg.out)), resolve_device(fold_cfg.device))

    # -- prediction and scoring ----------------------------------------------------------------------
    def check_predict(self, tta: str, combine: str, n_weights: int) -> None:
        """One-line errors for options this task cannot honour."""
        if tta not in self.tta:
            raise FashionlabError(f"--tta {tta}: {self.name} supports {', '.join(self.tta)}")
        if n_weights > 1 and combine not in self.combine:
            raise FashionlabError(f"--combine {combine}: {self.name} combines several weights by "
                                  f"{', '.join(self.combine)}")

    def predict_files(self, weights: Path | list[Path], source: Path, out: Path, tta: str = "none", batch: int = 64,
                      workers: int = 2, device: str = "auto", combine: str = "mean", skip_bad: bool = False) -> Path:
        """Predict ``source`` with one or several ``weights`` and write the task's prediction file ``out``."""
        raise NotImplementedError

    def evaluate_files(self, pred: Path, truth: Path, **options: Any) -> dict[str, Any]:
        return load_object(self.evaluator)(pred, truth, **options)

    def synth(self, out: Path, **options: Any) -> Path:
        if not self.synth_generator:
            raise FashionlabError(f"no synthetic data for task '{self.name}' (it trains on real photos)")
        import inspect

        make = load_object(self.synth_generator)
        try:
            inspect.signature(make).bind(out, **options)
        except TypeError as exc:
            raise FashionlabError(f"synth {self.name}: {exc}") from None
        return make(Path(out), **options)

    def split(self, cfg: RunConfig, strata: list[str]):
        """Train/val indices: fold ``cfg.fold`` of ``cfg.folds`` when K-fold is on, else a held-out share."""
        if cfg.folds > 1:
            return stratified_kfold(strata, cfg.folds, cfg.fold, cfg.data_seed)
        return stratified_split(strata, cfg.val_fraction, cfg.data_seed)
