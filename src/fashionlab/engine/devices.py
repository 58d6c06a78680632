"""Which device a run uses."""
from __future__ import annotations

import torch

from ..errors import FashionlabError


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FashionlabError(f"device '{name}' requested but no CUDA GPU is available")
    return name
