"""Data-parallel training (``--devices N``): two CPU processes (gloo) against one process.

Both runs see the same global batches: training data is always sharded by an epoch-seeded
DistributedSampler, so 2 processes x batch 4 train on exactly the images 1 process x batch 8 does,
step for step, and DDP averages the two shards' gradients into the global batch's gradient. What
legitimately differs is switched off: augmentation, dropout, and BatchNorm batch statistics
(``freeze_bn``: SyncBatchNorm needs GPUs). What is left is float summation order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fashionlab import api
from fashionlab.engine.distributed import gather_shards, sampler
from fashionlab.config import RunConfig
from fashionlab.errors import FashionlabError

from .conftest import TINY

EXACT = dict(TINY, epochs=2, hflip=0.0, scale_min=1.0, color_jitter=0.0, drop_rate=0.0, freeze_bn=True)
TOLERANCE = 1e-5  # max |weight difference| after 2 epochs; measured ~1e-7 (summation order only)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    return {k: v.float() for k, v in state.items() if v.is_floating_point()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _history(run: Path) -> list[list[str]]:
    return [line.split(",") for line in (run / "history.csv").read_text().splitlines()[1:]]


def test_two_processes_match_one_with_the_same_global_batch(class_folders: Path, tmp_path: Path) -> None:
    ddp = tmp_path / "ddp"
    options = [f"--set={k}={v}" for k, v in EXACT.items() if k != "batch"]
    cmd = [sys.executable, "-m", "fashionlab", "train", "classify", "--data", str(class_folders), "--out", str(ddp),
           "--batch", "4", "--devices", "2", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel: rank 1 of 2 joined" in done.stderr  # really two processes
    # only rank 0 reports and writes: one "done", one row per epoch, the hand-off cleaned up
    assert (done.stdout + done.stderr).count("done:") == 1
    rows = _history(ddp)
    assert [(r[0], r[1]) for r in rows] == [("head", "1"), ("head", "2"), ("head", "3"),
                                              ("finetune", "1"), ("finetune", "2")]
    assert json.loads((ddp / "metrics.json").read_text())["task"] == "classify"
    assert not (ddp / "ddp_handoff.pt").exists()

    single = api.train("classify", data=str(class_folders), out=str(tmp_path / "one"), **{**EXACT, "batch": 8})
    diff = _max_diff(_weights(ddp), _weights(single.run))
    assert diff < TOLERANCE, f"DDP weights differ from one process by {diff:.2e}"
    for a, b in zip(rows, _history(single.run)):
        assert abs(float(a[2]) - float(b[2])) < 1e-5 and a[3] == b[3]  # train loss, val metric per epoch

    # the comparison can fail: one process at the per-rank batch (twice the steps) ends elsewhere
    small = api.train("classify", data=str(class_folders), out=str(tmp_path / "small"), **{**EXACT, "batch": 4})
    assert _max_diff(_weights(ddp), _weights(small.run)) > 100 * TOLERANCE


def test_gather_shards_restores_dataset_order() -> None:
    """Unshuffled shards (rank r: items r, r+W, ..., padded) gathered from W ranks -> items 0..N-1 once."""
    n, world = 7, 3
    shards = [list(sampler(list(range(n)), RunConfig(devices=world), rank, shuffle=False)) for rank in range(world)]

    class Gatherer:
        def all_gather(self, local: torch.Tensor) -> torch.Tensor:
            return torch.stack([torch.tensor(s) for s in shards])

    assert gather_shards(Gatherer(), torch.tensor(shards[0]), n).tolist() == list(range(n))


def test_training_order_does_not_depend_on_the_process_count() -> None:
    data = list(range(24))
    one = list(sampler(data, RunConfig(), 0, shuffle=True))
    two = [list(sampler(data, RunConfig(devices=2), r, shuffle=True)) for r in range(2)]
    for step in range(3):  # global batch 8 = two ranks' batches of 4
        assert sorted(one[8 * step: 8 * step + 8]) == sorted(two[0][4 * step: 4 * step + 4] + two[1][4 * step: 4 * step + 4])


@pytest.mark.parametrize("task,extra,message", [
    ("classify", {"folds": 3}, "not with folds"),
    ("classify", {"device": "cuda:1"}, "cuda"),
])
def test_unsupported_data_parallel_runs_fail_clearly(class_folders: Path, tmp_path: Path, task: str, extra: dict,
                                                     message: str) -> None:
    with pytest.raises(FashionlabError, match=message):
        api.train(task, data=str(class_folders), out=str(tmp_path / "run"), devices=2, **extra)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_devices_must_be_positive() -> None:
    with pytest.raises(FashionlabError, match="devices"):
        api.train("classify", data=".", devices=0)


@pytest.mark.parametrize("task", ["keypoints", "retrieval"])
def test_every_task_trains_data_parallel(task: str, tmp_path: Path) -> None:
    if task == "keypoints":
        data = api.synth("keypoints", tmp_path / "data", n=24, size=64, seed=1)
        extra = ["--batch", "4"]
    else:
        data = api.synth("retrieval", tmp_path / "data", n=8, size=64, seed=1) / "items.csv"
        extra = ["--batch", "8", "--set", "embed_dim=8", "--set", "val_fraction=0.25"]
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "fashionlab", "train", task, "--data", str(data), "--out", str(run), "--devices", "2",
           "--device", "cpu", "--epochs", "2", "--imgsz", "64", "--workers", "0", "--set", "freeze_bn=true",
           "--set", "model=test_efficientnet", "--set", "pretrained=none", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel: rank 1 of 2 joined" in done.stderr
    assert [r[:2] for r in _history(run)] == [["finetune", "1"], ["finetune", "2"]]  # one row per epoch: rank 0
    assert json.loads((run / "metrics.json").read_text())["task"] == task
