"""The in-memory photo cache with batch augmentation, and partial fine-tuning on cached feature maps."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from fashionlab.data.memory import BatchAugment, decode_images, normalise, resize_batch
from fashionlab.errors import FashionlabError
from fashionlab.models.partial import (MapAugment, TailClassifier, TailRecipe, cache_maps, centre, fit_tail,
                                      predict_tail, sliced_cross_entropy, split_backbone)


def _photos(tmp_path, n=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_decode_images_resizes_to_uint8_squares(tmp_path):
    paths = _photos(tmp_path)
    out = decode_images(paths, 24)
    assert out.shape == (3, 3, 24, 24) and out.dtype == torch.uint8
    assert torch.equal(decode_images(paths, 24, threads=2), out)
    # a 40x30 photo decoded at its own height keeps its pixels when no resizing is involved
    same = decode_images([paths[0]], 30)
    assert same.shape == (1, 3, 30, 30)


def test_decode_images_names_a_bad_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(FashionlabError, match="broken.jpg"):
        decode_images([bad], 16)


def test_batch_augment_identity_and_flip_are_exact():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    keep = BatchAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0)
    assert torch.allclose(keep(images, 16), images.float(), atol=1e-3)
    mirror = BatchAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0)
    assert torch.allclose(mirror(images, 16), images.float().flip(-1), atol=1e-3)


def test_batch_augment_crops_resizes_and_jitters_within_range():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = BatchAugment(scale=(0.3, 0.6), jitter=0.4)(images, 20, gen)
    assert out.shape == (8, 3, 20, 20)
    assert out.min() >= 0 and out.max() <= 255
    # a crop of a constant image stays constant: the crop never samples outside the photo
    flat = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.allclose(BatchAugment(scale=(0.1, 0.2))(flat, 24, gen), torch.full((2, 3, 24, 24), 77.0))


def test_normalise_and_resize():
    images = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    x = normalise(images, (0.5,) * 3, (0.5,) * 3)
    assert torch.allclose(x, torch.ones_like(x)) and x.is_contiguous(memory_format=torch.channels_last)
    assert resize_batch(images, 4).shape == (2, 3, 4, 4)


@pytest.fixture(scope="module")
def lite0():
    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).eval()


def test_split_backbone_reproduces_the_whole_network(lite0):
    split = split_backbone(lite0, 5)
    assert (split.channels, split.reduction, split.num_features) == (112, 16, 1280)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(split.tail(split.stem(x)), lite0(x), atol=1e-5)


def test_split_backbone_refuses_other_models_and_bad_cuts(lite0):
    with pytest.raises(FashionlabError, match="EfficientNet-style"):
        split_backbone(torch.nn.Linear(2, 2), 3)
    with pytest.raises(FashionlabError, match="stages"):
        split_backbone(lite0, 7)


def test_cache_maps_torch_and_onnx_agree_with_flip_views(lite0):
    pytest.importorskip("onnxruntime")
    split = split_backbone(lite0, 5)
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    plain = cache_maps(split.stem, images, (0.5,) * 3, (0.5,) * 3, 32)
    both = cache_maps(split.stem, images, (0.5,) * 3, (0.5,) * 3, 32, flip=True, runtime="onnx")
    assert plain.shape == (3, 112, 2, 2) and plain.dtype == torch.float16
    assert both.shape == (3, 2, 112, 2, 2)
    assert torch.allclose(both[:, 0].float(), plain.float(), atol=2e-2, rtol=1e-2)
    with pytest.raises(FashionlabError, match="runtime"):
        cache_maps(split.stem, images, (0.5,) * 3, (0.5,) * 3, 32, runtime="tf")


def test_map_augment_crops_and_picks_views():
    gen = torch.Generator().manual_seed(0)
    maps = torch.zeros(6, 2, 4, 5, 5, dtype=torch.float16)
    maps[:, 1] = 1.0  # the mirrored view is all ones
    out = MapAugment(crop=3, hflip=1.0)(maps, gen)
    assert out.shape == (6, 4, 3, 3) and out.dtype == torch.float32 and bool((out == 1).all())
    assert bool((MapAugment(crop=None, hflip=0.0)(maps, gen) == 0).all())
    assert centre(maps, 3).shape == (6, 4, 3, 3)


def test_tail_classifier_trains_on_cached_maps(lite0):
    torch.manual_seed(0)
    split = split_backbone(lite0, 5)
    net = TailClassifier(split.tail, split.num_features, 3)
    maps = torch.randn(4, 112, 4, 4)
    target = torch.tensor([0, 1, 2, 0])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(net(maps), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert net(maps).shape == (4, 3) and losses[-1] < losses[0]


def test_sliced_cross_entropy_ignores_other_tasks_columns():
    logits = torch.zeros(2, 5)
    logits[0, 2:] = 50.0  # row 0 belongs to the task of columns 0-1: these must not count
    target, lo, hi = torch.tensor([1, 4]), torch.tensor([0, 2]), torch.tensor([2, 5])
    loss = sliced_cross_entropy(logits, target, lo, hi)
    assert loss.item() == pytest.approx((np.log(2) + np.log(3)) / 2, rel=1e-5)


def test_tail_recipe_warms_up_then_decays_to_zero():
    recipe = TailRecipe(steps=100, lr=1e-3, warmup=0.1)
    assert recipe.lr_at(0) == pytest.approx(1e-4) and recipe.lr_at(9) == pytest.approx(1e-3)
    assert recipe.lr_at(55) < 1e-3 and recipe.lr_at(99) < 1e-5


def test_fit_tail_learns_a_separable_two_task_problem(lite0):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    split = split_backbone(lite0, 5)
    n = 48
    lo = np.where(np.arange(n) % 2 == 0, 0, 2)
    hi = np.where(np.arange(n) % 2 == 0, 2, 5)  # task 0 (columns 0-1) for even rows, task 1 (2-4) for odd
    cls = np.random.default_rng(0).integers(0, 2, n)
    target = lo + cls
    maps = torch.randn(n, 2, 112, 4, 4) * 0.1
    maps[:, :, :8] += torch.as_tensor(cls * 2.0 - 1.0, dtype=torch.float32).view(n, 1, 1, 1, 1)
    net = TailClassifier(split.tail, split.num_features, 5, drop=0.0)
    model = fit_tail(net, maps.half(), target, lo, hi, TailRecipe(steps=60, batch=16, lr=3e-3, ema=0.0), gen)
    probs = predict_tail(model, maps.half(), lo, hi)
    assert [len(p) for p in probs[:2]] == [2, 3] and all(abs(p.sum() - 1) < 1e-5 for p in probs)
    accuracy = np.mean([int(np.argmax(p)) == c for p, c in zip(probs, cls)])
    assert accuracy >= 0.9
    with pytest.raises(ValueError, match="length"):
        fit_tail(net, maps, target[:-1], lo, hi, TailRecipe(steps=1))


def test_predict_tail_averages_views_and_the_ema_copy_is_returned(lite0):
    split = split_backbone(lite0, 5)
    net = TailClassifier(split.tail, split.num_features, 3).eval()
    maps = torch.randn(4, 112, 4, 4)
    one = predict_tail(net, maps, [0] * 4, [3] * 4)
    two = predict_tail(net, torch.stack([maps, maps], 1), [0] * 4, [3] * 4)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(one, two))
    ema_model = fit_tail(net, maps, [0, 1, 2, 0], [0] * 4, [3] * 4, TailRecipe(steps=2, batch=4, ema=0.9))
    assert ema_model is not net and not ema_model.training
