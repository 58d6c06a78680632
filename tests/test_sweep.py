"""``fashionlab sweep``: config validation, the epoch listener, and a real sweep on a local CPU Ray."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fashionlab import api
from fashionlab.cli import app
from fashionlab.engine.progress import epoch_listener
from fashionlab.errors import FashionlabError
from fashionlab.sweep_config import expand, read_sweep

from .conftest import TINY


def _yaml(tmp_path: Path, data: Path, sweep: dict, **base) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"task": "classify", "data": str(data), **TINY, "epochs": 2, **base,
                                    "sweep": sweep}))
    return path


@pytest.mark.parametrize("sweep, message", [
    ({"grid": {"lr": [0.001]}, "foo": 1}, "sweep.foo: unknown option"),
    ({"grid": {"lrr": [0.001]}}, "'lrr' is not a classify run option"),
    ({"grid": {"model": ["a"]}}, "use sweep.backbones"),
    ({"grid": {"lr": [-1.0]}}, "lr: Input should be greater than 0"),
    ({"early_stop": {"scheduler": "hyperband"}}, "sweep.early_stop.scheduler"),
    ({"search": {"num_samples": 2, "space": {"lr": {"normal": [0, 1]}}}}, "expected one of"),
])
def test_sweep_config_errors_are_one_line(class_folders: Path, tmp_path: Path, sweep: dict, message: str) -> None:
    path = _yaml(tmp_path, class_folders, sweep)
    with pytest.raises(FashionlabError, match=message) as err:
        base, spec = read_sweep(path, {})
        expand(path, base, spec, tmp_path / "out")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_sweep_expands_grid_search_and_folds(class_folders: Path, tmp_path: Path) -> None:
    path = _yaml(tmp_path, class_folders, {"folds": 3, "backbones": ["test_efficientnet", "test_resnet"],
                                           "grid": {"lr": [0.001, 0.003]},
                                           "search": {"num_samples": 2, "space": {"mixup": {"uniform": [0, 0.4]}}}})
    base, spec = read_sweep(path, {"sweep.folds": 2, "epochs": 1})
    combos = expand(path, base, spec, tmp_path / "out")
    assert len(combos) == 2 * 2 * 2 and len({c.name for c in combos}) == 8
    assert all(c.cfg.folds == 2 and c.cfg.epochs == 1 and 0 <= c.cfg.mixup <= 0.4 for c in combos)
    # the random samples are shared by the folds and identical across backbones
    assert {c.hparams["mixup"] for c in combos[:4]} == {c.hparams["mixup"] for c in combos[4:]}


def test_epoch_listener_stops_training_and_run_finishes(class_folders: Path, tmp_path: Path) -> None:
    seen: list[int] = []

    def listener(epoch: int, metric: float, train_loss: float) -> bool:
        seen.append(epoch)
        return epoch >= 1

    with epoch_listener(listener):
        result = api.train("classify", data=str(class_folders), out=str(tmp_path / "run"), epochs=4, **TINY)
    assert seen == [1]
    assert (result.run / "metrics.json").is_file() and (result.run / "predictions" / "val.csv").is_file()


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_sweep_on_local_ray_gathers_oof_for_ensemble(class_folders: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    path = _yaml(tmp_path, class_folders, {"folds": 2, "grid": {"lr": [0.001, 0.003]}, "resources": {"cpu": 1},
                                           "num_cpus": 2})
    out = tmp_path / "sweep"
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out / "results.csv")
    assert len(rows) == 4 and {r["fold"] for r in rows} == {"0", "1"}
    assert all(r["status"] == "done" for r in rows)
    assert all(int(r["epochs"]) <= 2 for r in rows)
    images = sorted(str(p.relative_to(class_folders)) for p in class_folders.rglob("*.jpg"))
    complete = [s for s in _rows(out / "summary.csv") if s["status"] == "complete"]
    assert len(complete) == 2
    oofs = []
    for combo in complete:
        run = Path(combo["run"])
        oof = _rows(run / "oof.csv")
        names = sorted(r["image"] for r in oof)
        assert len(names) == len(images) == len(set(names))  # every training image exactly once
        assert json.loads((run / "metrics.json").read_text())["oof_images"] == len(images)
        oofs.append(run / "oof.csv")
    md = (out / "results.md").read_text()
    assert "## Trials" in md and "oof_accuracy" in md
    ens = runner.invoke(app, ["ensemble", "classify", "--pred", str(oofs[0]), "--pred", str(oofs[1]),
                              "--truth", str(Path(complete[0]["run"]) / "oof_truth.csv"), "--corr-threshold", "1.0",
                              "--out", str(tmp_path / "ens.csv"), "--json"])
    assert ens.exit_code == 0, ens.output
    # the two combinations' OOF files averaged by hand give the ensemble file and its accuracy
    frames = [pd.read_csv(p).set_index("image").sort_index() for p in oofs]
    by_hand = (frames[0] + frames[1]) / 2
    written = pd.read_csv(tmp_path / "ens.csv").set_index("image").sort_index()
    np.testing.assert_allclose(written[by_hand.columns].to_numpy(), by_hand.to_numpy(), atol=1e-5)
    truth = pd.read_csv(Path(complete[0]["run"]) / "oof_truth.csv").set_index("image").sort_index()["label"]
    accuracy = float((by_hand.idxmax(1) == truth).mean())
    assert json.loads(ens.output)["scores"]["mean"] == pytest.approx(accuracy, abs=1e-6)
    # a re-run reuses every finished or early-stopped trial and starts no Ray at all
    again = runner.invoke(app, ["sweep", str(path), "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert _rows(out / "results.csv") == rows
