"""Embeddings of image files with flip TTA and multi-model fusion; exact ranking; the RANKS writer.

Flip TTA: the embedding of the image and of its mirror are averaged, then L2-normalised. Fusion of
several models: their normalised embeddings are concatenated (``concat``, then renormalised) or
averaged (``mean``, same dimension required, then renormalised).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ...data.images import load_rgb
from ...data.transforms import tta_transform
from ...errors import FashionlabError
from ...io import atomic_open
from .model import RetrievalNet, load_retrieval_payload

FUSIONS = ("concat", "mean")


@dataclass
class LoadedRetrieval:
    net: RetrievalNet
    spec: dict[str, Any]  # model, imgsz, branches, embed_dim, ..., categories, dim, mean, std, extra
    path: Path
    sha256: str  # of the weights file

    @property
    def categories(self) -> list[str]:
        return list(self.spec.get("categories") or [])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(weights: Path | str | Sequence[Path | str]) -> list[Path]:
    """A best.pt, a run folder (RUN/weights/best.pt), a folder of runs, or a list of any of these."""
    if isinstance(weights, (list, tuple)):
        return [p for w in weights for p in resolve_weights(w)]
    path = Path(weights)
    if path.is_file():
        return [path]
    if (path / "weights" / "best.pt").is_file():
        return [path / "weights" / "best.pt"]
    runs = sorted(p / "weights" / "best.pt" for p in path.iterdir() if (p / "weights" / "best.pt").is_file()) \
        if path.is_dir() else []
    if not runs:
        raise FashionlabError(f"{path}: no weights (expected a best.pt, a run folder or a folder of runs)")
    return runs


def load_models(weights: Path | str | Sequence[Path | str], device: str = "cpu") -> list[LoadedRetrieval]:
    models = []
    for path in resolve_weights(weights):
        net, spec = load_retrieval_payload(path)
        models.append(LoadedRetrieval(net.to(device), spec, path, file_sha256(path)))
    return models


def model_id(models: list[LoadedRetrieval], fusion: str) -> str:
    """Identifies the embedding: the weights files' hashes, the fusion and the dimension."""
    joined = ",".join(m.sha256 for m in models) + (f"|{fusion}" if len(models) > 1 else "")
    return f"{hashlib.sha256(joined.encode()).hexdigest()[:16]}-d{fused_dim(models, fusion)}"


def fused_dim(models: list[LoadedRetrieval], fusion: str) -> int:
    if fusion not in FUSIONS:
        raise FashionlabError(f"fusion '{fusion}': expected one of {', '.join(FUSIONS)}")
    dims = [int(m.spec["dim"]) for m in models]
    if fusion == "mean" and len(set(dims)) > 1:
        raise FashionlabError(f"fusion 'mean' needs models of one embedding size; got {dims} (use fusion 'concat')")
    return sum(dims) if fusion == "concat" else dims[0]


class _Views(Dataset):
    """TTA views of each image; a file that fails to decode comes back as its error message."""

    def __init__(self, paths: Sequence[Path], transform) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return self.transform(load_rgb(self.paths[index])), ""
        except FashionlabError as err:
            return torch.zeros(0), str(err)


def _collate(batch):
    errors = [e for _, e in batch if e]
    return (None, errors[0]) if errors else (torch.stack([v for v, _ in batch]), "")


@torch.no_grad()
def embed_paths(model: LoadedRetrieval, paths: Sequence[Path], tta: str = "flip", batch: int = 64,
                workers: int = 2, device: str = "cpu", with_categories: bool = False):
    """Normalised embeddings [N, D] float32 (and, with ``with_categories``, category probabilities)."""
    if tta not in ("none", "flip"):
        raise FashionlabError(f"tta '{tta}': retrieval supports none or flip")
    spec = model.spec
    transform = tta_transform(int(spec["imgsz"]), spec["mean"], spec["std"], tta)
    loader = DataLoader(_Views(paths, transform), batch_size=batch, num_workers=workers, collate_fn=_collate)
    net = model.net.eval().to(device)
    out, probs = [], []
    for views, error in loader:
        if error:
            raise FashionlabError(error)
        n, v = views.shape[:2]
        emb, category = net.embed_with_category(views.flatten(0, 1).to(device))
        emb = emb.view(n, v, -1).mean(1)
        out.append(torch.nn.functional.normalize(emb, dim=1).cpu().numpy())
        if with_categories and category is not None:
            probs.append(category.softmax(1).view(n, v, -1).mean(1).cpu().numpy())
    dim = int(spec["dim"])
    emb_all = np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)
    if with_categories:
        return emb_all, (np.concatenate(probs) if probs else None)
    return emb_all


def embed_fused(models: list[LoadedRetrieval], paths: Sequence[Path], tta: str = "flip", fusion: str = "concat",
                batch: int = 64, workers: int = 2, device: str = "cpu") -> np.ndarray:
    fused_dim(models, fusion)
    parts = [embed_paths(m, paths, tta, batch, workers, device) for m in models]
    joined = np.concatenate(parts, axis=1) if fusion == "concat" else np.mean(parts, axis=0)
    norms = np.linalg.norm(joined, axis=1, keepdims=True)
    return (joined / np.maximum(norms, 1e-12)).astype(np.float32)


def rank_exact(queries: np.ndarray, gallery: np.ndarray, top: int = 10,
               chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product ranking: (indices [Q, k], scores [Q, k]), best first; k = min(top, gallery)."""
    k = min(top, len(gallery))
    idx = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        sims = queries[start:start + chunk] @ gallery.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else \
            np.tile(np.arange(sims.shape[1]), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        idx[start:start + chunk] = np.take_along_axis(part, order, 1)
        scores[start:start + chunk] = np.take_along_axis(sims, idx[start:start + chunk], 1)
    return idx, scores


def write_ranks(out: Path, results: list[tuple[str, list[str], list[float]]]) -> Path:
    """RANKS CSV ``query_id,gallery_ids`` (space-separated, best first), as metric.py reads it."""
    for query, ranked, _ in results:
        for value in (query, *ranked):
            if any(c in value for c in ' ,"\n'):
                raise FashionlabError(f"id '{value}' holds a space, comma or quote: it cannot be written to RANKS")
    with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
        handle.write("query_id,gallery_ids\n")
        handle.writelines(f"{query},{' '.join(ranked)}\n" for query, ranked, _ in results)
    return Path(out)
