"""Retrieval model pieces: ring/stripe pooling by hand, embedding size and norm, flip TTA, loss, sampler."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from fashionlab.errors import FashionlabError
from fashionlab.tasks.retrieval.config import RetrievalConfig
from fashionlab.tasks.retrieval.data import ItemTable, PKSampler, split_by_item, val_pairs, with_distractors
from fashionlab.tasks.retrieval.embed import LoadedRetrieval, embed_paths, rank_exact
from fashionlab.tasks.retrieval.features import create_feature_map
from fashionlab.tasks.retrieval.loss import batch_hard_triplet
from fashionlab.tasks.retrieval.model import build_net, ring_masks, ring_pool, stripe_pool

X = torch.arange(16.0).view(1, 1, 4, 4)  # rows 0..3 = [0 1 2 3], [4 5 6 7], [8 9 10 11], [12 13 14 15]
SPEC = {"model": "test_efficientnet", "imgsz": 64, "embed_dim": 16, "stripes": [2, 3], "rings": 2,
        "output_stride": 16, "categories": []}


def test_ring_pool_by_hand() -> None:
    masks = ring_masks(4, 4, 2)
    assert masks[0].int().tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    pooled = ring_pool(X, 2)[0, 0]
    # centre {5, 6, 9, 10}: mean 7.5 + max 10; outer ring: 12 cells summing to 90 -> mean 7.5 + max 15
    assert pooled.tolist() == pytest.approx([17.5, 22.5])


@pytest.mark.parametrize("h,w,rings", [(4, 4, 2), (8, 8, 2), (8, 8, 4), (5, 7, 2), (3, 3, 2), (8, 4, 3)])
def test_rings_partition_the_map(h: int, w: int, rings: int) -> None:
    masks = ring_masks(h, w, rings)
    assert masks.shape == (rings, h, w)
    assert (masks.sum(0) == 1).all()  # every cell in exactly one ring
    assert all(m.any() for m in masks)  # no empty ring
    if h == w == 8 and rings == 4:  # rings of width one cell, centre first
        assert [int(m.sum()) for m in masks] == [4, 12, 20, 28]


def test_stripes_by_hand_and_shapes() -> None:
    top, bottom = stripe_pool(X, 2, "horizontal")[0, 0].tolist()
    assert top == pytest.approx(3.5 + 7) and bottom == pytest.approx(11.5 + 15)
    left, right = stripe_pool(X, 2, "vertical")[0, 0].tolist()
    assert left == pytest.approx(6.5 + 13) and right == pytest.approx(8.5 + 15)
    x = torch.randn(2, 5, 8, 6)
    assert stripe_pool(x, 3, "horizontal").shape == (2, 5, 3)
    assert stripe_pool(x, 3, "vertical").shape == (2, 5, 3)


@pytest.fixture(scope="module")
def feature_map():
    return create_feature_map("test_efficientnet", "none", 16)


@pytest.mark.parametrize("branches,parts", [(["global"], 1), (["global", "horizontal"], 6),
                                            (["global", "horizontal", "vertical"], 11),
                                            (["global", "horizontal", "vertical", "ring"], 13)])
def test_branch_switches_change_embedding_size(feature_map, branches: list[str], parts: int) -> None:
    net = build_net(feature_map, {**SPEC, "branches": branches}, n_ids=5).eval()
    with torch.no_grad():
        emb = net.embed(torch.randn(3, 3, 64, 64))
    assert net.dim == parts * SPEC["embed_dim"] and emb.shape == (3, net.dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_ring_pooling_adds_no_parameters(feature_map) -> None:
    base = build_net(feature_map, {**SPEC, "branches": ["global"]})
    ring = build_net(feature_map, {**SPEC, "branches": ["global", "ring"]})
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    per_part = count(base) - sum(p.numel() for p in base.backbone.parameters())  # one 1x1 conv + BN
    assert count(ring) - count(base) == SPEC["rings"] * per_part


def test_flip_tta_averages_image_and_mirror(feature_map, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    net = build_net(feature_map, {**SPEC, "branches": ["global", "vertical"]}).eval()
    model = LoadedRetrieval(net, {**SPEC, "dim": net.dim, "mean": (0.5,) * 3, "std": (0.5,) * 3}, Path(""), "")
    plain = embed_paths(model, [tmp_path / "a.png"], "none", workers=0)
    flip = embed_paths(model, [tmp_path / "a.png"], "flip", workers=0)
    x = torch.from_numpy((arr.astype(np.float32) / 255 - 0.5) / 0.5).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = F.normalize(net.embed(x) + net.embed(x.flip(-1)), dim=1).numpy()
        assert np.allclose(plain, net.embed(x).numpy(), atol=1e-5)
    assert np.allclose(flip, expected, atol=1e-5)
    assert np.linalg.norm(flip) == pytest.approx(1.0, abs=1e-5)


def test_batch_hard_triplet_by_hand() -> None:
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: pos 1.0, neg 3.0 -> 0; anchor 1: pos 1.0, neg sqrt(10) -> 0; anchor 2: pos .5, neg 3 -> 0
    assert float(batch_hard_triplet(emb, labels, 0.3)) == pytest.approx(0.0)
    # margin 2.8: anchor 0: 2.8 + 1 - 3 = 0.8; anchor 1: 2.8 + 1 - sqrt(10); anchor 2: 2.8 + .5 - 3 = 0.3;
    # anchor 3: hardest negative is (0, 0) at 3.5 -> 2.8 + .5 - 3.5 < 0 -> 0
    expected = (0.8 + (3.8 - 10 ** 0.5) + 0.3 + 0.0) / 4
    assert float(batch_hard_triplet(emb, labels, 2.8)) == pytest.approx(expected, abs=1e-5)


def test_rank_exact_orders_by_score() -> None:
    g = np.eye(4, dtype=np.float32)
    q = np.array([[0.1, 0.9, 0.3, 0.0]], dtype=np.float32)
    idx, scores = rank_exact(q, g, top=3)
    assert idx.tolist() == [[1, 2, 0]] and scores[0].tolist() == pytest.approx([0.9, 0.3, 0.1])


def _table(n_items: int = 10) -> ItemTable:
    ids, items, domains = [], [], []
    for i in range(n_items):
        for d in ("shop", "shop", "consumer"):
            ids.append(f"{d}/{i}_{len(ids)}.jpg")
            items.append(f"item{i}")
            domains.append(d)
    return ItemTable(ids, [Path(p) for p in ids], items, domains, [""] * len(ids))


def test_split_by_item_is_deterministic_and_disjoint() -> None:
    table = _table()
    train, val = split_by_item(table, 0.3, seed=1)
    again_train, _ = split_by_item(table, 0.3, seed=1)
    assert train.ids == again_train.ids
    assert not set(train.items) & set(val.items) and len(set(val.items)) == 3
    queries, gallery, matches = val_pairs(val)
    assert len(queries) == 3 and len(gallery) == 6 and all(len(m) == 2 for m in matches.values())


def test_pk_sampler_batches() -> None:
    labels = [i // 3 for i in range(30)]  # 10 items x 3 images
    batches = list(PKSampler(labels, p=4, k=4, seed=0))
    assert len(batches) == 3 and [len(b) for b in batches] == [16, 16, 8]
    for batch in batches:
        items = [labels[i] for i in batch]
        assert all(items.count(x) == 4 for x in set(items))


def test_validation_searches_every_shop_photo() -> None:
    """Held-out items' consumer photos query a gallery that also holds the training items' shop photos."""
    table = _table()
    train, val = split_by_item(table, 0.3, seed=1)
    queries, gallery, matches = val_pairs(with_distractors(val, train))
    searched = with_distractors(val, train)
    assert len(gallery) == sum(d == "shop" for d in table.domains) > 6
    assert {searched.items[i] for i in queries} == set(val.items)  # training items never query
    assert all(len(m) == 2 for m in matches.values())


def test_pk_epoch_covers_the_images_and_batches_hold_the_shop_photo() -> None:
    labels = [i // 3 for i in range(30)]  # 10 items x 3 images; the first image of each item is its shop photo
    anchors = {item: [3 * item] for item in range(10)}
    one_pass = PKSampler(labels, p=4, k=4, seed=0)
    assert len(one_pass) == 3
    sampler = PKSampler(labels, p=4, k=4, seed=0, epoch_images=100, anchors=anchors)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 9 and sum(len(b) for b in batches) >= 100
    for batch in batches:
        for item in {labels[i] for i in batch}:
            members = [i for i in batch if labels[i] == item]
            assert len(members) == 4 and members.count(3 * item) >= 1
    ranks = [list(PKSampler(labels, p=4, k=4, seed=0, rank=r, world=2, epoch_images=100)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # 9 batches dealt to 2 ranks: 4 each, the odd one dropped


def test_raw_weight_mixes_the_pooled_map_into_the_cosine() -> None:
    """cosine(embedding) = (1 - w) cosine(parts) + w cosine(average-pooled map); w = 0 is the parts alone."""
    from fashionlab.tasks.retrieval.model import RetrievalNet

    torch.manual_seed(0)
    feature_map = create_feature_map("test_efficientnet", "none", 16, head_conv=True)
    images = torch.rand(2, 3, 64, 64)
    nets = {w: RetrievalNet(feature_map.model, feature_map.channels, ["global", "vertical"], 8, [2], 2,
                            raw_weight=w).eval() for w in (0.0, 0.3, 1.0)}
    for net in nets.values():
        net.load_state_dict(nets[0.0].state_dict())
    with torch.no_grad():
        parts, mean, _ = nets[0.0]._run(images)
        cos_parts = torch.nn.functional.cosine_similarity(parts.flatten(1)[0], parts.flatten(1)[1], dim=0)
        cos_raw = torch.nn.functional.cosine_similarity(mean[0], mean[1], dim=0)
        for w, net in nets.items():
            emb = net.embed(images)
            assert emb.shape[1] == net.dim and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
            assert float(emb[0] @ emb[1]) == pytest.approx(float((1 - w) * cos_parts + w * cos_raw), abs=1e-5)
    assert nets[0.0].dim == 3 * 8 and nets[0.3].dim == 3 * 8 + feature_map.channels


def test_head_conv_keeps_the_backbone_head() -> None:
    import timm

    from fashionlab.tasks.retrieval.features import StageWithHead

    plain, with_head = (create_feature_map("test_efficientnet", "none", 16, head_conv=h) for h in (False, True))
    assert isinstance(with_head.model, StageWithHead) and not isinstance(plain.model, StageWithHead)
    assert with_head.channels == timm.create_model("test_efficientnet", num_classes=0).num_features
    assert with_head.model(torch.rand(1, 3, 64, 64))[0].shape[1] == with_head.channels
    assert create_feature_map("resnet18", "none", 32, head_conv=True).channels == 512  # no head conv: last stage


def test_config_rejects_unknown_branch() -> None:
    with pytest.raises(ValueError, match="branch 'rings'"):
        RetrievalConfig(branches=["global", "rings"])
    assert RetrievalConfig(branches=["ring", "global"]).branches == ["global", "ring"]
    with pytest.raises(FashionlabError):
        PKSampler([0, 0, 0], p=2, k=2)
