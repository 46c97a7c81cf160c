"""The devkit's bird's-eye-view evaluation, the view the KITTI server ranks by.

Each frame's P(road) and labels go through ``geometry.KittiBev`` with the frame's
``calib/<stem>.txt``; the cells are then counted as in the camera view (``metrics.RoadEvaluator``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fcn_road_seg.errors import DataError
from fcn_road_seg.geometry import BevParams, KittiBev

from . import data
from .metrics import RoadEvaluator


class BevMeter:
    """The devkit's bird's-eye-view metrics.

    Each frame's P(road) and labels go through its own calibration. ``calib`` is a folder of
    ``<stem>.txt`` files (KITTI's ``training/calib``) or one file used for every frame (an
    approximation for sets without per-frame calibration). Every frame's file is checked to exist
    before the first frame is run.
    """

    def __init__(self, samples: Sequence[data.Sample], calib: str | Path) -> None:
        calib = Path(calib)
        self.files = {
            s.stem: calib if calib.is_file() else calib / f"{s.stem}.txt" for s in samples
        }
        missing = [f for f in self.files.values() if not f.is_file()]
        if missing:
            raise DataError(
                f"--bev needs each frame's calibration: {len(missing)} of {len(samples)} files "
                f"are missing, e.g. {missing[0]} (KITTI's data_road/training/calib; "
                "or pass --calib FILE to use one calibration for every frame)"
            )
        self.source = str(calib)
        self.evaluator = RoadEvaluator(sorted({s.category for s in samples}))

    def update(self, sample: data.Sample, prob: torch.Tensor, target: np.ndarray) -> None:
        """Add one frame: H x W P(road) and labels (255 = not evaluated) in the camera view."""
        view = KittiBev.from_file(self.files[sample.stem], target.shape)
        bev_target = view.transform(target, outside=data.IGNORE_INDEX)
        bev_prob = view.transform(prob.float().numpy())
        self.evaluator.update(
            torch.from_numpy(bev_prob), torch.from_numpy(bev_target), sample.category
        )

    def describe(self) -> str:
        """Where the view comes from, for reports."""
        p = BevParams()
        return (
            f"bird's-eye view (devkit transform2BEV: x {p.x_limits[0]:g}..{p.x_limits[1]:g} m, "
            f"z {p.z_limits[0]:g}..{p.z_limits[1]:g} m, {p.resolution:g} m cells; "
            f"calibration {self.source})"
        )
