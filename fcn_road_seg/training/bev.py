"""The devkit's bird's-eye-view evaluation, the view the KITTI server ranks by.

Each frame's P(road) and labels go through ``KittiBev`` with the frame's
``calib/<stem>.txt``; the cells are then counted as in the camera view (``metrics.RoadEvaluator``).
The first frames are also drawn (``bev_picture``), as the node's 0.5 mask sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import DataError
from ..geometry import LookupMaps, plane_homography, project
from ..tools.kitti import read_calib

from . import data
from .metrics import RoadEvaluator


@dataclass(frozen=True)
class BevParams:
    """The devkit's bird's-eye view: lateral x and forward z limits (m) and the cell size."""

    x_limits: tuple[float, float] = (-10.0, 10.0)
    z_limits: tuple[float, float] = (6.0, 46.0)
    resolution: float = 0.05

    @property
    def shape(self) -> tuple[int, int]:
        """(rows along z, columns along x): 800 x 400 for the devkit's view."""
        return (
            round((self.z_limits[1] - self.z_limits[0]) / self.resolution),
            round((self.x_limits[1] - self.x_limits[0]) / self.resolution),
        )

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, z) of every cell centre, as in the devkit.

        Row 0 is the far edge, column 0 the left edge.
        """
        res = self.resolution
        x = np.arange(self.x_limits[0] + res / 2, self.x_limits[1], res)
        z = np.arange(self.z_limits[1] - res / 2, self.z_limits[0], -res)
        if (len(z), len(x)) != self.shape:
            raise ValueError(
                f"limits {self.x_limits}, {self.z_limits} are not whole multiples of {res} m"
            )
        return np.meshgrid(x, z)


def kitti_road_homography(
    calib: dict[str, np.ndarray], source: Path | str = "calibration"
) -> np.ndarray:
    """The devkit's Tr33: road plane (x, z, 1) -> image, from P2, R0_rect and Tr_cam_to_road."""
    sizes = {"P2": 12, "R0_rect": 9, "Tr_cam_to_road": 12}
    for key, size in sizes.items():
        if key not in calib or calib[key].size != size:
            found = "missing" if key not in calib else f"{calib[key].size} numbers"
            raise DataError(f"{source}: '{key}' must hold {size} numbers ({found})")
        if not np.isfinite(calib[key]).all():
            raise DataError(f"{source}: '{key}' holds numbers that are not finite")
    p2 = calib["P2"].reshape(3, 4)
    if not (p2[0, 0] > 0 and p2[1, 1] > 0 and p2[2, 2] > 0):
        raise DataError(f"{source}: 'P2' is not a camera (fx, fy or P2[2,2] is not positive)")
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"].reshape(3, 3)
    road_from_cam = np.vstack([calib["Tr_cam_to_road"].reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    for key, rotation in (("R0_rect", r0[:3, :3]), ("Tr_cam_to_road", road_from_cam[:3, :3])):
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3):
            raise DataError(f"{source}: '{key}' does not hold a rotation")
    return plane_homography(p2 @ r0, np.linalg.inv(road_from_cam), axes=(0, 2))


class KittiBev:
    """The devkit's ``transform2BEV`` of one frame.

    Camera-view maps -> the 800 x 400 bird's-eye view. Each cell takes the pixel the devkit takes:
    it treats the projection (u, v) as 1-based, keeps cells with 1 <= u <= W and 1 <= v <= H, and
    reads pixel (floor(v) - 1, floor(u) - 1). Cells it does not keep are 0 in the devkit's images,
    i.e. outside the evaluation area.
    """

    def __init__(
        self, homography: np.ndarray, image_size: tuple[int, int], params: BevParams = BevParams()
    ) -> None:
        x, z = params.cell_centres()
        # the devkit projects float32 cell centres: the same rounding lands on the same pixels
        u, v, _ = project(
            homography,
            x.astype(np.float32).astype(np.float64),
            z.astype(np.float32).astype(np.float64),
        )
        height, width = image_size
        known = (v >= 1) & (u >= 1) & (v <= height) & (u <= width)
        self.maps = LookupMaps(
            np.where(known, np.floor(u) - 1, -1).astype(np.float32),
            np.where(known, np.floor(v) - 1, -1).astype(np.float32),
            known,
            (height, width),
        )

    @classmethod
    def from_file(
        cls, calib_file: Path | str, image_size: tuple[int, int], params: BevParams = BevParams()
    ) -> "KittiBev":
        """The view for a KITTI Road ``calib/<stem>.txt``.

        DataError naming the file when it is incomplete.
        """
        return cls(
            kitti_road_homography(read_calib(Path(calib_file)), calib_file), image_size, params
        )

    def transform(self, image: np.ndarray, outside: float = 0) -> np.ndarray:
        """``image`` in bird's-eye view (nearest pixel, as the devkit).

        Cells out of view get ``outside``.
        """
        return self.maps.sample(image, cv2.INTER_NEAREST, outside)


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
