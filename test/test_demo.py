"""The demo end to end in a temporary folder.

Bags, MP4 and contact sheet; re-runs; the untrained fallback.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Reader

from fcn_road_seg.tools import bags, demo
from fcn_road_seg.grid import PICTURE_UNKNOWN
from fcn_road_seg.tools.kitti import read_calib

from conftest import read_bag, video_frames, write_calib

SAMPLES = demo.FRAMES / "image_2"


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KITTI Road folder with quarter-size copies of three shipped frames and their day's
    calibration at quarter size."""
    root = tmp_path_factory.mktemp("kitti")
    (root / "image_2").mkdir()
    p2 = read_calib(demo.CALIB)["P2"].reshape(3, 4)
    p2[:2] /= 4
    for path in sorted(SAMPLES.glob("*.png"))[:3]:
        pixels = cv2.imread(str(path))
        cv2.imwrite(
            str(root / "image_2" / path.name),
            cv2.resize(
                pixels, (pixels.shape[1] // 4, pixels.shape[0] // 4), interpolation=cv2.INTER_AREA
            ),
        )
        write_calib(root / "calib" / f"{path.stem}.txt", {"P2": p2.ravel()})
    return root


def counts(bag: Path) -> dict[str, int]:
    """topic -> message count."""
    with Reader(bag) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


def check_outputs(out: Path) -> None:
    """The demo's bags, video and contact sheet, for three frames."""
    camera = {bags.IMAGE_TOPIC: 3, bags.INFO_TOPIC: 3}
    assert counts(out / demo.INPUT_BAG) == camera
    assert counts(out / demo.OUTPUT_BAG) == {
        **camera,
        "/road_seg/mask": 3,
        "/road_seg/confidence": 3,
        "/road_seg/overlay": 3,
        "/road_seg/grid": 3,
    }
    assert (out / demo.VIDEO).stat().st_size > 0 and video_frames(out / demo.VIDEO) == 3
    sheet = cv2.imread(str(out / demo.SHEET))
    # two tiles a row, each the overlay with the grid's bird's-eye picture on its right
    assert sheet is not None and sheet.shape[1] == 2 * 640
    first = sheet[22:189, :640]  # the first tile below its label
    assert (first[:, 560:] == PICTURE_UNKNOWN).all(axis=2).any()  # unseen cells, beside
    assert not (first[:, :500] == PICTURE_UNKNOWN).all(axis=2).any()  # not in the overlay


def test_demo_end_to_end_and_rerun(
    frames: Path,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "demo"
    args = ["--out", str(out), "--frames", str(frames), "--device", "cpu", "--no-progress"]
    assert demo.main([*args, "--model", str(tiny_model)]) == 0
    check_outputs(out)
    printed = capsys.readouterr().out
    assert "FPS" in printed and "UNTRAINED" not in printed
    for name in (demo.INPUT_BAG, demo.OUTPUT_BAG, demo.VIDEO, demo.SHEET):
        assert str(out / name) in printed

    (out / "notes.txt").write_text("keep me")
    (out / f".{demo.VIDEO}.x1.partial.mp4").write_bytes(b"left by a killed run")
    monkeypatch.setattr(demo, "default_model_path", lambda: tmp_path / "missing.pt")
    assert demo.main(args) == 0
    check_outputs(out)
    printed = capsys.readouterr().out
    assert printed.startswith(
        f"WARNING: the default model {tmp_path / 'missing.pt'} does not exist"
    )
    assert "UNTRAINED" in printed and "MEANINGLESS" in printed
    checkpoint = torch.load(out / demo.UNTRAINED, weights_only=True)
    assert checkpoint["model_config"] == {"num_classes": 2, "fc_channels": 512, "fc6_kernel": 3}
    assert sorted(p.name for p in out.iterdir()) == sorted([*demo.NAMES, "notes.txt"])
    assert (out / "notes.txt").read_text() == "keep me"


def test_the_shipped_frames_get_their_recording_days_calibration(
    tiny_model: Path, tmp_path: Path
) -> None:
    """A KITTI Road folder without calib/: every camera_info from CALIB (P2 of 2011-09-26,
    the day whose rectified images are 1242x375), and the grid sees the road ahead."""
    frames = tmp_path / "kitti"
    (frames / "image_2").mkdir(parents=True)
    for path in sorted(SAMPLES.glob("*.png"))[:2]:
        (frames / "image_2" / path.name).write_bytes(path.read_bytes())
    summary = demo.run_demo(tmp_path / "out", frames, str(tiny_model), "cpu", progress=False)
    assert (summary["frames"], summary["grids"]) == (2, 2)
    topics = read_bag(summary["output"])
    p2 = [721.5377, 0, 609.5593, 44.85728, 0, 721.5377, 172.854, 0.2163791, 0, 0, 1, 0.002745884]
    for _, _, info in topics[bags.INFO_TOPIC]:
        assert (info.width, info.height) == (1242, 375)
        np.testing.assert_allclose(info.p, p2)
    cells = np.asarray(topics["/road_seg/grid"][0][2].data).reshape(400, 800)
    # 0.05 m cells, x 0..40 m ahead, y -10..10 m: 8 to 30 m straight ahead is in view
    assert (cells[190:210, 160:600] != -1).all() and (cells[:, :60] == -1).all()


def test_a_bad_model_or_out_is_named_before_the_earlier_outputs_go(
    frames: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --model deleted the previous run's segmented bag, video and sheet before the
    model failed to load; an --out that is a file gave a FileExistsError traceback."""
    out = tmp_path / "demo"
    args = ["--out", str(out), "--frames", str(frames), "--device", "cpu", "--no-progress"]
    assert demo.main([*args, "--model", str(tiny_model)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert demo.main([*args, "--model", str(tmp_path / "typo.pt")]) == 1
    assert "typo.pt" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    check_outputs(out)
    (tmp_path / "afile").write_text("mine")
    assert demo.main(["--out", str(tmp_path / "afile"), "--frames", str(frames)]) == 1
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'afile'} is a file" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "mine"
