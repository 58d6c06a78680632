"""Serving keypoints models: ``POST /predict/keypoints`` -> the 24 FashionAI points of the uploaded photo.

The JSON holds ``keypoints``: ``[{"name", "x", "y", "score"}, ...]`` in the uploaded image's pixel
coordinates (the web page draws them). A model trained on some categories only (``categories:``)
returns the points of those categories. Several keypoints weights files are averaged (flip-test off:
one pass per model keeps the service's latency low). ``score`` is the heatmap's peak probability
(soft-argmax head) — a point the garment does not show tends to score low; regression models give none.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..tasks.keypoints.augment import resize_with_points
from ..tasks.keypoints.dataset import CATEGORY_MASK, normalize
from ..tasks.keypoints.loss_decode import decode, to_image_coords
from ..tasks.keypoints.metric import KEYPOINT_NAMES
from ..tasks.keypoints.model import LoadedKeypoints, load_keypoints
from .adapters import Adapter


class KeypointsAdapter(Adapter):
    task = "keypoints"
    draft = None  # full-size decode: coordinates are returned in the uploaded image's own pixels

    def __init__(self, models: list[LoadedKeypoints], device: str) -> None:
        self.models, self.device = models, device
        self.keys = list(dict.fromkeys((m.spec["imgsz"], tuple(m.mean), tuple(m.std)) for m in models))
        categories = sorted({c for m in models for c in m.spec["categories"]})
        mask = np.zeros(len(KEYPOINT_NAMES), dtype=bool)
        for category in categories or CATEGORY_MASK:
            mask |= CATEGORY_MASK[category]
        self.points = np.flatnonzero(mask)
        self.categories = categories or sorted(CATEGORY_MASK)

    @classmethod
    def load(cls, paths: Sequence[Path], device: str = "cpu") -> list["KeypointsAdapter"]:
        return [cls([load_keypoints(p, device) for p in paths], device)]

    def prepare(self, image: np.ndarray) -> dict[str, Any]:
        h, w = image.shape[:2]
        views = {key: normalize(resize_with_points(image, np.zeros((0, 2)), key[0])[0], key[1], key[2]).numpy()
                 for key in self.keys}
        return {"views": views, "size": (w, h)}

    @torch.no_grad()
    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        boxes = torch.tensor([[0.0, 0.0, float(it["size"][0]), float(it["size"][1])] for it in items])
        coords = np.zeros((len(items), len(KEYPOINT_NAMES), 2))
        scores = np.zeros((len(items), len(KEYPOINT_NAMES)))
        for model in self.models:
            spec = model.spec
            key = (spec["imgsz"], tuple(model.mean), tuple(model.std))
            images = torch.from_numpy(np.stack([it["views"][key] for it in items])).to(self.device)
            output = model.net.eval()(images)
            xy = decode(output, spec["head"], spec["imgsz"], spec["output_stride"], spec["decode"], spec["decode_radius"])
            coords += to_image_coords(xy, boxes, spec["imgsz"]).cpu().numpy()
            if spec["head"] == "heatmap":
                scores += output.flatten(2).float().softmax(-1).amax(-1).cpu().numpy()
        coords /= len(self.models)
        scores /= len(self.models)
        heatmap = any(m.spec["head"] == "heatmap" for m in self.models)
        out = []
        for i, item in enumerate(items):
            w, h = item["size"]
            points = []
            for j in self.points:
                x, y = float(np.clip(coords[i, j, 0], 0, w - 1)), float(np.clip(coords[i, j, 1], 0, h - 1))
                point = {"name": KEYPOINT_NAMES[j], "x": round(x, 1), "y": round(y, 1), "visible": True}
                if heatmap:
                    point["score"] = round(float(scores[i, j]), 4)
                points.append(point)
            out.append({"keypoints": points, "categories": self.categories})
        return out

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "models": [str(m.path) for m in self.models],
                "imgsz": sorted({m.spec["imgsz"] for m in self.models}), "categories": self.categories}
