"""What kitti2bag and segment_bag share (``fcn_road_seg/bags.py``).

Outputs are never overwritten, and they appear only when a run succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fcn_road_seg.tools import kitti2bag, segment_bag
from fcn_road_seg.errors import DataError
from fcn_road_seg.segmenter import Segmenter

from conftest import ROAD_NAMES


def test_outputs_are_never_overwritten(
    converted: dict[str, Any], road_dir: Path, segmenter: Segmenter, tmp_path: Path
) -> None:
    with pytest.raises(
        DataError, match=f"refusing to overwrite existing output: {converted['bag']}"
    ):
        kitti2bag.kitti2bag(road_dir, converted["bag"], progress=False)
    video = tmp_path / "taken.mp4"
    video.write_bytes(b"mine")
    with pytest.raises(DataError, match=f"refusing to overwrite existing output: {video}"):
        segment_bag.segment_bag(
            converted["bag"], tmp_path / "seg", segmenter, video=video, progress=False
        )
    assert video.read_bytes() == b"mine" and not (tmp_path / "seg").exists()


def test_exception_mid_write_leaves_no_output(
    converted: dict[str, Any],
    segmenter: Segmenter,
    road_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_process, calls = Segmenter.process, []

    def failing_process(self: Segmenter, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real_process(self, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "process", failing_process)
    with pytest.raises(RuntimeError, match="boom"):
        segment_bag.segment_bag(
            converted["bag"],
            tmp_path / "seg",
            segmenter,
            video=tmp_path / "o.mp4",
            frames_dir=tmp_path / "frames",
            sheet=tmp_path / "s.png",
            progress=False,
        )
    real_messages = kitti2bag.frame_messages

    def interrupted(frame: Any, layout: str) -> Any:
        if frame.image.name == ROAD_NAMES[2]:
            raise KeyboardInterrupt  # Ctrl-C on the last frame
        return real_messages(frame, layout)

    monkeypatch.setattr(kitti2bag, "frame_messages", interrupted)
    assert kitti2bag.main([str(road_dir), str(tmp_path / "kitti"), "--no-progress"]) == 130
    assert list(tmp_path.iterdir()) == []
