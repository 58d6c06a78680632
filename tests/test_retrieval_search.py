"""Retrieval index and search: round trip, kinds, category restriction, fusion, model mismatch, bad images."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fashionlab.data.synth.retrieval import synth_retrieval
from fashionlab.errors import FashionlabError
from fashionlab.tasks.retrieval.features import create_feature_map
from fashionlab.tasks.retrieval.metric import read_ranks_csv
from fashionlab.tasks.retrieval.model import build_net, save_retrieval
from fashionlab.tasks.retrieval.search import build_index, search

pytest.importorskip("faiss")
SPEC = {"model": "test_efficientnet", "imgsz": 64, "branches": ["global", "horizontal", "ring"], "embed_dim": 16,
        "stripes": [2, 3], "rings": 2, "output_stride": 32}
RUN = dict(batch=16, workers=0, device="cpu")


def _weights(path: Path, seed: int, categories: list[str], **spec) -> Path:
    torch.manual_seed(seed)
    net = build_net(create_feature_map("test_efficientnet", "none", 32), {**SPEC, **spec, "categories": categories})
    return save_retrieval(path, net.eval(), {**SPEC, **spec, "categories": categories}, (0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("retrieval")
    data = synth_retrieval(root / "data", n_items=10, size=64, seed=3)
    cats = sorted({line.split(",")[3] for line in (data / "items.csv").read_text().splitlines()[1:]})
    weights = _weights(root / "a.pt", 0, cats)
    index = build_index(weights, data / "items.csv", root / "index", **RUN)
    return {"root": root, "data": data, "weights": weights, "index": index}


def _shop(world) -> list[tuple[str, str]]:
    rows = [line.split(",") for line in (world["data"] / "items.csv").read_text().splitlines()[1:]]
    return [(r[0], r[3]) for r in rows if r[2] == "shop"]


def test_gallery_image_finds_itself_first(world) -> None:
    meta = json.loads((world["index"] / "meta.json").read_text())
    assert meta["count"] == 20 and meta["kind"] == "flat" and meta["dim"] == 8 * 16
    image, _ = _shop(world)[3]
    [(query, ranked, scores)] = search(world["index"], world["data"] / "images" / image, top=5, **RUN)
    assert query == Path(image).name and ranked[0] == image
    assert scores[0] == pytest.approx(1.0, abs=1e-4) and scores == sorted(scores, reverse=True) and len(ranked) == 5


def test_folder_and_csv_queries_write_ranks(world, tmp_path: Path) -> None:
    out = tmp_path / "ranks.csv"
    results = search(world["index"], world["data"] / "items.csv", top=10, out=out, **RUN)
    assert len(results) == 20  # the consumer rows
    ranks = read_ranks_csv(out)
    assert set(ranks) == {q for q, _, _ in results} and all(len(r) == 10 for r in ranks.values())
    folder = search(world["index"], world["data"] / "images" / "shop", top=1, **RUN)
    assert all(ranked == [f"shop/{q}"] for q, ranked, _ in folder)  # id = path relative to the folder


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_round_trip(world, kind: str) -> None:
    index = build_index(world["weights"], world["data"] / "items.csv", world["root"] / f"index_{kind}", kind=kind,
                        **RUN)
    image, _ = _shop(world)[7]
    [(_, ranked, _)] = search(index, world["data"] / "images" / image, top=3, **RUN)
    assert ranked[0] == image


def test_category_restriction(world) -> None:
    shop = _shop(world)
    image, category = shop[0]
    in_category = {i for i, c in shop if c == category}
    [(_, ranked, _)] = search(world["index"], world["data"] / "images" / image, top=10, category=category, **RUN)
    assert ranked[0] == image and set(ranked) == in_category  # only (and all of) that category
    auto = search(world["index"], world["data"] / "images" / "consumer", top=10, category="auto", **RUN)
    cat_of = dict(shop)
    assert all(len({cat_of[g] for g in ranked}) == 1 for _, ranked, _ in auto)  # one predicted category each
    with pytest.raises(FashionlabError, match="category 'hat' is not in the gallery"):
        search(world["index"], world["data"] / "images" / image, category="hat", **RUN)


def test_other_model_is_a_clear_error(world) -> None:
    image = world["data"] / "images" / _shop(world)[0][0]
    other = _weights(world["root"] / "b.pt", 1, [])
    with pytest.raises(FashionlabError, match="built with model .* but the weights .*b.pt are model"):
        search(world["index"], image, weights=other, **RUN)
    wider = _weights(world["root"] / "c.pt", 0, [], embed_dim=32)
    with pytest.raises(FashionlabError, match=r"embedding dim 128\), .* are model \w+-d256"):
        search(world["index"], image, weights=wider, **RUN)


def test_fusion_of_two_models(world) -> None:
    other = _weights(world["root"] / "d.pt", 2, [])
    both = [world["weights"], other]
    for fusion, dim in (("concat", 256), ("mean", 128)):
        index = build_index(both, world["data"] / "items.csv", world["root"] / f"fused_{fusion}", fusion=fusion, **RUN)
        assert json.loads((index / "meta.json").read_text())["dim"] == dim
        image, _ = _shop(world)[5]
        [(_, ranked, _)] = search(index, world["data"] / "images" / image, top=2, **RUN)
        assert ranked[0] == image


def test_corrupt_query_image_names_the_file(world, tmp_path: Path) -> None:
    bad = tmp_path / "queries" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "queries" / "fine.png").write_bytes((world["data"] / "images" / _shop(world)[0][0]).read_bytes())
    with pytest.raises(FashionlabError, match="broken.jpg: cannot decode image"):
        search(world["index"], tmp_path / "queries", **RUN)
    with pytest.raises(FashionlabError, match="not a retrieval index folder"):
        search(tmp_path, bad, **RUN)


@pytest.mark.parametrize("method", ["qe", "k-reciprocal"])
def test_batch_rerank_through_search(world, method: str) -> None:
    ivf = build_index(world["weights"], world["data"] / "items.csv", world["root"] / f"ivf_{method}", kind="ivf", **RUN)
    plain = search(world["index"], world["data"] / "items.csv", top=5, rerank="none", **RUN)
    for index in (world["index"], ivf):  # k-reciprocal reads the vectors back from any index kind
        ranked = search(index, world["data"] / "items.csv", top=5, rerank=method, **RUN)
        assert [q for q, _, _ in ranked] == [q for q, _, _ in plain]
        assert all(len(ids) == 5 and len(set(ids)) == 5 and s == sorted(s, reverse=True) for _, ids, s in ranked)
    assert any(a[1] != b[1] for a, b in zip(ranked, plain))  # the re-ranking changed some ranking
    shop, _ = _shop(world)[2]
    [(_, alone, _)] = search(world["index"], world["data"] / "images" / shop, top=1, rerank=method, **RUN)
    assert alone == [shop]
    category = _shop(world)[0][1]
    limited = search(world["index"], world["data"] / "items.csv", top=10, category=category, rerank=method, **RUN)
    in_category = {i for i, c in _shop(world) if c == category}
    assert all(set(ids) <= in_category for _, ids, _ in limited)
