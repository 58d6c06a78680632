"""Keypoints end to end on tiny synthetic garments: train -> predict -> evaluate, both heads, resume."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from fashionlab import api
from fashionlab.data.synth.keypoints import synth_keypoints
from fashionlab.errors import FashionlabError
from fashionlab.tasks.keypoints.metric import CATEGORY_POINTS, HEADER, KEYPOINT_NAMES
from fashionlab.tasks.keypoints.model import FORMAT

TINY_KP = dict(model="test_efficientnet", pretrained="none", imgsz=64, batch=8, workers=0)


@pytest.fixture(scope="module")
def garments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_keypoints(tmp_path_factory.mktemp("kp") / "data", n=30, size=64, seed=1)


def test_train_predict_evaluate_heatmap(garments: Path, tmp_path: Path) -> None:
    result = api.train("keypoints", data=str(garments), out=str(tmp_path / "run"), epochs=1, **TINY_KP)
    run = result.run
    payload = torch.load(run / "weights" / "best.pt", map_location="cpu", weights_only=True)
    assert payload["format"] == FORMAT and payload["head"] == "heatmap"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "ne" and metrics["ne"] == pytest.approx(metrics["best"]["value"])
    assert {"ne_flip", "ne_argmax", "per_category"} <= set(metrics)
    for name in ("config.yaml", "history.csv", "data.json", "predictions/val.csv", "predictions/val_truth.csv",
                 "plots/keypoints_overlay.png", "plots/curves.png"):
        assert (run / name).is_file(), name
    # the written val predictions score exactly the NE in metrics.json
    val = api.evaluate("keypoints", run / "predictions" / "val.csv", run / "predictions" / "val_truth.csv")
    assert val["ne"] == pytest.approx(metrics["ne"])

    out = api.predict("keypoints", run / "weights" / "best.pt", garments / "train.csv", tmp_path / "pred.csv",
                      tta="flip", workers=0)
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == HEADER and len(rows) == 31
    for row in rows[1:]:
        points = CATEGORY_POINTS[row[1]]
        for name, cell in zip(KEYPOINT_NAMES, row[2:]):
            assert (cell.endswith("_1") and cell.count("_") == 2) if name in points else cell == "-1_-1_-1"
    scores = api.evaluate("keypoints", out, run / "predictions" / "val_truth.csv")
    assert 0 <= scores["ne"] < 10
    # a folder of images under <category>/ folders predicts the same ids
    by_folder = api.predict("keypoints", run, garments, tmp_path / "folder.csv", workers=0)
    assert sorted(r[0] for r in csv.reader(open(by_folder)))[:-1] == sorted(r[0] for r in rows[1:])


def test_regression_head_two_stage_and_category_filter(garments: Path, tmp_path: Path) -> None:
    result = api.train("keypoints", data=str(garments), out=str(tmp_path / "run"), epochs=1, head="regression",
                       two_stage=True, categories=["skirt", "trousers"], **TINY_KP)
    metrics = result.metrics
    assert "ne_single_stage" in metrics and set(metrics["per_category"]) <= {"skirt", "trousers"}
    with pytest.raises(FashionlabError, match="no model for category"):
        api.predict("keypoints", result.best, garments / "train.csv", tmp_path / "p.csv", workers=0)
    with pytest.raises(FashionlabError, match="keypoints supports none | flip"):
        api.predict("keypoints", result.best, garments / "train.csv", tmp_path / "p.csv", tta="10crop")
