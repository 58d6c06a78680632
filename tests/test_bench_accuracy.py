"""The accuracy benchmark's split, summary and generated README text (benchmarks/bench), on tiny data."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench.accuracy import summarise
from bench.plain import augment, read_attributes, read_classify, sliced_loss
from bench.render import accuracy_lines
from bench.splits import attributes_split, classify_split, stratified_indices


def test_stratified_indices_are_deterministic_and_stratified():
    strata = ["a"] * 10 + ["b"] * 5 + ["c"]
    train, test = stratified_indices(strata, 0.2, seed=3)
    assert (train, test) == stratified_indices(strata, 0.2, seed=3)
    assert sorted(train + test) == list(range(16))
    assert sum(strata[i] == "a" for i in test) == 2 and sum(strata[i] == "b" for i in test) == 1
    assert 15 in train  # a stratum of one stays in train
    assert stratified_indices(strata, 0.2, seed=4)[1] != test


def _photo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 16, 3), 128, np.uint8)).save(path)


def test_classify_split_links_photos_and_writes_truth(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(10):
            _photo(tmp_path / "data" / cls / f"{cls}{i}.png")
    split = classify_split(tmp_path / "data", tmp_path / "work", seed=0)
    assert (split.n_train, split.n_test) == (16, 4)
    truth = (split.truth).read_text().splitlines()
    assert truth[0] == "image,label" and len(truth) == 5
    for line in truth[1:]:
        key, label = line.split(",")
        assert (split.test / key).is_file() and key.startswith(label + "/")
        assert not (split.train / key).exists()  # a test photo is never a training photo
    train, _, classes, width = read_classify(split.train, split.test)
    assert classes == ["cat", "dog"] and width == 2 and len(train.paths) == 16
    assert classify_split(tmp_path / "data", tmp_path / "work", seed=0).n_test == 4  # rerun over the same folder


def test_attributes_split_stratifies_by_task_and_value(tmp_path):
    lines = [f"Images/t1/{i}.jpg,t1,{'yn' if i % 2 else 'ny'}" for i in range(20)]
    lines += [f"Images/t2/{i}.jpg,t2,nny" for i in range(10)]
    (tmp_path / "data" / "Annotations").mkdir(parents=True)
    (tmp_path / "data" / "Annotations" / "label.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "data" / "Images").mkdir()
    split = attributes_split(tmp_path / "data", tmp_path / "work", seed=1)
    test = split.truth.read_text().splitlines()
    assert (split.n_train, split.n_test) == (24, 6)
    assert sum(",t1,yn" in x for x in test) == 2 and sum(",t1,ny" in x for x in test) == 2
    assert (split.train / "Images").is_symlink()
    _, held, tasks, width = read_attributes(split.train, split.test)
    assert tasks == ["t1", "t2"] and width == 5
    assert set(zip(held.lo.tolist(), held.hi.tolist())) == {(0, 2), (2, 5)}


def test_plain_loss_is_per_task_and_augment_keeps_shape():
    import torch
    from bench.plain import Rows

    rows = Rows([Path("a")] * 2, ["a", "b"], ["t1", "t2"], np.array([1, 3]), np.array([0, 2]), np.array([2, 5]))
    logits = torch.zeros(2, 5)
    logits[1, :2] = 100.0  # another task's columns must not count
    loss = sliced_loss(logits, rows, np.arange(2), 0.0)
    assert loss.item() == pytest.approx((np.log(2) + np.log(3)) / 2, rel=1e-5)
    out = augment(torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8), torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 20, 20)


def _runs():
    runs = []
    for seed, (ours, p112, p160, probe) in enumerate([(0.93, 0.88, 0.91, 0.85), (0.94, 0.87, 0.90, 0.86),
                                                       (0.92, 0.89, 0.89, 0.84)]):
        runs += [{"row": "fashionlab", "seed": seed, "size": None, "value": ours, "seconds": 480, "imgsz": 128,
                  "test_imgsz": 144, "command": "fashionlab train", "predict_command": "fashionlab predict"},
                 {"row": "plain", "seed": seed, "size": 112, "value": p112, "seconds": 480, "epochs": 9, "command": "p112"},
                 {"row": "plain", "seed": seed, "size": 160, "value": p160, "seconds": 480, "epochs": 5, "command": "p160"},
                 {"row": "probe", "seed": seed, "size": None, "value": probe, "seconds": 60, "imgsz": 224, "command": "pr"}]
    return runs


def test_summarise_picks_the_plain_loops_best_mean_size_and_pairs_seeds():
    out = summarise("trashnet", _runs(), [0, 1, 2])
    assert out["fashionlab"]["mean"] == pytest.approx(0.93)
    assert out["fashionlab"]["sd"] == pytest.approx(0.01)
    assert out["plain"]["imgsz"] == 160 and out["plain"]["mean"] == pytest.approx(0.90)  # 112 px: 0.88
    assert out["plain"]["by_size"]["112"]["mean"] == pytest.approx(0.88)
    assert out["delta_plain"]["values"] == [pytest.approx(0.02), pytest.approx(0.04), pytest.approx(0.03)]
    assert out["delta_probe"]["mean"] == pytest.approx(0.08)
    assert out["commands"]["plain"] == ["p160"] and out["commands"]["fashionlab"][1] == "fashionlab predict"


def test_generated_text_states_deltas_and_verdicts_from_the_figures():
    row = {"dataset": "trashnet", "task": "classify", "metric": "accuracy", "protocol": "20 %", "budget_s": 480.0,
           "seeds": [0, 1, 2], "n_train": 1608, "n_test": 402, "target": 0.92, **summarise("trashnet", _runs(), [0, 1, 2])}
    text = "\n".join(accuracy_lines({"rows": [row], "quick": False}))
    assert "0.9300 ± 0.0100" in text and "160 px" in text
    assert "mean ≥ target 0.92: yes" in text and "≥ plain loop + 0.02: yes" in text
    assert "All of issue 16's conditions hold on 1 of 1 datasets (trashnet)" in text
    row["target"] = 0.95
    text = "\n".join(accuracy_lines({"rows": [row], "quick": False}))
    assert "mean ≥ target 0.95: NO" in text and "hold on 0 of 1 datasets" in text


def test_rendered_commands_drop_the_machines_own_folders():
    from bench.render import portable

    ran = ("/root/.pyenv/versions/3.11.7/bin/python /work/main/benchmarks/bench/probe.py --train "
           "/work/exp/bw/accuracy/trashnet/seed0/split/train --test /srv/shared/data/clothing-256/validation "
           "--weights benchmarks/out/suite/memory/best.pt")
    assert portable(ran) == ("python benchmarks/bench/probe.py --train $WORK/accuracy/trashnet/seed0/split/train "
                             "--test ../shared/data/clothing-256/validation --weights benchmarks/out/suite/memory/best.pt")
    assert portable("python benchmarks/run.py --resume --work /tmp/bw") == "python benchmarks/run.py --resume --work $WORK"


def test_rarest_tags_are_averaged_per_row_over_the_seeds_that_hold_them():
    from bench.render import _rarest

    runs = [{"row": "fashionlab", "rarest": {"a": {"train_images": 10, "f2": 1.0}, "b": {"train_images": 30, "f2": 0.5}}},
            {"row": "fashionlab", "rarest": {"a": {"train_images": 12, "f2": 0.8}}},
            {"row": "probe", "rarest": {"a": {"train_images": 10, "f2": 0.7}}}]
    assert _rarest(runs) == "a (11) 0.900 / 0.700; b (30) 0.500 / —"


def test_runs_searched_again_name_both_commits():
    runs = _runs()
    for r in runs:
        r["commit"] = "abc1234"
    runs[0]["search_commit"] = "def5678"
    out = summarise("trashnet", runs, [0, 1, 2])
    assert out["fashionlab"]["commits"] == ["abc1234 (index + search: def5678)", "abc1234"]
