"""training/convert_cityscapes.py: Cityscapes gtFine -> KITTI Road layout, read back by data.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg.training import data
from fcn_road_seg.training.convert_cityscapes import main


def cityscapes(root: Path) -> np.ndarray:
    """Two cities' frames (train: aachen, val: bonn) and the labelIds they share."""
    ids = np.array([[7, 7, 8, 26], [0, 1, 7, 11], [3, 7, 7, 24]], np.uint8)  # 3 x 4
    for split, city in (("train", "aachen"), ("val", "bonn")):
        image = root / "leftImg8bit" / split / city / f"{city}_000000_000019_leftImg8bit.png"
        labels = root / "gtFine" / split / city / f"{city}_000000_000019_gtFine_labelIds.png"
        for path, pixels in ((image, np.full((3, 4, 3), 90, np.uint8)), (labels, ids)):
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), pixels)
    return ids


def test_road_rule_and_layout(tmp_path: Path) -> None:
    ids = cityscapes(tmp_path / "cs")
    assert main([str(tmp_path / "cs"), str(tmp_path / "out"), "--no-progress"]) == 0
    train, val = data.split(tmp_path / "out", "train"), data.split(tmp_path / "out", "val")
    assert [s.stem for s in train] == ["aachen_000000000019"] and train[0].category == "aachen"
    assert [s.stem for s in val] == ["bonn_000000000019"]
    _, labels = data.load_sample(train[0])
    # road (7) -> 1; void ids 0, 1, 3 -> ignored (255); everything else -> non-road (0)
    want = np.array([[1, 1, 0, 0], [255, 255, 1, 0], [255, 1, 1, 0]], np.uint8)
    np.testing.assert_array_equal(labels, want)
    assert ids.shape == labels.shape


def test_missing_labels_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cityscapes(tmp_path / "cs")
    missing = next((tmp_path / "cs" / "gtFine" / "val").rglob("*.png"))
    missing.unlink()
    assert main([str(tmp_path / "cs"), str(tmp_path / "out"), "--no-progress"]) == 1
    assert "has no gtFine labelIds" in capsys.readouterr().err


def test_bad_scale_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cityscapes(tmp_path / "cs")
    assert main([str(tmp_path / "cs"), str(tmp_path / "o"), "--scale", "0", "--no-progress"]) == 1
    assert "--scale" in capsys.readouterr().err


def test_a_failed_run_leaves_an_existing_dataset_and_no_new_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    existing = tmp_path / "ds"
    existing.mkdir()
    (existing / "train.txt").write_text("um_000000\n")
    assert main([str(tmp_path / "none"), str(existing), "--no-progress"]) == 1
    assert f"output {existing} exists and is not an empty folder" in capsys.readouterr().err
    assert (existing / "train.txt").read_text() == "um_000000\n"
    assert main([str(tmp_path / "none"), str(tmp_path / "new"), "--no-progress"]) == 1
    assert "no Cityscapes frames under" in capsys.readouterr().err
    cityscapes(tmp_path / "cs")
    broken = next((tmp_path / "cs" / "gtFine" / "val").rglob("*.png"))
    broken.write_bytes(b"not a png")  # the second split fails after the first was written
    assert main([str(tmp_path / "cs"), str(tmp_path / "new"), "--no-progress"]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cs", "ds"]


def test_a_scale_that_leaves_no_pixel_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cityscapes(tmp_path / "cs")
    assert (
        main([str(tmp_path / "cs"), str(tmp_path / "o"), "--scale", "0.1", "--no-progress"]) == 1
    )
    err = capsys.readouterr().err
    assert "--scale 0.1 makes" in err and "aachen_000000_000019_leftImg8bit.png 0x0 pixels" in err
    assert not (tmp_path / "o").exists()


def test_one_split_alone_and_an_output_linked_to_an_empty_folder(tmp_path: Path) -> None:
    cityscapes(tmp_path / "cs")
    for tree in ("leftImg8bit", "gtFine"):
        shutil.rmtree(tmp_path / "cs" / tree / "train")  # only val was downloaded
    (tmp_path / "disk").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "disk")
    assert main([str(tmp_path / "cs"), str(tmp_path / "link"), "--no-progress"]) == 0
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "disk" / "train.txt").read_text() == ""
    assert (tmp_path / "disk" / "val.txt").read_text() == "bonn_000000000019\n"
    assert [s.stem for s in data.split(tmp_path / "link", "val")] == ["bonn_000000000019"]
