"""The devkit's bird's-eye-view evaluation, the view the KITTI server ranks by.

Each frame's P(road) and labels go through ``geometry.KittiBev`` with the frame's
``calib/<stem>.txt``; the cells are then counted as in the camera view (``metrics.RoadEvaluator``).
The first frames are also drawn (``bev_picture``), as the node's 0.5 mask sees them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from fcn_road_seg.atomic import atomic_path
from fcn_road_seg.errors import DataError
from fcn_road_seg.geometry import BevParams, KittiBev, kitti_road_homography
from fcn_road_seg.kitti import read_calib

from . import data
from .metrics import RoadEvaluator


EXAMPLES = 4
#: BGR colour of each kind of evaluated cell in ``bev_picture``
COLOURS = {
    "road": (60, 190, 60),
    "false road": (40, 40, 230),
    "missed road": (230, 140, 30),
    "non-road": (80, 80, 80),
}


def bev_picture(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """One frame in bird's-eye view, BGR: cells coloured by ``COLOURS``, not evaluated black.

    Far is up; a line and its distance mark every 10 m.
    """
    valid, road, pred = target != data.IGNORE_INDEX, target == 1, prob >= threshold
    out = np.zeros((*target.shape, 3), np.uint8)
    kinds = {"road": road & pred, "false road": ~road & pred, "missed road": road & ~pred}
    kinds["non-road"] = ~road & ~pred
    for name, where in kinds.items():
        out[valid & where] = COLOURS[name]
    p = BevParams()
    for z in range(10, int(p.z_limits[1]), 10):
        row = round((p.z_limits[1] - z) / p.resolution)
        cv2.line(out, (0, row), (out.shape[1] - 1, row), (200, 200, 200), 1)
        cv2.putText(out, f"{z} m", (4, row - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230))
    return out


def picture_sheet(pictures: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Pictures side by side, each titled, with the colour legend under them."""
    tiles = []
    for title, picture in pictures:
        bar = np.full((28, picture.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        gap = np.full((28 + picture.shape[0], 8, 3), 255, np.uint8)
        tiles += [np.vstack([bar, picture]), gap]
    sheet = np.hstack(tiles[:-1])
    rows: list[np.ndarray] = []
    x = sheet.shape[1]
    for name, colour in COLOURS.items():
        (width, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        if x + 22 + width > sheet.shape[1]:  # a new legend row
            rows.append(np.full((26, sheet.shape[1], 3), 255, np.uint8))
            x = 6
        cv2.rectangle(rows[-1], (x, 5), (x + 16, 21), colour, -1)
        cv2.putText(
            rows[-1], name, (x + 22, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
        x += 22 + width + 16
    return np.vstack([sheet, *rows])


class BevMeter:
    """The devkit's bird's-eye-view metrics.

    Each frame's P(road) and labels go through its own calibration. ``calib`` is a folder of
    ``<stem>.txt`` files (KITTI's ``training/calib``) or one file used for every frame (an
    approximation for sets without per-frame calibration). Every frame's file is checked to exist
    before the first frame is run.
    """

    def __init__(
        self, samples: Sequence[data.Sample], calib: str | Path, examples: int = EXAMPLES
    ) -> None:
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
        # every file is read and checked before the first frame runs (DataError naming it)
        self.homographies = {
            f: kitti_road_homography(read_calib(f), f) for f in sorted(set(self.files.values()))
        }
        self.source = str(calib)
        self.evaluator = RoadEvaluator(sorted({s.category for s in samples}))
        self.examples = examples
        self.pictures: list[tuple[str, np.ndarray]] = []
        self.shared = calib.is_file()
        self._views: dict[tuple[Path, tuple[int, int]], KittiBev] = {}

    def update(self, sample: data.Sample, prob: torch.Tensor, target: np.ndarray) -> None:
        """Add one frame: H x W P(road) and labels (255 = not evaluated) in the camera view."""
        key = (self.files[sample.stem], target.shape)
        view = self._views.get(key) or KittiBev(self.homographies[key[0]], target.shape)
        if self.shared:  # one file for every frame: one view per image size
            self._views[key] = view
        bev_target = view.transform(target, outside=data.IGNORE_INDEX)
        bev_prob = view.transform(prob.float().numpy())
        self.evaluator.update(
            torch.from_numpy(bev_prob), torch.from_numpy(bev_target), sample.category
        )
        if len(self.pictures) < self.examples:
            self.pictures.append((sample.stem, bev_picture(bev_prob, bev_target)))

    def write_pictures(self, path: Path) -> Path | None:
        """The first frames' pictures as one PNG at ``path`` (None when there are none)."""
        if not self.pictures:
            return None
        ok, png = cv2.imencode(".png", picture_sheet(self.pictures))
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {path}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(png.tobytes())
        return path

    def describe(self) -> str:
        """Where the view comes from, for reports."""
        p = BevParams()
        return (
            f"bird's-eye view (devkit transform2BEV: x {p.x_limits[0]:g}..{p.x_limits[1]:g} m, "
            f"z {p.z_limits[0]:g}..{p.z_limits[1]:g} m, {p.resolution:g} m cells; "
            f"calibration {self.source})"
        )
