"""Options the tail stage honours (mixup / CutMix on the cached maps, hflip, tail_drop_rate, tail_crops) and
the one-line warning for fine-tune options a run that spends its whole budget on the tail never reads."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fashionlab import api
from fashionlab.data.transforms import eval_transform
from fashionlab.engine import tail_stage
from fashionlab.models.partial import MapAugment
from fashionlab.tasks import get_task
from fashionlab.tasks.classifier import hooks as classifier_hooks
from fashionlab.tasks.classifier.hooks import ClassifierHooks

from .test_fit_contract import options, task_data

TAIL = {"first_stage": "tail", "tail_from": 3, "tail_imgsz": 48, "tail_epochs": 1, "tail_probe_epochs": 0}


def test_dropout_before_the_heads_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    head = nn.Linear(8, 2)
    model = tail_stage._TailNet(nn.Sequential(nn.Conv2d(4, 8, 1), nn.AdaptiveAvgPool2d(1)),
                                lambda feats, task_index: head(feats), drop=0.5)
    maps, rows = torch.randn(16, 4, 3, 3), torch.zeros(16, dtype=torch.long)
    assert not torch.equal(model.train()(maps, rows), model(maps, rows))
    model.eval()
    assert torch.equal(model(maps, rows), model(maps, rows))


def test_tail_stage_mixes_maps_and_uses_hflip_and_drop_rate(tmp_path: Path, monkeypatch) -> None:
    """cutmix / hflip / tail_drop_rate reach the tail stage: CutMix runs on cached maps (many channels,
    not RGB), MapAugment gets hflip, the trained module gets tail_drop_rate."""
    mixed_shapes, flips, drops = [], [], []
    real_mix, real_augment, real_net = classifier_hooks.mix_batch, tail_stage.MapAugment, tail_stage._TailNet

    def spy_mix(maps, *args, **kwargs):
        mixed_shapes.append(tuple(maps.shape))
        return real_mix(maps, *args, **kwargs)

    def spy_augment(*args, **kwargs):
        flips.append(kwargs.get("hflip"))
        return real_augment(*args, **kwargs)

    class SpyNet(real_net):
        def __init__(self, tail, head, drop: float = 0.0) -> None:
            drops.append(drop)
            super().__init__(tail, head, drop)

    monkeypatch.setattr(classifier_hooks, "mix_batch", spy_mix)
    monkeypatch.setattr(tail_stage, "MapAugment", spy_augment)
    monkeypatch.setattr(tail_stage, "_TailNet", SpyNet)
    data, _ = task_data("classify", tmp_path / "data")
    opts = {**options("classify"), **TAIL, "cutmix": 1.0, "hflip": 0.0, "tail_drop_rate": 0.3}
    api.train("classify", data=str(data), out=str(tmp_path / "run"), epochs=0, val_fraction=0.25, **opts)
    assert mixed_shapes and all(len(s) == 4 and s[1] > 3 for s in mixed_shapes), mixed_shapes
    assert flips == [0.0]
    assert drops == [pytest.approx(0.3)]


@pytest.mark.parametrize(("extra", "named"), [({"scale_min": 0.3, "drop_rate": 0.5}, "drop_rate, scale_min"),
                                              ({"tail_share": 0.5, "scale_min": 0.3}, None),
                                              ({"mixup": 0.2, "tail_drop_rate": 0.1}, None)])
def test_unused_finetune_options_are_named_once(extra: dict, named: str | None, tmp_path: Path, caplog) -> None:
    task = get_task("classify")
    cfg = task.config_class(data=str(tmp_path), time_budget=60, **extra)
    hooks = ClassifierHooks(task, cfg)
    cfg.imgsz = 160  # the engine's automatic size, filled in after the user's config: not the user's option
    with caplog.at_level(logging.WARNING):
        hooks._warn_unused_finetune_options()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if named is None:
        assert not lines
    else:
        assert len(lines) == 1 and lines[0].startswith(f"{named}: only the fine-tune stage reads them"), lines


def test_crop_views_start_with_the_whole_photo_and_repeat_with_the_seed() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    views = tail_stage.crop_views(32, 3, 0.3, 0.5, seed=7)(image)
    assert views.shape == (4, 3, 32, 32) and views.dtype == torch.uint8
    mean, std = (0.5,) * 3, (0.25,) * 3
    whole = (views[0].float() - 127.5) / 63.75
    assert torch.allclose(whole, eval_transform(32, mean, std)(image), atol=1e-5)  # what prediction sees
    assert not any(torch.equal(views[0], v) for v in views[1:])  # the crops are other views
    assert torch.equal(views, tail_stage.crop_views(32, 3, 0.3, 0.5, seed=7)(image))
    assert not torch.equal(views, tail_stage.crop_views(32, 3, 0.3, 0.5, seed=8)(image))


def test_map_augment_draws_crops_as_often_as_the_whole_photo() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.arange(4, dtype=torch.float16).view(1, 4, 1, 1, 1).expand(4000, 4, 1, 2, 2)  # view v is all v
    picked = MapAugment(hflip=0.0)(maps, gen)[:, 0, 0, 0]
    counts = torch.bincount(picked.long(), minlength=4).tolist()
    assert counts[1] == 0  # no mirror with hflip 0
    assert all(abs(c - 4000 / 3) < 150 for c in (counts[0], counts[2], counts[3])), counts


def test_tail_crops_are_cached_and_trained_on(tmp_path: Path, monkeypatch) -> None:
    """tail_crops reaches the cache: every training photo has the photo, its mirror and the crops."""
    shapes = []
    real_cache = tail_stage.cache_maps

    def spy_cache(*args, **kwargs):
        maps = real_cache(*args, **kwargs)
        shapes.append(tuple(maps.shape[:2]))
        return maps

    monkeypatch.setattr(tail_stage, "cache_maps", spy_cache)
    data, _ = task_data("classify", tmp_path / "data")
    opts = {**options("classify"), **TAIL, "tail_crops": 2}
    api.train("classify", data=str(data), out=str(tmp_path / "run"), epochs=0, val_fraction=0.25, **opts)
    (n_train, train_views), (n_val, val_views) = shapes
    assert train_views == 4 and val_views == 1 and n_train > n_val > 0
