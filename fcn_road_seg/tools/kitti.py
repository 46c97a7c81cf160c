"""KITTI folders without ROS: frame lists, timestamps and camera calibration for ``kitti2bag``.

Two layouts of the left colour camera (camera 2) are read:

- **road**: a KITTI Road split folder (``data_road/training`` or ``data_road/testing``) with
  ``image_2/<stem>.png`` and optional ``calib/<stem>.txt``; it has no timestamps, so stamps are
  synthesised at a fixed rate from a start time.
- **raw**: a KITTI raw drive folder (``2011_09_26_drive_0001_sync``) with ``image_02/data/*.png``
  and ``image_02/timestamps.txt``, or its parent date folder (``2011_09_26``) when that holds
  exactly one drive; ``calib_cam_to_cam.txt`` is looked for in the drive folder, then the date
  folder.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..bounds import FPS
from ..errors import DataError

LAYOUTS = ("road", "raw")
RAW_CALIB = "calib_cam_to_cam.txt"
_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d{1,9}))?")
#: the last stamp a ROS 2 header holds (builtin_interfaces/Time.sec is an int32; ROS refuses
#: negative times): 2038-01-19 03:14:07.999999999 UTC
MAX_STAMP_NS = (2**31 - 1) * 10**9 + 10**9 - 1


@dataclass(frozen=True)
class KittiFrame:
    """One camera image, its stamp (ns since the epoch) and the calibration file describing it."""

    image: Path
    stamp_ns: int
    calib: Path | None


@dataclass(frozen=True)
class CameraModel:
    """sensor_msgs/CameraInfo parameters: row-major K (9), R (9), P (12) and distortion D."""

    k: np.ndarray
    r: np.ndarray
    p: np.ndarray
    d: np.ndarray
    distortion_model: str = "plumb_bob"


def parse_stamp(text: str) -> int:
    """``YYYY-MM-DD HH:MM:SS[.fraction]`` -> integer ns, with no float.

    UTC, up to 9 fraction digits.
    """
    match = _STAMP.fullmatch(text.strip())
    if not match:
        raise ValueError(
            f"not a KITTI timestamp (YYYY-MM-DD HH:MM:SS.nnnnnnnnn): {text.strip()!r}"
        )
    seconds = calendar.timegm(datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timetuple())
    return check_stamp(seconds * 10**9 + int((match[2] or "").ljust(9, "0")), text.strip())


def check_stamp(stamp_ns: int, text: str) -> int:
    """``stamp_ns`` when a ROS 2 header can hold it (1970 to 2038-01-19 UTC), else ValueError."""
    if not 0 <= stamp_ns <= MAX_STAMP_NS:
        raise ValueError(
            f"{text} is outside the times a ROS 2 header holds "
            "(1970-01-01 00:00:00 to 2038-01-19 03:14:07.999999999 UTC)"
        )
    return stamp_ns


def synthetic_stamps(count: int, start_ns: int, rate_hz: float) -> list[int]:
    """``count`` stamps at ``rate_hz`` from ``start_ns``, rounded to whole ns without drift."""
    FPS.check("rate", rate_hz)
    period = Fraction(10**9) / Fraction(str(rate_hz))
    stamps = [start_ns + round(i * period) for i in range(count)]
    if stamps:
        try:
            check_stamp(stamps[-1], f"the last stamp ({count} frames at {rate_hz:g} Hz)")
        except ValueError as exc:
            raise DataError(f"--start/--rate: {exc}") from exc
    return stamps


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """The numeric ``key: v1 v2 ...`` lines of a KITTI calibration file.

    Others, like calib_time, are left out.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read calibration file {path}: {exc}") from exc
    values: dict[str, np.ndarray] = {}
    for line in lines:
        key, sep, rest = line.partition(":")
        try:
            if sep and rest.split():
                values[key.strip()] = np.array([float(v) for v in rest.split()])
        except ValueError:
            continue
    return values


def _entry(path: Path, key: str, size: int) -> np.ndarray:
    """The ``key`` entry of calibration file ``path``, checked to hold ``size`` numbers."""
    values = read_calib(path)
    if key not in values or values[key].size != size:
        found = "missing" if key not in values else f"{values[key].size} numbers"
        raise DataError(f"{path}: '{key}' must hold {size} numbers ({found})")
    return values[key]


def _rectified(p: np.ndarray) -> CameraModel:
    """The model of a rectified image: K = P[:3,:3], R = I, no distortion."""
    return CameraModel(
        k=p.reshape(3, 4)[:, :3].reshape(-1), r=np.eye(3).reshape(-1), p=p, d=np.zeros(5)
    )


def _projection(path: Path, key: str) -> np.ndarray:
    """The 3x4 projection ``key`` of ``path`` (12 numbers), checked to be a usable camera.

    Finite, fx and fy > 0 and P[2,2] > 0, as ``grid.Camera`` needs it.
    """
    p = _entry(path, key, 12)
    if not (np.isfinite(p).all() and p[0] > 0 and p[5] > 0 and p[10] > 0):
        raise DataError(
            f"{path}: '{key}' is not a usable projection (not finite, zero, fx or fy <= 0, or "
            f"P[2,2] <= 0): {' '.join(f'{v:g}' for v in p)}"
        )
    return p


def camera_model(layout: str, calib: Path, width: int, height: int) -> CameraModel:
    """The camera model of a ``width`` x ``height`` camera-2 image described by ``calib``.

    Road: from ``P2`` (the images are rectified). Raw: images of size ``S_rect_02`` (``*_sync``)
    are rectified, so K = P_rect_02[:3,:3], R = I, D = 0; images of size ``S_02`` (``*_extract``)
    are not, so K = K_02, D = D_02, R = R_rect_02. P = P_rect_02 in both cases. A projection that
    is not a usable camera is a DataError naming the file.
    """
    if layout == "road":
        return _rectified(_projection(calib, "P2"))
    p = _projection(calib, "P_rect_02")
    rect_size = tuple(_entry(calib, "S_rect_02", 2).round().astype(int))
    if (width, height) == rect_size:
        return _rectified(p)
    raw_size = tuple(_entry(calib, "S_02", 2).round().astype(int))
    if (width, height) != raw_size:
        raise DataError(
            f"image size {width}x{height} matches neither S_rect_02 {rect_size[0]}x{rect_size[1]} "
            f"nor S_02 {raw_size[0]}x{raw_size[1]} in {calib}"
        )
    return CameraModel(
        k=_entry(calib, "K_02", 9),
        r=_entry(calib, "R_rect_02", 9),
        p=p,
        d=_entry(calib, "D_02", 5),
    )


def _drives(root: Path) -> list[Path]:
    """Drive folders (``*_drive_*`` with ``image_02/``) directly under a date folder."""
    return sorted(d for d in root.glob("*_drive_*") if (d / "image_02").is_dir())


def detect_layout(root: Path) -> str:
    """``road`` or ``raw`` from the folder's contents, else DataError saying what was expected."""
    if (root / "image_2").is_dir():
        return "road"
    if (root / "image_02").is_dir() or _drives(root):
        return "raw"
    raise DataError(
        f"cannot tell the KITTI layout of {root}: expected image_2/ (a KITTI Road folder such as "
        "data_road/testing), image_02/ (a KITTI raw drive folder) or a date folder with one "
        "*_drive_* folder"
    )


def _pngs(folder: Path) -> list[Path]:
    """The PNG files in ``folder``, sorted; DataError when there are none."""
    images = sorted(folder.glob("*.png"))
    if not images:
        raise DataError(f"no PNG images in {folder}")
    return images


def road_frames(
    root: Path, start_ns: int, rate_hz: float, calib: Path | None = None
) -> list[KittiFrame]:
    """KITTI Road frames with synthetic stamps.

    With ``calib`` for every frame when given, else ``calib/<stem>.txt`` when the folder has
    ``calib/``.
    """
    if not (root / "image_2").is_dir():
        raise DataError(f"{root} is not a KITTI Road folder: {root / 'image_2'} does not exist")
    if calib is not None and not calib.is_file():
        raise DataError(f"calibration file not found: {calib}")
    images = _pngs(root / "image_2")
    calib_dir = root / "calib"
    stamps = synthetic_stamps(len(images), start_ns, rate_hz)
    return [
        KittiFrame(
            image,
            stamp,
            calib or (calib_dir / f"{image.stem}.txt" if calib_dir.is_dir() else None),
        )
        for image, stamp in zip(images, stamps)
    ]


def drive_folder(root: Path) -> Path:
    """The drive folder for ``root``: itself, or the single drive inside a date folder."""
    if (root / "image_02").is_dir():
        return root
    drives = _drives(root)
    if len(drives) != 1:
        found = ", ".join(d.name for d in drives) or "none"
        raise DataError(
            f"{root} is not a KITTI raw drive folder (no image_02/) "
            "nor a date folder with exactly "
            f"one drive (found: {found}); pass the drive folder"
        )
    return drives[0]


def read_timestamps(path: Path) -> list[int]:
    """Every line of a KITTI ``timestamps.txt`` as integer ns.

    DataError naming the file and line.
    """
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read timestamps {path}: {exc}") from exc
    stamps = []
    for number, line in enumerate(lines, 1):
        try:
            stamps.append(parse_stamp(line))
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from exc
    return stamps


def raw_frames(root: Path) -> list[KittiFrame]:
    """KITTI raw camera-2 frames with recorded stamps and the drive's ``calib_cam_to_cam.txt``."""
    drive = drive_folder(root)
    images = _pngs(drive / "image_02" / "data")
    stamps = read_timestamps(drive / "image_02" / "timestamps.txt")
    if len(stamps) != len(images):
        raise DataError(
            f"{drive / 'image_02'}: {len(images)} images in data/ but {len(stamps)} lines in "
            "timestamps.txt"
        )
    calib = next((c for c in (drive / RAW_CALIB, drive.parent / RAW_CALIB) if c.is_file()), None)
    return [KittiFrame(image, stamp, calib) for image, stamp in zip(images, stamps)]


def kitti_frames(
    root: Path,
    layout: str | None = None,
    start_ns: int = 0,
    rate_hz: float = 10.0,
    calib: Path | None = None,
) -> tuple[str, list[KittiFrame]]:
    """The layout (detected unless given) and the frames of a KITTI folder, in order.

    ``calib``: one KITTI Road calibration file for every frame (road layout only).
    """
    if not root.is_dir():
        raise DataError(f"KITTI folder not found: {root}")
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DataError(f"unknown KITTI layout '{layout}'; choose one of {LAYOUTS}")
    if layout == "raw":
        if calib is not None:
            raise DataError(
                f"--calib only applies to the road layout; KITTI raw drives have their {RAW_CALIB}"
            )
        return layout, raw_frames(root)
    return layout, road_frames(root, start_ns, rate_hz, calib)
