"""The HTTP service: predictions per task, upload limits and bad images, micro-batching, timeouts, search hook."""
from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from fashionlab.engine.checkpoint import save_weights  # noqa: E402
from fashionlab.engine.predictor import predict_probs  # noqa: E402
from fashionlab.engine.checkpoint import load_weights  # noqa: E402
from fashionlab.errors import FashionlabError  # noqa: E402
from fashionlab.models.backbone import create_backbone  # noqa: E402
from fashionlab.models.net import ClassifierNet  # noqa: E402
from fashionlab.serve import create_app  # noqa: E402
from fashionlab.serve import search as search_module  # noqa: E402
from fashionlab.tasks.base import LabelledSet, TaskMeta  # noqa: E402

ATTR = TaskMeta(["colour_labels", "bright_labels"], [["red", "green", "blue"], ["light", "dark"]])
CLASSES = TaskMeta(["label"], [["glass", "metal", "paper", "plastic"]])
STYLES = TaskMeta(["styles"], [["casual", "formal", "sporty"]])


def tiny_weights(path: Path, task: str, meta: TaskMeta, seed: int = 0, imgsz: int = 32) -> Path:
    """A random test_efficientnet classifier saved like a training run's best.pt (no training)."""
    torch.manual_seed(seed)
    backbone = create_backbone("test_efficientnet", pretrained="none")
    net = ClassifierNet(backbone.model, backbone.num_features, meta.head_sizes).eval()
    with torch.no_grad():
        for head in net.head.heads:
            head.weight.mul_(20.0)  # spread the probabilities so the top value is clear
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_weights(path, net, task, meta, "test_efficientnet", imgsz, backbone.mean, backbone.std)


def jpeg(seed: int = 0, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    styles = tiny_weights(root / "styles" / "weights" / "best.pt", "styles", STYLES, seed=2)
    (root / "styles" / "thresholds.json").write_text(json.dumps({"casual": 0.0, "formal": 1.0}))
    return {"attributes": tiny_weights(root / "attr" / "weights" / "best.pt", "attributes", ATTR, seed=0),
            "classify": tiny_weights(root / "cls" / "weights" / "best.pt", "classify", CLASSES, seed=1),
            "styles": styles, "root": root}


@pytest.fixture(scope="module")
def client(models):
    app = create_app([models["attributes"], models["classify"], models["styles"].parent.parent],
                     batch_window_ms=1)
    with TestClient(app) as test_client:
        yield test_client


def raw(client: TestClient, task: str, data: bytes, ctype: str = "image/jpeg") -> httpx.Response:
    return client.post(f"/predict/{task}", content=data, headers={"content-type": ctype})


def test_health_lists_tasks_models_and_batching(client) -> None:
    health = client.get("/health").json()
    assert health["tasks"] == ["attributes", "classify", "styles"]
    assert health["models"]["attributes"]["heads"] == {"colour_labels": 3, "bright_labels": 2}
    assert health["models"]["styles"]["multilabel"] is True
    assert health["batching"]["enabled"] is True and health["search"]["available"] is False
    assert "/predict/{task}" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_attributes_multipart_equals_raw_and_matches_predict(client, models, tmp_path: Path) -> None:
    data = jpeg(3)
    multipart = client.post("/predict/attributes", files={"file": ("shirt.jpg", data, "image/jpeg")})
    assert multipart.status_code == 200, multipart.text
    assert raw(client, "attributes", data).json() == multipart.json()
    result = multipart.json()
    assert result["task"] == "attributes" and set(result["attributes"]) == {"colour_labels", "bright_labels"}
    image = tmp_path / "shirt.jpg"
    image.write_bytes(data)
    model = load_weights(models["attributes"])
    rows = LabelledSet([image, image], np.array([0, 1]), np.zeros((2, 3), np.float32))
    expected = predict_probs(model.net, rows, model.imgsz, model.mean, model.std, workers=0)
    for head, probs in zip(ATTR.tasks, expected):
        got = result["attributes"][head]
        assert np.allclose(list(got["probabilities"].values()), probs, atol=1e-5)
        assert got["top"] == ATTR.classes[ATTR.tasks.index(head)][int(np.argmax(probs))]
        assert got["score"] == pytest.approx(float(np.max(probs)), abs=1e-5)


def test_classify_and_styles_shapes(client) -> None:
    result = raw(client, "classify", jpeg(4)).json()
    assert set(result) == {"task", "label", "score", "probabilities"}
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    styles = raw(client, "styles", jpeg(5)).json()
    assert styles["thresholds"] == {"casual": 0.0, "formal": 1.0, "sporty": 0.5}  # RUN/thresholds.json
    assert "casual" in styles["labels"] and "formal" not in styles["labels"]
    assert ("sporty" in styles["labels"]) == (styles["probabilities"]["sporty"] >= 0.5)


def test_bad_uploads_are_clear_errors_and_the_server_keeps_answering(client) -> None:
    data = jpeg(6)
    cases = [
        (raw(client, "attributes", b"this is not an image"), 415, "not an image format"),
        (raw(client, "attributes", data[: len(data) // 2]), 400, "cannot decode image"),
        (raw(client, "attributes", data, "text/plain"), 415, "content type 'text/plain'"),
        (raw(client, "attributes", b""), 400, "empty upload"),
        (client.post("/predict/attributes", files={"other": ("a.jpg", data, "image/jpeg")}), 400, "no file field 'file'"),
        (client.post("/predict/attributes", files={"file": ("x.txt", b"hello", "text/plain")}), 415, "x.txt"),
        (raw(client, "keypoints", data), 404, "loaded tasks: attributes, classify, styles"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, response.text
        assert text in response.json()["detail"]
    assert raw(client, "attributes", data).status_code == 200


def test_upload_over_the_limit_is_413(models) -> None:
    big = jpeg(7, size=160)  # ~ 20 KB of noise
    assert len(big) > 12 * 1024
    with TestClient(create_app([models["classify"]], max_upload_mb=10 / 1024)) as small:  # 10 KB
        assert raw(small, "classify", big).status_code == 413
        multipart = small.post("/predict/classify", files={"file": ("big.jpg", big, "image/jpeg")})
        assert multipart.status_code == 413 and "limit" in multipart.json()["detail"]
        chunks = (big[i:i + 4096] for i in range(0, len(big), 4096))  # chunked: no content-length
        assert small.post("/predict/classify", content=chunks, headers={"content-type": "image/jpeg"}).status_code == 413
        assert raw(small, "classify", jpeg(8, size=32)).status_code == 200


def test_huge_pixel_count_is_refused_before_decoding(client) -> None:
    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, "PNG")  # 48 Mpx, a few KB compressed
    response = raw(client, "classify", buf.getvalue(), "image/png")
    assert response.status_code == 413 and "pixel limit" in response.json()["detail"]


async def _burst(app, n: int, data: bytes) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as ac:
        return await asyncio.gather(*[ac.post("/predict/classify", content=data, headers={"content-type": "image/jpeg"})
                                      for _ in range(n)])


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_batched_or_not(models, batching: bool) -> None:
    app = create_app([models["classify"]], batch_window_ms=200, micro_batching=batching)
    data = jpeg(9)
    responses = asyncio.run(_burst(app, 12, data))
    assert [r.status_code for r in responses] == [200] * 12
    first = responses[0].json()
    for r in responses:
        assert r.json()["label"] == first["label"]
        assert np.allclose(list(r.json()["probabilities"].values()), list(first["probabilities"].values()), atol=1e-5)
    stats = app.state.serve.batchers["classify"].stats.as_dict()
    assert stats["requests"] == 12
    if batching:
        assert stats["largest_batch"] > 1 and stats["batches"] < 12
    else:
        assert stats["batch_sizes"] == {"1": 12}


def test_timeout_504_and_model_failure_500_do_not_kill_the_server(models) -> None:
    app = create_app([models["classify"]], timeout_s=0.5)
    batcher = app.state.serve.batchers["classify"]
    real = batcher.fn
    with TestClient(app) as c:
        batcher.fn = lambda items: (time.sleep(1.0), real(items))[1]
        slow = raw(c, "classify", jpeg(10))
        assert slow.status_code == 504 and "no answer within 0.5 s" in slow.json()["detail"]
        time.sleep(1.5)  # the model thread finishes the abandoned batch

        def broken(items):
            raise RuntimeError("weights exploded")

        batcher.fn = broken
        failed = raw(c, "classify", jpeg(10))
        assert failed.status_code == 500 and "weights exploded" in failed.json()["detail"]
        batcher.fn = real
        assert raw(c, "classify", jpeg(10)).status_code == 200


def test_search_without_index_or_retrieval(models, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(search_module, "RETRIEVAL_MODULE", "fashionlab.tasks.no_such_retrieval")
    with TestClient(create_app([models["classify"]], index=tmp_path)) as c:
        response = c.post("/search", content=jpeg(11), headers={"content-type": "image/jpeg"})
        assert response.status_code == 501 and "not available" in response.json()["detail"]
        assert c.get("/health").json()["search"]["available"] is False


def test_search_hook_calls_retrieval_search(models, tmp_path: Path, monkeypatch) -> None:
    gallery = tmp_path / "shop.jpg"
    gallery.write_bytes(jpeg(12))
    (tmp_path / "gallery.csv").write_text(f"id,category,path\nshop/1,tops,{gallery}\nshop/2,tops,{tmp_path / 'gone.jpg'}\n")
    calls, opened = [], []

    class FakeSearcher:  # the index and its model are opened once, at start-up, not per request
        def __init__(self, index, device="auto"):
            opened.append(Path(index))

        def search_paths(self, paths, ids, top, **kwargs):
            calls.append((opened[-1], Path(paths[0]).suffix, top, Image.open(paths[0]).size))
            return [("query.jpg", ["shop/1", "shop/2"], [0.9, 0.5])]

    fake = SimpleNamespace(Searcher=FakeSearcher)
    monkeypatch.setattr(search_module, "retrieval_module", lambda: (fake, ""))
    with TestClient(create_app([models["classify"]], index=tmp_path)) as c:
        response = c.post("/search?top=2", files={"file": ("q.jpg", jpeg(13), "image/jpeg")})
        assert response.status_code == 200, response.text
        assert response.json()["results"] == [
            {"id": "shop/1", "score": 0.9, "category": "tops", "image": "/gallery/shop/1"},
            {"id": "shop/2", "score": 0.5, "category": "tops", "image": None}]
        assert calls == [(tmp_path, ".jpg", 2, (48, 48))]
        assert c.get("/gallery/shop/1").content == gallery.read_bytes()
        assert c.get("/gallery/shop/2").status_code == 404
        assert c.post("/search", content=b"junk", headers={"content-type": "image/png"}).status_code == 415
        c.post("/search?top=2", files={"file": ("q.jpg", jpeg(14), "image/jpeg")})
    assert opened == [tmp_path] and len(calls) == 2


def test_web_page_is_self_contained(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file"' in page.text and "/predict/" in page.text and "/search" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no external resources


def test_unservable_weights_are_one_line_errors(models, tmp_path: Path) -> None:
    other = tmp_path / "r.pt"
    torch.save({"format": "fashionlab-retrieval-1"}, other)
    with pytest.raises(FashionlabError, match="retrieval models are served through an index"):
        create_app([other])
    torch.save({"format": "someone-elses-1"}, other)
    with pytest.raises(FashionlabError, match="unknown weights format 'someone-elses-1'; servable formats: "):
        create_app([other])
    with pytest.raises(FashionlabError, match="no weights file"):
        create_app([tmp_path / "missing"])
    with pytest.raises(FashionlabError, match="nothing to serve"):
        create_app([])


@pytest.fixture(scope="module")
def retrieval_index(tmp_path_factory) -> Path:
    """A real index from the retrieval task (tiny random embedding model, 6 synthetic items)."""
    pytest.importorskip("faiss")
    root = tmp_path_factory.mktemp("serve_index")
    from fashionlab.data.synth.retrieval import synth_retrieval
    from fashionlab.tasks.retrieval.features import create_feature_map
    from fashionlab.tasks.retrieval.model import build_net, save_retrieval
    from fashionlab.tasks.retrieval.search import build_index

    spec = {"model": "test_efficientnet", "imgsz": 64, "branches": ["global", "horizontal", "ring"],
            "embed_dim": 16, "stripes": [2, 3], "rings": 2, "output_stride": 32, "categories": []}
    data = synth_retrieval(root / "data", n_items=6, size=64, seed=3)
    torch.manual_seed(0)
    net = build_net(create_feature_map("test_efficientnet", "none", 32), spec)
    weights = save_retrieval(root / "embed.pt", net.eval(), spec, (0.5,) * 3, (0.5,) * 3)
    return build_index(weights, data / "items.csv", root / "index", batch=16, workers=0, device="cpu")


def test_search_end_to_end_with_a_real_index(models, retrieval_index: Path) -> None:
    with TestClient(create_app([models["classify"]], index=retrieval_index)) as c:
        assert c.get("/health").json()["search"] == {"available": True, "index": str(retrieval_index),
                                                     "reason": None, "gallery": 12}
        first = (retrieval_index / "gallery.csv").read_text().splitlines()[1].split(",")
        image = Path(first[2]).read_bytes()
        response = c.post("/search?top=3", files={"file": ("q.jpg", image, "image/jpeg")})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == 3 and results[0]["id"] == first[0] and results[0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
        assert c.get(results[0]["image"]).content == image
        assert c.post("/search?top=0", content=image, headers={"content-type": "image/jpeg"}).status_code == 422
