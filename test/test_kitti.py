"""KITTI folder reading: layouts, exact timestamps and calibration -> camera models."""

from __future__ import annotations

import calendar
from pathlib import Path

import numpy as np
import pytest

from fcn_road_seg.errors import DataError, OptionError
from fcn_road_seg.tools.kitti import (
    camera_model,
    detect_layout,
    kitti_frames,
    parse_stamp,
    read_timestamps,
    synthetic_stamps,
)

P2 = np.arange(1.0, 13.0) * 10.5  # any distinct 12 numbers
P_RECT_02 = np.array(
    [
        721.5377,
        0.0,
        609.5593,
        44.85728,
        0.0,
        721.5377,
        172.854,
        0.2163791,
        0.0,
        0.0,
        1.0,
        0.002745884,
    ]
)
K_02 = np.array([959.7910, 0.0, 696.0217, 0.0, 956.9251, 224.1806, 0.0, 0.0, 1.0])
D_02 = np.array([-0.3691481, 0.1968681, 0.001353473, 0.0005677587, -0.06770705])
R_RECT_02 = np.array(
    [
        0.9998817,
        0.01511453,
        -0.002841595,
        -0.01511724,
        0.9998853,
        -0.000933851,
        0.002827154,
        0.0009766976,
        0.9999955,
    ]
)


def fmt(values: np.ndarray) -> str:
    """Numbers the way KITTI writes them."""
    return " ".join(f"{v:.12e}" for v in values)


def write_cam_to_cam(path: Path, rect_size: tuple[int, int], raw_size: tuple[int, int]) -> Path:
    """A calib_cam_to_cam.txt with the camera-2 entries.

    Also with the non-numeric header line KITTI has.
    """
    path.write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        f"S_02: {fmt(raw_size)}\nK_02: {fmt(K_02)}\nD_02: {fmt(D_02)}\n"
        f"S_rect_02: {fmt(rect_size)}\nR_rect_02: {fmt(R_RECT_02)}\nP_rect_02: {fmt(P_RECT_02)}\n"
    )
    return path


def test_parse_stamp_is_exact_to_the_nanosecond() -> None:
    base = calendar.timegm((2011, 9, 26, 13, 2, 25, 0, 0, 0)) * 10**9
    assert parse_stamp("2011-09-26 13:02:25.964389445") == base + 964389445
    assert (
        parse_stamp("2011-09-26 13:02:25.964389446") - parse_stamp("2011-09-26 13:02:25.964389445")
        == 1
    )
    assert parse_stamp(" 2011-09-26 13:02:25.5\n") == base + 500_000_000
    assert parse_stamp("2011-09-26 13:02:25") == base
    with pytest.raises(ValueError, match="not a KITTI timestamp"):
        parse_stamp("2011-09-26 13:02:25.1234567891")


def test_synthetic_stamps_do_not_drift() -> None:
    assert synthetic_stamps(3, 5, 10.0) == [5, 100_000_005, 200_000_005]
    assert synthetic_stamps(4, 0, 3.0)[3] == 10**9
    with pytest.raises(ValueError):
        synthetic_stamps(2, 0, 0.0)


@pytest.mark.parametrize("rate", [float("inf"), float("nan"), -10.0, 1e30])
def test_synthetic_stamps_refuse_a_rate_out_of_range_naming_it(rate: float) -> None:
    """inf raised a raw ValueError from Fraction('inf')."""
    with pytest.raises(OptionError, match=r"rate must be a finite number in \[0.1, 1000\] Hz"):
        synthetic_stamps(2, 0, rate)


def test_read_timestamps_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "timestamps.txt"
    path.write_text("2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.074450000\n")
    assert read_timestamps(path) == [
        parse_stamp("2011-09-26 13:02:25.964389445"),
        parse_stamp("2011-09-26 13:02:26.07445"),
    ]
    path.write_text("2011-09-26 13:02:25.964389445\nbroken\n")
    with pytest.raises(DataError, match=r"timestamps.txt:2"):
        read_timestamps(path)


def test_road_camera_model_from_p2(tmp_path: Path) -> None:
    calib = tmp_path / "um_000000.txt"
    calib.write_text(
        f"P0: {fmt(np.zeros(12))}\nP2: {fmt(P2)}\nR0_rect: {fmt(np.eye(3).ravel())}\n"
    )
    model = camera_model("road", calib, 1242, 375)
    np.testing.assert_array_equal(model.p, P2)
    np.testing.assert_array_equal(
        model.k, [10.5, 21.0, 31.5, 52.5, 63.0, 73.5, 94.5, 105.0, 115.5]
    )
    np.testing.assert_array_equal(model.r, np.eye(3).ravel())
    np.testing.assert_array_equal(model.d, np.zeros(5))
    assert model.distortion_model == "plumb_bob"
    calib.write_text(f"P2: {fmt(P2[:11])}\n")
    with pytest.raises(
        DataError, match=r"um_000000.txt: 'P2' must hold 12 numbers \(11 numbers\)"
    ):
        camera_model("road", calib, 1242, 375)


def test_raw_camera_model_rectified_or_not_by_image_size(tmp_path: Path) -> None:
    calib = write_cam_to_cam(tmp_path / "calib_cam_to_cam.txt", (1242, 375), (1392, 512))
    rect = camera_model("raw", calib, 1242, 375)  # *_sync images are rectified
    np.testing.assert_array_equal(rect.k, P_RECT_02.reshape(3, 4)[:, :3].ravel())
    np.testing.assert_array_equal(rect.p, P_RECT_02)
    np.testing.assert_array_equal(rect.r, np.eye(3).ravel())
    np.testing.assert_array_equal(rect.d, np.zeros(5))
    raw = camera_model("raw", calib, 1392, 512)  # *_extract images are not
    np.testing.assert_array_equal(raw.k, K_02)
    np.testing.assert_array_equal(raw.d, D_02)
    np.testing.assert_array_equal(raw.r, R_RECT_02)
    np.testing.assert_array_equal(raw.p, P_RECT_02)
    with pytest.raises(DataError, match="matches neither S_rect_02 1242x375 nor S_02 1392x512"):
        camera_model("raw", calib, 640, 480)


def test_layouts_are_detected(tmp_path: Path) -> None:
    road = tmp_path / "testing"
    (road / "image_2").mkdir(parents=True)
    date = tmp_path / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    assert detect_layout(road) == "road"
    assert detect_layout(drive) == detect_layout(date) == "raw"
    with pytest.raises(DataError, match="cannot tell the KITTI layout"):
        detect_layout(tmp_path)
    (date / "2011_09_26_drive_0002_sync" / "image_02").mkdir(parents=True)
    with pytest.raises(
        DataError, match="found: 2011_09_26_drive_0001_sync, 2011_09_26_drive_0002_sync"
    ):
        kitti_frames(date)


def test_raw_frames_need_one_stamp_per_image(tmp_path: Path) -> None:
    drive = tmp_path / "2011_09_26_drive_0001_sync"
    data = drive / "image_02" / "data"
    data.mkdir(parents=True)
    for i in range(3):
        (data / f"{i:010d}.png").write_bytes(b"")
    (drive / "image_02" / "timestamps.txt").write_text("2011-09-26 13:02:25.964389445\n" * 2)
    with pytest.raises(DataError, match="3 images in data/ but 2 lines in timestamps.txt"):
        kitti_frames(drive)
    (drive / "image_02" / "timestamps.txt").write_text("2011-09-26 13:02:25.964389445\n" * 3)
    calib = write_cam_to_cam(tmp_path / "calib_cam_to_cam.txt", (4, 4), (8, 8))
    layout, frames = kitti_frames(drive)
    assert layout == "raw" and [f.calib for f in frames] == [calib] * 3
    assert [f.image.name for f in frames] == ["0000000000.png", "0000000001.png", "0000000002.png"]


def test_one_calibration_for_every_road_frame(tmp_path: Path) -> None:
    road = tmp_path / "testing"
    (road / "image_2").mkdir(parents=True)
    (road / "calib").mkdir()
    for stem in ("um_000005", "uu_000002"):
        (road / "image_2" / f"{stem}.png").write_bytes(b"")
    calib = tmp_path / "day.txt"
    calib.write_text(f"P2: {fmt(P2)}\n")
    _, frames = kitti_frames(road, calib=calib)
    assert [f.calib for f in frames] == [calib, calib]
    _, own = kitti_frames(road)
    assert [f.calib for f in own] == [
        road / "calib" / "um_000005.txt",
        road / "calib" / "uu_000002.txt",
    ]
    with pytest.raises(DataError, match=f"calibration file not found: {tmp_path / 'no.txt'}"):
        kitti_frames(road, calib=tmp_path / "no.txt")
    drive = tmp_path / "2011_09_26_drive_0001_sync"
    (drive / "image_02").mkdir(parents=True)
    with pytest.raises(DataError, match="--calib only applies to the road layout"):
        kitti_frames(drive, calib=calib)


@pytest.mark.parametrize(
    "index, value", [(0, float("nan")), (None, 0.0), (5, -721.5), (10, -1.0), (3, float("inf"))]
)
def test_a_projection_that_is_no_camera_names_the_file(
    tmp_path: Path, index: int | None, value: float
) -> None:
    """NaN or all-zero P2 were written into CameraInfo without a word."""
    p2 = P_RECT_02.copy()
    if index is None:
        p2[:] = value
    else:
        p2[index] = value
    calib = tmp_path / "um_000000.txt"
    calib.write_text(f"P2: {fmt(p2)}\n")
    with pytest.raises(DataError, match=r"um_000000.txt: 'P2' is not a usable projection"):
        camera_model("road", calib, 1242, 375)
    raw = tmp_path / "calib_cam_to_cam.txt"
    raw.write_text(f"S_rect_02: 1.242e+03 3.75e+02\nP_rect_02: {fmt(p2)}\n")
    with pytest.raises(DataError, match=r"calib_cam_to_cam.txt: 'P_rect_02' is not a usable"):
        camera_model("raw", raw, 1242, 375)
