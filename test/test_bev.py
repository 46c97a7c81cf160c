"""training/bev.py: the devkit's bird's-eye-view cells, against the devkit's transform in numpy."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import cv2
import numpy as np
import pytest
import torch

from conftest import devkit_bev_labels, level_road_calib, write_calib
from fcn_road_seg.errors import DataError
from fcn_road_seg.training.bev import KittiBev, kitti_road_homography
from fcn_road_seg.training import data
from fcn_road_seg.training.bev import COLOURS, BevMeter, bev_picture
from fcn_road_seg.training.metrics import RoadEvaluator


def test_bev_meter_counts_the_devkit_cells() -> None:
    h, w = 375, 1242
    calib = level_road_calib()
    rng = np.random.default_rng(3)
    labels = rng.choice(np.array([0, 1, 255], np.uint8), (h, w), p=[0.5, 0.3, 0.2])
    prob = torch.from_numpy(rng.random((h, w), dtype=np.float32))
    sample = data.Sample("um_000001", Path("um_000001.png"), Path("um_road_000001.png"))
    with TemporaryDirectory() as folder:
        meter = BevMeter([sample], write_calib(Path(folder) / "um_000001.txt", calib))
        meter.update(sample, prob, labels)
    bev_labels = devkit_bev_labels(labels, calib)
    expected = RoadEvaluator(["um"])
    bev_prob = KittiBev(kitti_road_homography(calib), (h, w)).transform(prob.numpy())
    expected.update(torch.from_numpy(bev_prob), torch.from_numpy(bev_labels), "um")
    fn, fp, pos, neg = meter.evaluator.counts()
    assert (pos, neg) == (
        int((bev_labels == 1).sum()),
        int((bev_labels == 0).sum()),
    ) and pos > 10000
    assert np.array_equal(fn, expected.counts()[0]) and np.array_equal(fp, expected.counts()[1])
    # the BEV weighs frames differently from the camera view: near rows cover fewer cells than far
    # ones
    assert pos / (pos + neg) != pytest.approx(
        float((labels == 1).sum() / (labels != 255).sum()), abs=1e-4
    )


def test_bev_picture_colours_each_kind_of_cell() -> None:
    target = np.array([[1, 1, 0, 0, 255]], np.uint8)
    prob = np.array([[0.5, 0.49, 0.5, 0.1, 0.9]], np.float32)
    picture = bev_picture(prob, target)
    expected = [
        COLOURS["road"],
        COLOURS["missed road"],
        COLOURS["false road"],
        COLOURS["non-road"],
    ]
    assert [tuple(c) for c in picture[0, :4]] == expected
    assert picture[0, 4].tolist() == [0, 0, 0]  # not evaluated


def test_bev_meter_draws_the_first_frames(tmp_path: Path) -> None:
    calib = level_road_calib()
    samples = [data.Sample(f"um_00000{i}", Path("x.png"), Path("y.png")) for i in range(3)]
    meter = BevMeter(samples, write_calib(tmp_path / "calib.txt", calib), examples=2)
    labels = np.ones((375, 1242), np.uint8)
    for sample in samples:
        meter.update(sample, torch.ones(375, 1242), labels)
    assert [stem for stem, _ in meter.pictures] == ["um_000000", "um_000001"]
    sheet = cv2.imread(str(meter.write_pictures(tmp_path / "bev.png")))
    assert sheet.shape[1] == 2 * 400 + 8 and sheet.shape[0] > 28 + 800
    tile = sheet[28 : 28 + 800, :400]
    green = (tile == COLOURS["road"]).all(axis=2)
    assert green.mean() > 0.5  # every seen cell is road, predicted road (lines and marks aside)


def test_every_calibration_is_checked_before_the_first_frame(tmp_path: Path) -> None:
    """One frame's Tr_cam_to_road all zeros: an error naming that file when the meter is made."""
    samples = [data.Sample(f"um_00000{i}", Path("x.png"), Path("y.png")) for i in range(3)]
    for sample in samples:
        write_calib(tmp_path / f"{sample.stem}.txt", level_road_calib())
    bad = level_road_calib()
    bad["Tr_cam_to_road"] = np.zeros(12)
    write_calib(tmp_path / "um_000002.txt", bad)
    with pytest.raises(
        DataError, match=f"{tmp_path / 'um_000002.txt'}: 'Tr_cam_to_road' does not hold a rotation"
    ):
        BevMeter(samples, tmp_path)
