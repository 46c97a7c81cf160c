"""The demo end to end in a temporary folder.

Bags, MP4 and contact sheet; re-runs; the untrained fallback.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch
from rosbags.rosbag2 import Reader

from fcn_road_seg import demo

from conftest import video_frames

SAMPLES = demo.FRAMES / "image_2"


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KITTI Road folder with quarter-size copies of three shipped frames."""
    root = tmp_path_factory.mktemp("kitti")
    (root / "image_2").mkdir()
    for path in sorted(SAMPLES.glob("*.png"))[:3]:
        pixels = cv2.imread(str(path))
        cv2.imwrite(
            str(root / "image_2" / path.name),
            cv2.resize(
                pixels, (pixels.shape[1] // 4, pixels.shape[0] // 4), interpolation=cv2.INTER_AREA
            ),
        )
    return root


def counts(bag: Path) -> dict[str, int]:
    """topic -> message count."""
    with Reader(bag) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


def check_outputs(out: Path) -> None:
    """The demo's bags, video and contact sheet, for three frames."""
    assert counts(out / demo.INPUT_BAG) == {"/kitti/camera_color_left/image_raw": 3}
    assert counts(out / demo.OUTPUT_BAG) == {
        "/kitti/camera_color_left/image_raw": 3,
        "/road_seg/mask": 3,
        "/road_seg/confidence": 3,
        "/road_seg/overlay": 3,
    }
    assert (out / demo.VIDEO).stat().st_size > 0 and video_frames(out / demo.VIDEO) == 3
    sheet = cv2.imread(str(out / demo.SHEET))
    assert sheet is not None and sheet.shape[1] == 3 * 320


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
