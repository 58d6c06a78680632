"""Serving: a FastAPI app with micro-batching, task adapters, gallery search and a web page.

``create_app(weights, index=None, ...)`` builds the app; run it with ``uvicorn`` (``fashionlab serve``).
"""
from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
