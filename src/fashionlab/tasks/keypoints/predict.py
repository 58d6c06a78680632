"""Prediction: batched passes with optional flip-test, optional two-stage crop, the submission CSV.

Flip-test (``tta="flip"``): the image and its mirror go through the network; the mirror's output is
flipped back with left/right names swapped, and the two are averaged (heatmaps as probabilities,
regression outputs as coordinates) before decoding.

Two-stage (``two_stage: true`` at training): a first pass on the whole image gives the garment's box
(min/max of the category's predicted points plus ``crop_margin`` of the box side on each side, made
square, clipped to the image); the crop is resized to the input size and predicted again, and the
points are mapped back. The second pass sees the garment larger (more pixels per point), which helps
when garments are small in the photo; the trade-off: a wrong first pass gives a bad crop, and points
outside the crop cannot be recovered (they end up on the crop border). A wider margin loses fewer
points but gains less resolution. Training with ``two_stage`` also shows the model truth-box crops
(half of the samples) so that it knows the stage-2 view.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...engine.checkpoint import weights_files
from ...engine.devices import resolve_device
from ...engine.predictor import make_loader
from ...errors import FashionlabError
from .augment import box_around
from .dataset import CATEGORY_MASK, KeypointDataset, KeypointRecords, read_source
from .loss_decode import decode, merge_views, to_image_coords, unflip
from .metric import KeypointSet, write_keypoints_csv
from .model import LoadedKeypoints, load_keypoints

TTA_MODES = ("none", "flip")


@torch.no_grad()
def predict_pass(model: LoadedKeypoints, records: KeypointRecords, tta: str = "none", batch: int = 64,
                 workers: int = 0, device: str = "cpu", boxes: np.ndarray | None = None,
                 method: str | None = None) -> np.ndarray:
    """One pass over ``records`` (each image, or its ``boxes`` crop): index coordinates [N, 24, 2]."""
    spec, net = model.spec, model.net.eval().to(device)
    imgsz, stride, head = spec["imgsz"], spec["output_stride"], spec["head"]
    dataset = KeypointDataset(records, imgsz, model.mean, model.std, boxes=boxes)
    coords = np.zeros((len(records), 24, 2), dtype=np.float64)
    for images, target in make_loader(dataset, batch, workers):
        images = images.to(device)
        outputs = [net(images)]
        if tta == "flip":
            outputs.append(unflip(net(images.flip(-1)), head))
        xy = decode(merge_views(outputs, head), head, imgsz, stride, method or spec["decode"], spec["decode_radius"])
        coords[target["index"].numpy()] = to_image_coords(xy, target["box"], imgsz).cpu().numpy()
    return clip_to_images(coords, records.sizes)


def clip_to_images(coords: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Keep predicted index coordinates [N, 24, 2] on their images (``sizes`` [N, 2] as W, H)."""
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = np.clip(out[..., 0], 0, sizes[:, 0][:, None] - 1)
    out[..., 1] = np.clip(out[..., 1], 0, sizes[:, 1][:, None] - 1)
    return out


def crop_boxes(records: KeypointRecords, coords: np.ndarray, margin: float) -> np.ndarray:
    """Stage-2 boxes around each image's predicted category points."""
    return np.array([box_around(coords[i], CATEGORY_MASK[c], int(records.sizes[i, 0]), int(records.sizes[i, 1]),
                                margin) for i, c in enumerate(records.categories)], dtype=np.int64).reshape(-1, 4)


def predict_records(model: LoadedKeypoints, records: KeypointRecords, tta: str = "none", batch: int = 64,
                    workers: int = 0, device: str = "cpu", two_stage: bool | None = None,
                    method: str | None = None) -> np.ndarray:
    """Index coordinates [N, 24, 2] in each original image (two-stage as the model was trained unless set)."""
    if tta not in TTA_MODES:
        raise FashionlabError(f"--tta '{tta}': keypoints supports {' | '.join(TTA_MODES)}")
    coords = predict_pass(model, records, tta, batch, workers, device, method=method)
    if model.spec["two_stage"] if two_stage is None else two_stage:
        boxes = crop_boxes(records, coords, model.spec["crop_margin"])
        coords = predict_pass(model, records, tta, batch, workers, device, boxes=boxes, method=method)
    return coords


def as_prediction_set(records: KeypointRecords, coords: np.ndarray) -> KeypointSet:
    """Predictions as the metric sees them after writing: rounded to whole pixels, v = 1."""
    return KeypointSet(list(records.ids), list(records.categories), np.rint(coords),
                       np.ones(coords.shape[:2], dtype=np.int64))


def predict_keypoint_files(weights: Path | list[Path], source: Path, out: Path, tta: str = "none", batch: int = 64,
                           workers: int = 2, device: str = "auto", skip_bad: bool = False) -> Path:
    """``fashionlab predict keypoints``: one model, several, or folders of runs (per-category models;
    models covering the same category are averaged). Writes the 24-column FashionAI submission CSV;
    ``skip_bad`` leaves unreadable images out of it."""
    if tta not in TTA_MODES:
        raise FashionlabError(f"--tta '{tta}': keypoints supports {' | '.join(TTA_MODES)}")
    device = resolve_device(device)
    entries = weights if isinstance(weights, (list, tuple)) else [weights]
    models = [load_keypoints(w, device) for entry in entries for w in weights_files(entry)]
    records = read_source(source, skip_bad)
    total = np.zeros((len(records), 24, 2))
    count = np.zeros(len(records))
    for model in models:
        cats = model.spec["categories"]
        rows = [i for i, c in enumerate(records.categories) if not cats or c in cats]
        if rows:
            total[rows] += predict_records(model, records.subset(rows), tta, batch, workers, device)
            count[rows] += 1
    if (count == 0).any():
        i = int(np.argmax(count == 0))
        covered = sorted({c for m in models for c in m.spec["categories"]})
        raise FashionlabError(f"{source}: no model for category '{records.categories[i]}' of '{records.ids[i]}' "
                              f"(models in {weights} cover {covered})")
    return write_keypoints_csv(out, records.ids, records.categories, total / count[:, None, None])
