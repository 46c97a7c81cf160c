"""The drivable-area grid: P(road) in the camera image -> a metric nav_msgs/OccupancyGrid. No ROS.

The grid lies on the ground, in a frame whose ground is z = 0 (x forward, y left):
``base_footprint`` with a tf2 pose, or the ground under the camera with a height, pitch and roll.
One homography maps its cells to image pixels; the lookup maps are rebuilt only when the camera
model or the pose changes, and each frame costs one ``cv2.remap``. Values follow nav_msgs: road 0
(free), non-road 100 (occupied; or round(100 (1 - P)) when ``occupancy`` is ``scaled``), not seen
-1 (unknown).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from . import geometry
from .bounds import CAMERA_ANGLE, CAMERA_HEIGHT, GRID_EXTENT, GRID_RESOLUTION

OCCUPANCY_MODES = ("binary", "scaled")
UNKNOWN = -1
TARGET_FRAME = "base_footprint"
#: camera height (m), pitch and roll (rad) without tf: KITTI's camera 2, 1.65 m high and level
MOUNT = (1.65, 0.0, 0.0)
#: the most cells (grid) or pixels (image) along one side that cv2.remap takes (< SHRT_MAX)
MAX_SIDE = 32766


@dataclass(frozen=True)
class GridSpec:
    """Extent (m, in the grid frame: x forward, y left) and cell size of the grid."""

    resolution: float = 0.05
    x_range: tuple[float, float] = (0.0, 40.0)
    y_range: tuple[float, float] = (-10.0, 10.0)

    def __post_init__(self) -> None:
        numbers = (self.resolution, *self.x_range, *self.y_range)
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(
                f"grid resolution and ranges must be finite numbers, got {self.resolution}, "
                f"{list(self.x_range)} and {list(self.y_range)}"
            )
        if not self.resolution > 0:
            raise ValueError(f"grid resolution must be > 0 m, got {self.resolution}")
        for name, (low, high) in (("x", self.x_range), ("y", self.y_range)):
            if not high > low:
                raise ValueError(
                    f"grid {name} range must be [min, max] with max > min, got [{low}, {high}]"
                )
        cells = [(r[1] - r[0]) / self.resolution for r in (self.y_range, self.x_range)]
        if not all(math.isfinite(c) for c in cells) or cells[0] * cells[1] > 4096 * 4096:
            raise ValueError(
                f"a grid of {cells[1]:.3g}x{cells[0]:.3g} cells is too large; use coarser cells"
            )
        if max(self.shape) > MAX_SIDE:
            raise ValueError(
                f"a grid of {self.shape[1]}x{self.shape[0]} cells is too long: each side may have "
                f"at most {MAX_SIDE} cells; use coarser cells"
            )
        if min(self.shape) < 1:
            raise ValueError(
                f"grid resolution {self.resolution} m is coarser than the grid "
                f"({self.x_range[1] - self.x_range[0]:g} x {self.y_range[1] - self.y_range[0]:g} "
                "m): it would have no cells"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(rows along y, columns along x), as OccupancyGrid's height and width."""
        return (
            round((self.y_range[1] - self.y_range[0]) / self.resolution),
            round((self.x_range[1] - self.x_range[0]) / self.resolution),
        )

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of every cell centre, row-major from the origin corner (x_min, y_min)."""
        rows, cols = self.shape
        x = self.x_range[0] + (np.arange(cols) + 0.5) * self.resolution
        y = self.y_range[0] + (np.arange(rows) + 0.5) * self.resolution
        return np.meshgrid(x, y)


@dataclass(frozen=True)
class Camera:
    """What the grid needs of a sensor_msgs/CameraInfo: the 3x4 projection, the image size and,
    for a raw (distorted) image, its lens."""

    projection: np.ndarray
    height: int
    width: int
    lens: geometry.Lens | None = None

    @classmethod
    def from_info(cls, info: Any, rectified: bool = False) -> "Camera":
        """From a CameraInfo (rclpy or rosbags): P, or [K | 0] when P is all zeros.

        The image is raw (``image_raw``, as camera_info describes it) unless ``rectified``: then a
        non-zero D is its lens (K, D and ``distortion_model``). A rectified image (or D = 0) is
        projected through P alone. Binning and the ROI are applied as image_geometry does: the
        image is the ROI (all zeros: the whole sensor) divided by the binning (0 means 1).
        ValueError when unusable.
        """
        p = np.asarray(info.p, np.float64).reshape(3, 4)
        k = np.asarray(info.k, np.float64).reshape(3, 3)
        if not p.any():
            p = np.hstack([k, np.zeros((3, 1))])
        if not (np.isfinite(p).all() and p[0, 0] > 0 and p[1, 1] > 0 and p[2, 2] > 0):
            raise ValueError(
                "camera_info has no usable projection (P and K are zero or not finite, "
                "fx, fy <= 0, or P[2,2] <= 0)"
            )
        if info.height <= 0 or info.width <= 0:
            raise ValueError(f"camera_info size {info.width}x{info.height} is not positive")
        d = np.asarray(info.d, np.float64).reshape(-1)
        distorted = not rectified and d.any()
        reduce, height, width = _binned_roi(info, cropped_rectified=rectified and d.any())
        if max(height, width) > MAX_SIDE:
            raise ValueError(
                f"camera_info size {width}x{height} is too large for the grid: each "
                f"side may have at most {MAX_SIDE} pixels"
            )
        lens = geometry.Lens(reduce @ k, d, str(info.distortion_model)) if distorted else None
        return cls(reduce @ p, height, width, lens)

    def key(self) -> tuple:
        """A hashable identity, to tell when the lookup maps must be rebuilt."""
        lens = self.lens
        optics = () if lens is None else (lens.k.tobytes(), lens.d.tobytes(), lens.model)
        return (self.projection.tobytes(), self.height, self.width, *optics)


def _binned_roi(info: Any, cropped_rectified: bool) -> tuple[np.ndarray, int, int]:
    """The 3x3 map from sensor pixels to image pixels, and the image's height and width.

    image_geometry's rule: pixel' = (pixel - ROI offset) / binning, and the image is the ROI's
    size divided by the binning. ``cropped_rectified``: the ROI would have to be rectified too
    (a rectified image of a distorted lens), which is refused.
    """
    bx, by = max(1, int(info.binning_x)), max(1, int(info.binning_y))
    roi = info.roi
    x, y, w, h = (int(v) for v in (roi.x_offset, roi.y_offset, roi.width, roi.height))
    if not (x or y or w or h):
        x, y, w, h = 0, 0, int(info.width), int(info.height)
    elif cropped_rectified:
        raise ValueError(
            "camera_info has a roi, but the image is rectified (image_rectified) and D is not "
            "zero: the rectified roi is not supported; publish the rectified camera_info "
            "(D = 0) or the raw image"
        )
    if w <= 0 or h <= 0 or x + w > info.width or y + h > info.height:
        raise ValueError(
            f"camera_info roi {w}x{h} at ({x}, {y}) does not lie inside the "
            f"{info.width}x{info.height} sensor"
        )
    if w // bx < 1 or h // by < 1:
        raise ValueError(f"camera_info binning {bx}x{by} leaves no pixel of the {w}x{h} roi")
    reduce = np.array([[1 / bx, 0, -x / bx], [0, 1 / by, -y / by], [0, 0, 1]])
    return reduce, h // by, w // bx


def occupancy(
    mask: np.ndarray, confidence: np.ndarray, maps: geometry.LookupMaps, mode: str = "binary"
) -> np.ndarray:
    """int8 occupancy of every cell from the frame's uint8 mask and confidence (input size).

    ``binary`` samples the mask (nearest), so the grid agrees with the published mask; ``scaled``
    samples the confidence (bilinear) as round(100 (1 - P)).
    """
    if mode == "binary":
        road = maps.sample(mask, cv2.INTER_NEAREST)
        cells = np.where(road > 0, 0, 100).astype(np.int8)
    elif mode == "scaled":
        p = maps.sample(confidence.astype(np.float32), cv2.INTER_LINEAR) / 255.0
        cells = np.rint(100.0 * (1.0 - p)).astype(np.int8)
    else:
        raise ValueError(f"occupancy must be one of {OCCUPANCY_MODES}, got '{mode}'")
    cells[~maps.known] = UNKNOWN
    return cells


class GroundGrid:
    """Grid cells <-> image pixels for the current camera and pose.

    Rebuilt only when either changes.
    """

    def __init__(self, spec: GridSpec, mode: str = "binary") -> None:
        if mode not in OCCUPANCY_MODES:
            raise ValueError(f"grid occupancy must be one of {OCCUPANCY_MODES}, got '{mode}'")
        self.spec = spec
        self.mode = mode
        self._cells = spec.cell_centres()
        self._key: tuple | None = None
        self.maps: geometry.LookupMaps | None = None
        self.rebuilds = 0

    def update(self, camera: Camera, cam_from_grid: np.ndarray) -> None:
        """Use this camera and 4x4 camera <- grid-frame pose.

        The maps are rebuilt only if either changed. ValueError for a pose that is not finite.
        """
        pose = np.asarray(cam_from_grid, np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise ValueError(f"the camera pose is not a finite 4x4 transform: {pose.tolist()}")
        key = (camera.key(), pose.tobytes())
        if key == self._key:
            return
        size = (camera.height, camera.width)
        if camera.lens is None:
            h = geometry.plane_homography(camera.projection, cam_from_grid, axes=(0, 1))
            self.maps = geometry.lookup_maps(h, *self._cells, size)
        else:
            self.maps = geometry.lens_lookup_maps(camera.lens, cam_from_grid, *self._cells, size)
        self._key = key
        self.rebuilds += 1

    def occupancy(self, mask: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """The frame's occupancy cells.

        ValueError when no camera is set or its size is not the frame's.
        """
        if self.maps is None:
            raise ValueError("no camera_info received yet")
        if mask.shape != self.maps.image_size:
            raise ValueError(
                f"the frame is {mask.shape[1]}x{mask.shape[0]} but camera_info says "
                f"{self.maps.image_size[1]}x{self.maps.image_size[0]}"
            )
        return occupancy(mask, confidence, self.maps, self.mode)

    def fields(self, cells: np.ndarray) -> dict[str, Any]:
        """OccupancyGrid fields besides the header: MapMetaData values and the row-major data."""
        rows, cols = self.spec.shape
        return {
            "resolution": float(self.spec.resolution),
            "width": cols,
            "height": rows,
            "origin_xy": (float(self.spec.x_range[0]), float(self.spec.y_range[0])),
            "data": np.ascontiguousarray(cells, np.int8).reshape(-1),
        }


def grid_spec(resolution: float, x_range: Sequence[float], y_range: Sequence[float]) -> GridSpec:
    """A GridSpec from option values, checked (ValueError, OptionError naming the option)."""
    if len(x_range) != 2 or len(y_range) != 2:
        raise ValueError(
            f"grid x and y ranges must be [min, max], got {list(x_range)} and {list(y_range)}"
        )
    GRID_RESOLUTION.check("grid_resolution", resolution)
    for name, values in (("grid_x_range", x_range), ("grid_y_range", y_range)):
        for value in values:
            GRID_EXTENT.check(name, value)
    return GridSpec(
        float(resolution),
        (float(x_range[0]), float(x_range[1])),
        (float(y_range[0]), float(y_range[1])),
    )


def mount(height: float, pitch: float, roll: float) -> np.ndarray:
    """The 4x4 camera <- ground mount from option values, each checked (OptionError naming it)."""
    return geometry.camera_from_mount(
        CAMERA_HEIGHT.check("camera_height", height),
        CAMERA_ANGLE.check("camera_pitch", pitch),
        CAMERA_ANGLE.check("camera_roll", roll),
    )


def grid_from_args(args: argparse.Namespace) -> tuple[GroundGrid, np.ndarray]:
    """The grid core and the 4x4 camera <- grid-frame mount from ``options.GRID``'s flags."""
    grid = GroundGrid(
        grid_spec(args.grid_resolution, args.grid_x_range, args.grid_y_range), args.grid_occupancy
    )
    return grid, mount(args.camera_height, args.camera_pitch, args.camera_roll)


#: BGR of the grid picture: unseen cells, and the line drawn every ``PICTURE_TICK_M`` metres ahead
PICTURE_UNKNOWN, PICTURE_TICK, PICTURE_TICK_M = (96, 96, 96), (200, 120, 0), 10.0


def picture(cells: np.ndarray, spec: GridSpec) -> np.ndarray:
    """A bird's-eye BGR picture of occupancy ``cells``, one pixel per cell.

    Forward (x) up, left (y) on the left. Free (road) white, occupied black, values between in
    grey (``scaled``), unseen cells mid grey; a line across every 10 m ahead.
    """
    grey = np.rint(255 - 2.55 * np.clip(cells, 0, 100)).astype(np.uint8)
    out = cv2.cvtColor(grey.T[::-1, ::-1], cv2.COLOR_GRAY2BGR)
    out[(cells == UNKNOWN).T[::-1, ::-1]] = PICTURE_UNKNOWN
    x_min, x_max = spec.x_range
    columns = spec.shape[1]  # its far edge: x_min + columns * resolution, x_max rounded to a cell
    first = np.ceil(x_min / PICTURE_TICK_M) * PICTURE_TICK_M
    for x in np.arange(first, x_max, PICTURE_TICK_M):
        if x > x_min:
            out[min(columns - 1, columns - round((x - x_min) / spec.resolution))] = PICTURE_TICK
    return out
