"""Retrieval end to end on a tiny synthetic set: train -> best.pt -> predict_files -> evaluate; data errors."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch

from fashionlab import api
from fashionlab.data.synth.retrieval import synth_retrieval
from fashionlab.errors import FashionlabError

TINY_RETRIEVAL = dict(model="test_efficientnet", pretrained="none", imgsz=64, batch=16, workers=0, embed_dim=16)


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> Path:
    return synth_retrieval(tmp_path_factory.mktemp("rt") / "data", n_items=12, size=64, seed=1) / "items.csv"


def test_train_predict_evaluate(items: Path, tmp_path: Path) -> None:
    result = api.train("retrieval", data=str(items), out=str(tmp_path / "run"), epochs=1, time_budget=120, val_fraction=0.25,
                       **TINY_RETRIEVAL)
    payload = torch.load(result.best, map_location="cpu", weights_only=True)  # safe format
    assert payload["format"] == "fashionlab-retrieval-1" and not payload["head_conv"] and payload["raw_weight"] == 0
    assert payload["frozen_weight"] == 0 and payload["dim"] == 13 * 16  # no pretrained weights: no frozen copy
    assert not any(k.startswith("classifiers.") for k in payload["state_dict"])  # ID heads left out
    metrics = json.loads((result.run / "metrics.json").read_text())
    assert metrics["metric"] == "map@10" and 0.0 <= metrics["map@10"] <= 1.0
    for name in ("config.yaml", "history.csv", "data.json", "weights/last.ckpt", "plots/curves.png",
                 "plots/retrieval_examples.png", "predictions/val.csv", "predictions/val_matches.csv"):
        assert (result.run / name).is_file(), name
    data = json.loads((result.run / "data.json").read_text())
    assert data["val_items"] == 3 and data["train_items"] == 9  # held-out items, not images
    rescored = api.evaluate("retrieval", result.run / "predictions/val.csv", result.run / "predictions/val_matches.csv")
    assert rescored["map@10"] == pytest.approx(metrics["map@10"])

    out = api.predict("retrieval", result.run, items, tmp_path / "ranks.csv", tta="flip", workers=0)
    ranks = pd.read_csv(out)
    assert list(ranks.columns) == ["query_id", "gallery_ids"] and len(ranks) == 24  # consumer images
    assert all(g.startswith("shop/") and len(g.split()) == 10 for g in ranks["gallery_ids"])
    scores = api.evaluate("retrieval", out, items.parent / "matches.csv")
    assert set(scores) >= {"map@10", "recall@1", "recall@5", "recall@10"}


def test_global_only_plain_batches(items: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    api.train("retrieval", data=str(items), out=str(run), epochs=2, branches=["global"], triplet_weight=0.0,
              k_per_item=0, category_head=False, head_conv=True, raw_weight=0.5, frozen_weight=0.0, **TINY_RETRIEVAL)
    head = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).num_features
    payload = torch.load(run / "weights/best.pt", weights_only=True)
    assert payload["head_conv"] and payload["dim"] == 16 + head  # the global part + the raw pooled head-conv map
    ranks = api.predict("retrieval", run, items, tmp_path / "ranks.csv", tta="none", workers=0)  # reloads it
    assert len(pd.read_csv(ranks)) == 24
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2]


def test_frozen_copy_joins_the_embedding_and_never_trains(items: Path, tmp_path: Path) -> None:
    from torch.nn import functional as F

    from fashionlab.tasks.retrieval.model import load_retrieval_payload

    run = tmp_path / "run"
    pretrained = tmp_path / "imagenet.pt"  # stands in for ImageNet weights (random init leaves the copy out)
    torch.save(timm.create_model("test_efficientnet", pretrained=False, num_classes=0).state_dict(), pretrained)
    api.train("retrieval", data=str(items), out=str(run), epochs=2, branches=["global"], k_per_item=0,
              category_head=False, frozen_weight=0.4, val_fraction=0.25,
              **{**TINY_RETRIEVAL, "pretrained": str(pretrained)})
    head = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).num_features
    payload = torch.load(run / "weights/best.pt", weights_only=True)
    assert payload["frozen_weight"] == 0.4 and payload["dim"] == 16 + head
    assert any(k.startswith("frozen.") for k in payload["state_dict"])  # loads with no download
    net, _ = load_retrieval_payload(run / "weights/best.pt")
    net.train()
    assert not net.frozen.training and not any(p.requires_grad for p in net.frozen.parameters())
    net.eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        emb = net.embed(images)
        parts, mean, _ = net._run(images)
        frozen = net.frozen(images)
    cos = emb[0] @ emb[1]
    expected = 0.6 * (F.normalize(parts.flatten(1), dim=1)[0] @ F.normalize(parts.flatten(1), dim=1)[1]) \
        + 0.4 * (F.normalize(frozen, dim=1)[0] @ F.normalize(frozen, dim=1)[1])
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5) and cos == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(FashionlabError, match="raw_weight \\+ frozen_weight"):
        api.train("retrieval", data=str(items), raw_weight=0.7, frozen_weight=0.4)


def test_bad_items_csv_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    csv = tmp_path / "items.csv"
    csv.write_text("image,item_id,domain\na.jpg,x,shop\n")
    with pytest.raises(FashionlabError, match=r"items.csv line 2: image 'a.jpg' not found"):
        api.train("retrieval", data=str(csv), out=str(tmp_path / "run"), **TINY_RETRIEVAL)
    (tmp_path / "images" / "a.jpg").write_bytes(b"")
    csv.write_text("image,item_id,domain\na.jpg,x,street\n")
    with pytest.raises(FashionlabError, match="line 2: domain 'street'; expected shop or consumer"):
        api.train("retrieval", data=str(csv), out=str(tmp_path / "run"), **TINY_RETRIEVAL)
    csv.write_text("image,item\na.jpg,x\n")
    with pytest.raises(FashionlabError, match="lacks item_id, domain"):
        api.train("retrieval", data=str(csv), out=str(tmp_path / "run"), **TINY_RETRIEVAL)
    with pytest.raises(FashionlabError, match="branches"):
        api.train("retrieval", data=str(csv), branches=["global", "diagonal"])
