"""Data-parallel training (Lightning DDP, ``--devices N --nodes M``): ranks, the hand-off, sharded data.

Lightning's subprocess launcher re-runs the command line in N-1 child processes when rank 0 first
calls ``trainer.fit``; every other node runs the same command with ``NODE_RANK`` set. Rank 0 alone
does the work before fit (head stage on cached features, time-budget probe, run files) and then
writes ``RUN/ddp_handoff.pt``: the head-stage weights and the plan (epochs, image size). The other
ranks wait for it, load it and join fit; they never write files. Training data is sharded by an
epoch-seeded DistributedSampler in every run, one process included, so N processes with batch B
see exactly the batches one process sees with batch N*B.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

from ..config import RunConfig
from ..errors import FashionlabError
from ..io import atomic_open

log = logging.getLogger(__name__)

SESSION_ENV = "FASHIONLAB_DDP_SESSION"  # same value on every rank of one launch (children inherit it)
HANDOFF_TIMEOUT_S = 3600.0
_STARTED = time.time()


def world_size(cfg: RunConfig) -> int:
    return cfg.devices * cfg.nodes


def global_rank(cfg: RunConfig) -> int:
    """This process's rank from the launcher's environment (0 in a single-process run)."""
    if world_size(cfg) == 1:
        return 0
    if "RANK" in os.environ:  # torchrun
        return int(os.environ["RANK"])
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return node * cfg.devices + int(os.environ.get("LOCAL_RANK", 0))


def check_devices(cfg: RunConfig, device: str) -> None:
    """One-line errors for a process count the machine cannot run."""
    if cfg.devices == 1:
        return
    if device.startswith("cuda:"):
        raise FashionlabError(f"--device {device} with --devices {cfg.devices}: use --device cuda (GPUs 0..N-1)")
    if device == "cuda" and torch.cuda.device_count() < cfg.devices:
        raise FashionlabError(f"--devices {cfg.devices} but only {torch.cuda.device_count()} CUDA GPU(s) visible")


def handoff_path(run: Path) -> Path:
    return run / "ddp_handoff.pt"


def write_handoff(run: Path, net: torch.nn.Module, imgsz: int, epochs: int, plan: dict | None) -> None:
    """Rank 0, right before fit: what the other ranks need to start fit exactly where rank 0 is."""
    session = os.environ.setdefault(SESSION_ENV, uuid.uuid4().hex)
    path = handoff_path(run)
    with atomic_open(path, "wb") as handle:  # a waiting rank never reads half a file; ENOSPC is one line
        torch.save({"session": session, "created": time.time(), "imgsz": imgsz, "epochs": epochs, "plan": plan,
                    "state_dict": net.state_dict()}, handle)


def read_handoff(run: Path, timeout_s: float = HANDOFF_TIMEOUT_S) -> dict[str, Any]:
    """Other ranks: wait for this launch's hand-off (a stale one from an earlier run is ignored).

    Local children inherit rank 0's session id; another node matches on it when the user exports the
    same ``FASHIONLAB_DDP_SESSION`` there, else on a hand-off written after this process started.
    """
    path, session = handoff_path(run), os.environ.get(SESSION_ENV)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if path.is_file():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except (RuntimeError, EOFError, OSError):
                data = None
            if data and (data["session"] == session if session else data["created"] >= _STARTED - 60):
                return data
        time.sleep(0.5)
    raise FashionlabError(f"{path}: rank 0 wrote no hand-off within {timeout_s:.0f}s (is RUN on a shared filesystem?)")


def sampler(dataset: Dataset, cfg: RunConfig, rank: int, shuffle: bool) -> DistributedSampler:
    """This rank's shard; shuffled by (seed, epoch), so the global order does not depend on the rank count.

    Not shuffled (validation), rank r gets items r, r+W, ... padded with the first items to equal length.
    """
    return DistributedSampler(dataset, num_replicas=world_size(cfg), rank=rank, shuffle=shuffle, seed=cfg.seed)


def gather_shards(module, local: torch.Tensor, total: int) -> torch.Tensor:
    """Undo the unshuffled sharding: rows of every rank, back in dataset order, padding dropped."""
    gathered = module.all_gather(local)  # [W, n_local, ...]
    return gathered.transpose(0, 1).reshape(-1, *local.shape[1:])[:total]


def freeze_batchnorm(net: torch.nn.Module) -> None:
    """BatchNorm layers use (and keep) their running statistics; their affine weights still train."""
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
