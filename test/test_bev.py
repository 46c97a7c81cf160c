"""training/bev.py: the devkit's bird's-eye-view cells, against the devkit's transform in numpy."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pytest
import torch

from conftest import level_road_calib, write_calib
from fcn_road_seg.geometry import KittiBev, kitti_road_homography
from training import data
from training.bev import BevMeter
from training.metrics import RoadEvaluator


def devkit_bev_labels(labels: np.ndarray, calib: dict) -> np.ndarray:
    """The devkit's BEV of a label map, cell by cell in plain numpy.

    255 where the devkit keeps no pixel.
    """
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"].reshape(3, 3)
    tr = np.vstack([calib["Tr_cam_to_road"].reshape(3, 4), [0, 0, 0, 1]])
    tr33 = (calib["P2"].reshape(3, 4) @ r0 @ np.linalg.inv(tr))[:, [0, 2, 3]]
    x = np.arange(-10 + 0.025, 10, 0.05).astype(np.float32)
    z = np.arange(46 - 0.025, 6, -0.05).astype(np.float32)
    xx, zz = np.meshgrid(x, z)
    u, v, w = np.tensordot(tr33, np.stack([xx, zz, np.ones_like(xx)]).astype(float), axes=1)
    u, v = u / w, v / w
    h, wd = labels.shape
    keep = (u >= 1) & (v >= 1) & (u <= wd) & (v <= h)
    out = np.full(xx.shape, 255, np.uint8)
    out[keep] = labels[np.floor(v[keep]).astype(int) - 1, np.floor(u[keep]).astype(int) - 1]
    return out


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
