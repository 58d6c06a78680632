"""Bad input: one clear line naming the file/row, never a traceback, never a half-written output."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionlab import api
from fashionlab.data.images import check_images, load_rgb
from fashionlab.errors import FashionlabError
from fashionlab.io import atomic_open

from .conftest import TINY


def test_modes_convert_to_rgb(tmp_path: Path) -> None:
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8), "L").save(gray)
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk)
    rgba = tmp_path / "a.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(rgba)  # fully transparent -> white
    assert load_rgb(gray).shape == (8, 8, 3) and load_rgb(gray)[0, 0, 0] == 100
    assert load_rgb(cmyk).shape == (8, 8, 3) and load_rgb(cmyk)[0, 0, 0] > 200  # red-ish
    assert load_rgb(rgba)[0, 0].tolist() == [255, 255, 255]


def test_corrupt_truncated_missing_images(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(good)
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    with pytest.raises(FashionlabError, match="trunc.jpg: cannot decode image"):
        load_rgb(truncated)
    with pytest.raises(FashionlabError, match="corrupt.jpg: cannot decode image"):
        load_rgb(corrupt)
    with pytest.raises(FashionlabError, match="missing.jpg: image file not found"):
        load_rgb(tmp_path / "missing.jpg")
    paths = [good, truncated, corrupt]
    with pytest.raises(FashionlabError, match="--skip-bad"):
        check_images(paths, skip_bad=False)
    assert check_images(paths, skip_bad=True) == [0]


def test_training_with_corrupt_image_errors_or_skips(class_folders: Path, tmp_path: Path) -> None:
    (class_folders / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(FashionlabError, match="broken.jpg: cannot decode image"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "r1"), epochs=0, **TINY)
    result = api.train("classify", data=str(class_folders), out=str(tmp_path / "r2"), epochs=0, skip_bad=True,
                       **TINY)
    assert result.best.is_file()


def test_empty_class_folder(class_folders: Path, tmp_path: Path) -> None:
    (class_folders / "yellow").mkdir()
    with pytest.raises(FashionlabError, match="yellow: class folder has no images"):
        api.train("classify", data=str(class_folders), out=str(tmp_path / "r"), **TINY)


def test_bad_label_file_is_one_line(attributes_release: Path, tmp_path: Path) -> None:
    label = attributes_release / "Annotations" / "label.csv"
    lines = label.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",nyx"
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(FashionlabError, match="line 4.*'x'"):
        api.train("attributes", data=str(attributes_release), out=str(tmp_path / "r"), **TINY)


def test_cli_prints_one_line_and_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fashionlab.cli", "train", "classify", "--data", str(tmp_path),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no class folders" in lines[0]


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "sub.csv"
    out.write_text("old complete file\n")
    with pytest.raises(RuntimeError):
        with atomic_open(out, "w") as handle:
            handle.write("half")
            raise RuntimeError("crash mid-write")
    assert out.read_text() == "old complete file\n"
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize("task", ["keypoints", "retrieval"])
@pytest.mark.parametrize("option", ["test_imgsz", "mixup", "head_epochs", "label_smoothing", "maybe_weight"])
def test_an_option_a_task_cannot_honour_is_a_one_line_error(task: str, option: str) -> None:
    from fashionlab import api

    if task == "retrieval" and option == "label_smoothing":  # the ID heads are smoothed
        assert api.config(task, label_smoothing=0.2).label_smoothing == 0.2
        return
    with pytest.raises(FashionlabError, match=rf"{option}: not an option of the {task} task \(it is one of "):
        api.config(task, **{option: 1})
    with pytest.raises(FashionlabError, match="unknown option of the styles task; its options: "):
        api.config("styles", tpyo=1)
    assert api.config("classify", test_imgsz=96).test_imgsz == 96
    with pytest.raises(FashionlabError, match=r"label_smoothing: not an option of the styles task"):
        api.config("styles", label_smoothing=0.1)
