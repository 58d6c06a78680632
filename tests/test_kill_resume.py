"""Real interruptions of real training processes: SIGKILL mid-run then --resume; SIGTERM and Ctrl-C exit
143 / 130 with a one-line resume hint and an intact last.ckpt; a resumed run honours a new time budget."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionlab import api

from .conftest import COLOURS, draw

COMMON = ["--set", "model=test_efficientnet", "--set", "pretrained=none", "--workers", "0", "--batch", "8"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Enough images that an epoch lasts long enough to be interrupted (3 classes x 40)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("kill") / "classes"
    for name, colour in COLOURS.items():
        for i in range(40):
            draw(root / name / f"{name}_{i}.jpg", colour, rng, size=64)
    return root


@pytest.fixture(scope="module")
def garments(tmp_path_factory) -> Path:
    return api.synth("keypoints", tmp_path_factory.mktemp("kill_kp") / "data", n=60, size=64, seed=2)


def start(task: str, data: Path, run: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fashionlab", "train", task, "--data", str(data), "--out", str(run), "--imgsz", "64",
           *COMMON, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finetune_epochs(run: Path) -> list[int]:
    path = run / "state.json"
    try:
        history = json.loads(path.read_text())["history"] if path.is_file() else []
    except (json.JSONDecodeError, KeyError):
        return []
    return [r["epoch"] for r in history if r["stage"] == "finetune"]


def wait_for_epochs(proc: subprocess.Popen, run: Path, n: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while len(finetune_epochs(run)) < n:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "training too slow"
        time.sleep(0.05)


def resume(task: str, run: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fashionlab", "train", task, "--resume", str(run), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("task", ["classify", "keypoints"])
def test_sigkill_mid_run_then_resume_finishes(task: str, photos: Path, garments: Path, tmp_path: Path) -> None:
    data = photos if task == "classify" else garments
    run = tmp_path / "run"
    extra = ["--epochs", "4"] + (["--set", "head_epochs=0"] if task == "classify" else [])
    proc = start(task, data, run, *extra)
    wait_for_epochs(proc, run, 1)
    time.sleep(0.3)  # into the next epoch
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    done = resume(task, run)
    assert done.returncode == 0, done.stderr[-3000:]
    assert finetune_epochs(run) == [1, 2, 3, 4]  # every epoch once: none repeated, none skipped
    best = torch.load(run / "weights" / "best.pt", map_location="cpu", weights_only=True)
    assert best["extra"]["stage"] == "finetune"
    assert json.loads((run / "metrics.json").read_text())["metric"] == get_metric(task)


def get_metric(task: str) -> str:
    from fashionlab.tasks import get_task

    return get_task(task).metric


@pytest.mark.parametrize("how,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_with_exit_code_and_resume_hint(how: int, code: int, photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start("classify", photos, run, "--epochs", "30", "--set", "head_epochs=0")
    wait_for_epochs(proc, run, 1)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("stopped")]
    assert len(lines) == 1 and f"--resume {run}" in lines[0], err[-2000:]
    assert "Traceback" not in err
    ckpt = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] >= 0 and "state_dict" in ckpt
    assert not (run / "metrics.json").exists()  # a stopped run is not reported as finished


def test_resume_honours_a_new_time_budget(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start("classify", photos, run, "--epochs", "200", "--set", "head_epochs=0")
    wait_for_epochs(proc, run, 1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    started = time.perf_counter()
    done = resume("classify", run, "--time-budget", "25")
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.perf_counter() - started < 25 + 30  # the budget bounds the resumed command (start-up included)
    assert len(finetune_epochs(run)) < 200
    assert "time_budget: 25.0" in (run / "config.yaml").read_text()
