"""ONNX export: graph vs PyTorch, dynamic batch, OnnxPredictor as a drop-in net, serving an .onnx file."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from fashionlab.engine.checkpoint import load_weights, save_weights  # noqa: E402
from fashionlab.engine.export import AllHeads, OnnxPredictor, export_onnx, load_onnx  # noqa: E402
from fashionlab.engine.predictor import predict_probs  # noqa: E402
from fashionlab.errors import FashionlabError  # noqa: E402
from fashionlab.models.backbone import create_backbone  # noqa: E402
from fashionlab.models.net import ClassifierNet  # noqa: E402
from fashionlab.tasks.base import LabelledSet, TaskMeta  # noqa: E402

ATTR = TaskMeta(["colour_labels", "bright_labels"], [["red", "green", "blue"], ["light", "dark"]])


def tiny_weights(path: Path, task: str, meta: TaskMeta, seed: int = 0, imgsz: int = 32, hidden: int = 0) -> Path:
    torch.manual_seed(seed)
    backbone = create_backbone("test_efficientnet", pretrained="none")
    net = ClassifierNet(backbone.model, backbone.num_features, meta.head_sizes, "linear", hidden).eval()
    with torch.no_grad():
        for head in net.head.heads:
            (head if hidden <= 0 else head[-1]).weight.mul_(20.0)
    return save_weights(path, net, task, meta, "test_efficientnet", imgsz, backbone.mean, backbone.std)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("export")
    weights = tiny_weights(root / "best.pt", "attributes", ATTR)
    summary = export_onnx(weights, root / "model.onnx")
    return {"root": root, "weights": weights, "onnx": root / "model.onnx", "summary": summary}


def test_export_matches_pytorch(exported) -> None:
    summary = exported["summary"]
    assert exported["onnx"].is_file() and summary["bytes"] > 1000
    assert summary["max_abs_diff"] < 1e-4 and summary["max_prob_diff"] < 1e-5
    assert summary["outputs"] == {"logits": ["batch", 2, 3]} and summary["heads"] == ATTR.tasks


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_sizes(exported, batch: int) -> None:
    model = load_weights(exported["weights"])
    predictor = OnnxPredictor(exported["onnx"])
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    got = predictor.all_logits(images.numpy())
    with torch.no_grad():
        ref = AllHeads(model.net).eval()(images).numpy()
    assert got.shape == (batch, 2, 3)
    assert np.abs(got - ref).max() < 1e-4
    task_index = torch.tensor([i % 2 for i in range(batch)])
    with torch.no_grad():
        forward = model.net(images, task_index).numpy()
    assert np.abs(predictor(images, task_index).numpy() - forward).max() < 1e-4  # same as ClassifierNet.forward


def test_onnx_predictor_probabilities_match_torch(exported, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(paths[-1])
    data = LabelledSet(paths, np.array([0, 1, 0, 1]), np.zeros((4, 3), np.float32))
    torch_model, onnx_model = load_weights(exported["weights"]), load_onnx(exported["onnx"])
    assert (onnx_model.task, onnx_model.meta, onnx_model.imgsz) == ("attributes", ATTR, 32)
    for tta in ("none", "flip"):
        ref = predict_probs(torch_model.net, data, 32, torch_model.mean, torch_model.std, tta, batch=3, workers=0)
        got = predict_probs(onnx_model.net, data, 32, onnx_model.mean, onnx_model.std, tta, batch=3, workers=0)
        for r, g in zip(ref, got):
            assert r.shape == g.shape and np.abs(r - g).max() < 1e-5


def test_multilabel_and_hidden_head_export(tmp_path: Path) -> None:
    weights = tiny_weights(tmp_path / "styles.pt", "styles", TaskMeta(["styles"], [["a", "b", "c", "d"]]), hidden=8)
    summary = export_onnx(weights, tmp_path / "styles.onnx")
    assert summary["max_abs_diff"] < 1e-4 and summary["outputs"]["logits"] == ["batch", 1, 4]


def test_served_onnx_equals_served_torch(exported) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fashionlab.serve import create_app

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(buf, "PNG")
    answers = []
    for weights in (exported["weights"], exported["onnx"]):
        with TestClient(create_app([weights])) as client:
            response = client.post("/predict/attributes", content=buf.getvalue(), headers={"content-type": "image/png"})
            assert response.status_code == 200, response.text
            answers.append(response.json()["attributes"])
            runtime = client.get("/health").json()["models"]["attributes"]["models"][0]["runtime"]
            assert runtime == ("onnx" if str(weights).endswith(".onnx") else "torch")
    for head in ATTR.tasks:
        assert answers[0][head]["top"] == answers[1][head]["top"]
        assert np.allclose(list(answers[0][head]["probabilities"].values()),
                           list(answers[1][head]["probabilities"].values()), atol=1e-5)


def test_bad_inputs_are_one_line_errors(exported, tmp_path: Path) -> None:
    with pytest.raises(FashionlabError, match="weights file not found"):
        export_onnx(tmp_path / "nope.pt", tmp_path / "x.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(FashionlabError, match="not a loadable ONNX model"):
        OnnxPredictor(tmp_path / "junk.onnx")
    with pytest.raises(FashionlabError, match="run on the CPU"):
        load_onnx(exported["onnx"], "cuda")
