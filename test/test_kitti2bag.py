"""kitti2bag (``fcn_road_seg/kitti2bag.py``) on real KITTI frames (downscaled copies).

Checked value by value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fcn_road_seg.tools import bags, kitti2bag
from fcn_road_seg.errors import DataError
from fcn_road_seg.tools.kitti import parse_stamp

from conftest import ROAD_NAMES, leftovers, p2_for, png_claiming, read_bag


def test_kitti2bag_images_stamps_and_pixels(converted: dict[str, Any], road_dir: Path) -> None:
    start = parse_stamp("2011-09-26 13:02:25.964389445")
    expected = [start, start + 250_000_000, start + 500_000_000]
    assert (
        converted["frames"] == 3
        and converted["layout"] == "road"
        and converted["stamps_ns"] == expected
    )
    topics = read_bag(converted["bag"])
    assert sorted(topics) == [bags.INFO_TOPIC, bags.IMAGE_TOPIC]
    for (stamp, _, msg), want, name in zip(
        topics[bags.IMAGE_TOPIC], expected, ROAD_NAMES, strict=True
    ):
        assert stamp == want == bags.header_ns(msg.header)
        assert msg.header.frame_id == "camera_color_left" and msg.encoding == "bgr8"
        pixels = cv2.imread(str(road_dir / "image_2" / name))
        assert (msg.height, msg.width, msg.step) == (
            pixels.shape[0],
            pixels.shape[1],
            3 * pixels.shape[1],
        )
        np.testing.assert_array_equal(msg.data.reshape(pixels.shape), pixels)


def test_kitti2bag_camera_info_from_calib(converted: dict[str, Any]) -> None:
    topics = read_bag(converted["bag"])
    images = topics[bags.IMAGE_TOPIC]
    for i, ((stamp, _, info), (image_stamp, _, img)) in enumerate(
        zip(topics[bags.INFO_TOPIC], images, strict=True)
    ):
        assert stamp == image_stamp and info.header.stamp == img.header.stamp
        assert info.header.frame_id == "camera_color_left"
        assert (info.width, info.height, info.distortion_model) == (
            img.width,
            img.height,
            "plumb_bob",
        )
        np.testing.assert_array_equal(info.p, p2_for(i))
        np.testing.assert_array_equal(info.k, [700.0 + i, 0, 600.5, 0, 701.0 + i, 170.25, 0, 0, 1])
        np.testing.assert_array_equal(info.r, np.eye(3).ravel())
        np.testing.assert_array_equal(info.d, np.zeros(5))


def test_unreadable_frames_are_named(road_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "kitti"
    (src / "image_2").mkdir(parents=True)
    for name in ROAD_NAMES:
        (src / "image_2" / name).write_bytes((road_dir / "image_2" / name).read_bytes())
    data = (src / "image_2" / ROAD_NAMES[1]).read_bytes()
    (src / "image_2" / ROAD_NAMES[1]).write_bytes(data[: len(data) // 2])  # truncated PNG
    with pytest.raises(
        DataError, match=rf"1 of 3 frames .*could not be read.*--skip-bad.*\n  .*{ROAD_NAMES[1]}"
    ):
        kitti2bag.kitti2bag(src, tmp_path / "bag", progress=False)
    assert not (tmp_path / "bag").exists() and leftovers(tmp_path) == []
    summary = kitti2bag.kitti2bag(src, tmp_path / "bag", skip_bad=True, progress=False)
    assert (
        summary["frames"] == 2
        and len(summary["skipped"]) == 1
        and ROAD_NAMES[1] in summary["skipped"][0]
    )
    assert len(read_bag(tmp_path / "bag")[bags.IMAGE_TOPIC]) == 2


def test_raw_drive_with_real_stamps_and_mcap(tmp_path: Path) -> None:
    date = tmp_path / "2011_09_26"
    data = date / "2011_09_26_drive_0001_sync" / "image_02" / "data"
    data.mkdir(parents=True)
    lines = [
        "2011-09-26 13:02:25.964389445",
        "2011-09-26 13:02:26.074450923",
        "2011-09-26 13:02:26.184520000",
    ]
    (data.parent / "timestamps.txt").write_text("\n".join(lines) + "\n")
    for i in range(3):
        cv2.imwrite(str(data / f"{i:010d}.png"), np.full((20, 64, 3), 40 * i, np.uint8))
    p_rect = np.arange(12, dtype=float) + 0.125
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\nS_02: 1.392e+03 5.12e+02\nS_rect_02: 6.4e+01 2.0e+01\n"
        f"P_rect_02: {' '.join(map(str, p_rect))}\n"
    )
    summary = kitti2bag.kitti2bag(date, tmp_path / "bag", storage="mcap", progress=False)
    assert summary["layout"] == "raw" and (tmp_path / "bag" / "bag.mcap").is_file()
    topics = read_bag(tmp_path / "bag")
    want = [parse_stamp(line) for line in lines]
    assert want[1] == 1317042146074450923
    assert [s for s, _, _ in topics[bags.IMAGE_TOPIC]] == want
    assert [bags.header_ns(m.header) for _, _, m in topics[bags.IMAGE_TOPIC]] == want
    info = topics[bags.INFO_TOPIC][0][2]
    np.testing.assert_array_equal(info.k, p_rect.reshape(3, 4)[:, :3].ravel())
    np.testing.assert_array_equal(info.p, p_rect)
    with pytest.raises(DataError, match="--rate only applies to the road layout"):
        kitti2bag.kitti2bag(date, tmp_path / "bag2", rate_hz=5.0, progress=False)


def test_kitti2bag_command_line(
    road_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = str(tmp_path / "bag")
    assert kitti2bag.main([str(road_dir), bag, "--limit", "2", "--no-progress"]) == 0
    assert "2 frames of the KITTI road layout" in capsys.readouterr().out
    assert kitti2bag.main([str(road_dir), bag, "--no-progress"]) == 1
    assert f"error: refusing to overwrite existing output: {bag}" in capsys.readouterr().err


def test_one_calibration_file_for_a_folder_without_calib(
    road_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--calib: every frame's camera_info from that file (here the real um_000000 calibration)."""
    src = tmp_path / "kitti"
    (src / "image_2").mkdir(parents=True)
    for name in ROAD_NAMES:
        (src / "image_2" / name).write_bytes((road_dir / "image_2" / name).read_bytes())
    calib = Path(__file__).parent / "data" / "um_000000_calib.txt"
    bag = tmp_path / "bag"
    assert kitti2bag.main([str(src), str(bag), "--calib", str(calib), "--no-progress"]) == 0
    assert bags.INFO_TOPIC in capsys.readouterr().out
    infos = [info for _, _, info in read_bag(bag)[bags.INFO_TOPIC]]
    p2 = [721.5377, 0, 609.5593, 44.85728, 0, 721.5377, 172.854, 0.2163791, 0, 0, 1, 0.002745884]
    assert len(infos) == 3
    for info in infos:
        np.testing.assert_allclose(info.p, p2)
        np.testing.assert_array_equal(info.d, np.zeros(5))


def road_copy(road_dir: Path, folder: Path) -> Path:
    """A copy of ``road_dir`` (images and calibration) to spoil."""
    for sub in ("image_2", "calib"):
        (folder / sub).mkdir(parents=True)
        for path in (road_dir / sub).iterdir():
            (folder / sub / path.name).write_bytes(path.read_bytes())
    return folder


@pytest.mark.parametrize("p2", ["nan " * 12, "0 " * 12])
def test_a_calibration_that_is_no_camera_is_a_bad_frame(
    road_dir: Path, tmp_path: Path, p2: str
) -> None:
    """CameraInfo with a NaN or all-zero P was written without a warning."""
    src = road_copy(road_dir, tmp_path / "kitti")
    bad = src / "calib" / ROAD_NAMES[2].replace(".png", ".txt")
    bad.write_text(f"P2: {p2}\n")
    with pytest.raises(DataError, match=rf"1 of 3 frames .*\n  {bad}: 'P2' is not a usable"):
        kitti2bag.kitti2bag(src, tmp_path / "bag", progress=False)
    assert not (tmp_path / "bag").exists()
    summary = kitti2bag.kitti2bag(src, tmp_path / "bag", skip_bad=True, progress=False)
    infos = read_bag(tmp_path / "bag")[bags.INFO_TOPIC]
    assert summary["frames"] == len(infos) == 2
    assert all(np.isfinite(m.p).all() and m.p[0] > 0 for _, _, m in infos)


def test_an_image_whose_header_claims_60000x60000_is_a_bad_frame(
    road_dir: Path, tmp_path: Path
) -> None:
    src = road_copy(road_dir, tmp_path / "kitti")
    bomb = src / "image_2" / ROAD_NAMES[0]
    bomb.write_bytes(png_claiming(60000, 60000))
    summary = kitti2bag.kitti2bag(src, tmp_path / "bag", skip_bad=True, progress=False)
    assert summary["frames"] == 2
    [reason] = summary["skipped"]
    assert reason.startswith(f"cannot read image {bomb}: ") and "max_pixels = 16777216" in reason


@pytest.mark.parametrize("rate", ["inf", "nan", "0", "-1"])
def test_a_bad_rate_is_refused_naming_the_option(
    road_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, rate: str
) -> None:
    with pytest.raises(SystemExit) as info:
        kitti2bag.main([str(road_dir), str(tmp_path / "bag"), f"--rate={rate}"])
    assert info.value.code == 2
    assert "argument --rate: must be a finite number in [0.1, 1000] Hz" in capsys.readouterr().err


def test_the_output_is_checked_first(road_dir: Path, capsys: pytest.CaptureFixture) -> None:
    if not Path("/proc").is_dir():
        pytest.skip("/proc is not mounted here")
    assert kitti2bag.main([str(road_dir), "/proc/bag", "--no-progress"]) == 1
    assert "error: cannot write output /proc/bag: No such file" in capsys.readouterr().err


@pytest.mark.parametrize("start", ["2100-01-01 00:00:00", "1960-01-01 00:00:00", "3" + "0" * 19])
def test_a_start_that_no_ros_header_holds_is_refused(
    road_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, start: str
) -> None:
    """--start 2100-01-01 (Time.sec is an int32) died in serialize_cdr with a struct.error
    traceback; 1960 wrote negative stamps, which ROS refuses to play."""
    with pytest.raises(SystemExit) as info:
        kitti2bag.main([str(road_dir), str(tmp_path / "bag"), "--start", start])
    assert info.value.code == 2
    assert "argument --start: " in (err := capsys.readouterr().err)
    assert "outside the times a ROS 2 header holds" in err
    assert list(tmp_path.iterdir()) == []


def test_stamps_that_run_past_2038_are_refused(road_dir: Path, tmp_path: Path) -> None:
    start = parse_stamp("2038-01-19 03:14:07.9")  # fine, but the last of 3 frames at 10 Hz is not
    with pytest.raises(DataError, match=r"--start/--rate: the last stamp \(3 frames at 10 Hz\)"):
        kitti2bag.kitti2bag(road_dir, tmp_path / "bag", start_ns=start, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_raw_timestamp_past_2038_names_the_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "2100_01_01_drive_0001_sync" / "image_02" / "data"
    data.mkdir(parents=True)
    assert cv2.imwrite(str(data / "0000000000.png"), np.zeros((8, 8, 3), np.uint8))
    stamps = data.parent / "timestamps.txt"
    stamps.write_text("2100-01-01 00:00:00.000000000\n")
    with pytest.raises(DataError, match=f"{stamps}:1: 2100-01-01 00:00:00.000000000 is outside"):
        kitti2bag.kitti2bag(data.parents[1], tmp_path / "bag", progress=False)
    assert not (tmp_path / "bag").exists()
