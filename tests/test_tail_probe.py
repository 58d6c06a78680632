"""The tail stage's probe candidate: a copy of the heads fitted on the frozen tail's pooled features of the
cached maps is scored before the tail trains (``tail_probe_epochs``), so a run cut short keeps the probe."""
from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fashionlab import api
from fashionlab.engine.tail_stage import _probe_heads, _TailNet
from fashionlab.models.losses import Objective

from .test_fit_contract import options, task_data


class _Head(nn.Module):
    sizes = [2]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, feats: torch.Tensor, task_index: torch.Tensor) -> torch.Tensor:
        return self.fc(feats)


def _separable_maps(n: int = 64) -> tuple[torch.Tensor, np.ndarray]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    maps = torch.randn(n, 2, 4, 3, 3, generator=generator)
    maps[:, :, 0] += (labels.float() * 2 - 1).view(n, 1, 1, 1) * 3  # channel 0 tells the class, in both views
    return maps.half(), labels.numpy()


def test_probe_fits_the_heads_and_leaves_the_tail_alone() -> None:
    torch.manual_seed(0)
    tail = nn.Sequential(nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    model = _TailNet(tail, _Head()).train()
    maps, labels = _separable_maps()
    targets = np.eye(2, dtype=np.float32)[labels]  # one-hot rows, as LabelledSet stores them
    train = SimpleNamespace(task_index=np.zeros(len(labels), dtype=np.int64), targets=targets)
    objective = Objective("ce")
    tail_before = copy.deepcopy(tail.state_dict())

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            value = objective(model(maps[:, 0].float(), torch.zeros(len(labels), dtype=torch.long)),
                              torch.as_tensor(targets)).item()
        model.train()
        return value

    before = loss()
    _probe_heads(model, maps, train, objective, epochs=60, lr=3e-2, weight_decay=0.0, device="cpu", seed=0)
    after = loss()
    assert after < 0.5 * before, (before, after)
    assert all(torch.equal(v, tail_before[k]) for k, v in tail.state_dict().items())  # weights and BN statistics
    assert tail.training and model.head.training  # the tail stage trains on from here


@pytest.mark.parametrize("probe_epochs", [0, 30])
def test_the_probed_start_is_scored_as_a_candidate(probe_epochs: int, tmp_path: Path) -> None:
    """With the probe, the tail stage scores the probed heads before any tail step (history epoch 0), so
    a run cut short keeps at least the probe; without it the first score comes after training steps."""
    data, _ = task_data("classify", tmp_path / "data")
    opts = {**options("classify"), "first_stage": "tail", "tail_from": 3, "tail_imgsz": 48, "tail_epochs": 2,
            "tail_probe_epochs": probe_epochs}
    result = api.train("classify", data=str(data), out=str(tmp_path / "run"), epochs=0, val_fraction=0.25, **opts)
    history = pd.read_csv(result.run / "history.csv")
    assert (history["epoch"].iloc[0] == 0) == (probe_epochs > 0)
    assert result.metrics["best"]["value"] >= history["val_metric"].iloc[0]
    assert opts["imgsz"] != 48 and result.metrics["best"]["train_imgsz"] == 48  # the size the tail trained at


def test_a_tail_that_learns_nothing_leaves_the_probe_in_best_pt(tmp_path: Path) -> None:
    """The tail trains from the original heads (not the probed copy): with a learning rate that moves
    nothing, its checkpoints score like random heads and best.pt is the probe (epoch 0)."""
    data, _ = task_data("classify", tmp_path / "data")
    opts = {**options("classify"), "first_stage": "tail", "tail_from": 3, "tail_imgsz": 48, "tail_epochs": 2,
            "tail_probe_epochs": 60, "tail_lr": 1e-12}
    result = api.train("classify", data=str(data), out=str(tmp_path / "run"), epochs=0, val_fraction=0.25, **opts)
    history = pd.read_csv(result.run / "history.csv")
    probe, tail = history["val_metric"].iloc[0], history["val_metric"].iloc[1:]
    assert probe > tail.max()
    assert result.metrics["best"]["epoch"] == 0 and result.metrics["best"]["value"] == probe
