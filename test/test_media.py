"""fcn-road-segment (fcn_road_seg/media.py).

Videos, image folders and globs through the per-frame core.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg.tools import media
from fcn_road_seg.image import Frame
from fcn_road_seg.segmenter import make_segmenter

from conftest import ROOT, png_claiming

KITTI = sorted((ROOT / "data" / "kitti" / "image_2").glob("*.png"))
SIZE = (320, 96)  # W x H: real KITTI frames at about a quarter size, so the tests stay fast


@pytest.fixture(scope="module")
def small_frames() -> list[np.ndarray]:
    return [cv2.resize(cv2.imread(str(p)), SIZE, interpolation=cv2.INTER_AREA) for p in KITTI]


@pytest.fixture()
def image_dir(tmp_path: Path, small_frames: list[np.ndarray]) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for path, bgr in zip(KITTI, small_frames):
        assert cv2.imwrite(str(folder / path.name), bgr)
    return folder


def run(tiny_model: Path, *args: str) -> int:
    return media.main([*args, "--model", str(tiny_model), "--device", "cpu", "--no-progress"])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_video_masks_equal_the_core_on_the_decoded_frames(
    tmp_path: Path, tiny_model: Path, small_frames: list[np.ndarray]
) -> None:
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, SIZE)
    for bgr in small_frames:
        writer.write(bgr)
    writer.release()
    out = tmp_path / "out"
    assert run(tiny_model, str(clip), "-o", str(out), "--video", "--masks") == 0
    assert sorted(p.name for p in out.iterdir()) == ["masks", "overlay.mp4"]
    capture = cv2.VideoCapture(str(clip))
    core = make_segmenter(model_path=tiny_model, device="cpu")
    for i in range(len(small_frames)):
        ok, decoded = capture.read()
        assert ok
        mask = cv2.imread(str(out / "masks" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask, core.segment(Frame(decoded, "bgr8")).mask)
        assert set(np.unique(mask)) <= {0, 255}
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(small_frames)
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    assert leftovers(tmp_path) == []


def test_folder_with_a_corrupt_image_is_skipped_and_listed(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    (image_dir / "uu_000099.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    assert (
        run(tiny_model, str(image_dir), "-o", str(out), "--masks", "--confidence", "--overlays")
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        f"skipped frame #5 (uu_000099): cannot read image {image_dir / 'uu_000099.png'}" in printed
    )
    assert "wrote" in printed and "5 frames" in printed
    # KITTI submission names
    assert sorted(p.name for p in (out / "confidence").iterdir()) == sorted(
        p.name.replace("_0", "_road_0", 1) for p in KITTI
    )
    assert len(list((out / "overlays").iterdir())) == len(list((out / "masks").iterdir())) == 5


def test_strict_stops_and_leaves_nothing(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    (image_dir / "um_000000.png").write_bytes(b"junk")
    out = tmp_path / "out"
    assert run(tiny_model, str(image_dir), "-o", str(out), "--strict") == 1
    assert (
        f"error: cannot read image {image_dir / 'um_000000.png'} (--strict)"
        in capsys.readouterr().err
    )
    assert not out.exists() and leftovers(tmp_path) == []


def test_glob_single_image_and_default_outputs(
    tmp_path: Path, tiny_model: Path, image_dir: Path
) -> None:
    out = tmp_path / "glob"
    assert run(tiny_model, str(image_dir / "umm_*.png"), "-o", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "masks", "overlays"]
    assert len(list((out / "masks").iterdir())) == 2
    single = tmp_path / "single"
    assert run(tiny_model, str(image_dir / "uu_000002.png"), "-o", str(single), "--masks") == 0
    assert [p.name for p in (single / "masks").iterdir()] == ["uu_000002.png"]


def test_an_existing_name_with_glob_characters_is_taken_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "br"
    folder.mkdir()
    for name in ("a[1].png", "a1.png"):
        (folder / name).write_bytes(b"")
    assert media.image_files(str(folder / "a[1].png")) is None  # a file: open_source reads it
    assert media.image_files(str(folder / "a[12].png")) == [folder / "a1.png"]  # a glob
    (tmp_path / "dir[x]").mkdir()
    (tmp_path / "dir[x]" / "f.png").write_bytes(b"")
    assert media.image_files(str(tmp_path / "dir[x]")) == [tmp_path / "dir[x]" / "f.png"]
    source = media.open_source(str(folder / "a[1].png"))
    assert source.total == 1 and next(source.frames).name == "a[1]"


def test_existing_output_needs_overwrite(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run(tiny_model, str(image_dir), "-o", str(out)) == 1
    assert (
        "refusing to overwrite existing output" in capsys.readouterr().err
        and (out / "keep.txt").is_file()
    )
    assert run(tiny_model, str(image_dir), "-o", str(out), "--overwrite", "--masks") == 0
    assert sorted(p.name for p in out.iterdir()) == ["masks"] and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "input not found: {}"),
        (
            lambda d: (d / "fake.mp4").write_bytes(b"not a video") and d / "fake.mp4",
            "cannot open video {}",
        ),
        (
            lambda d: (d / "empty").mkdir() or d / "empty",
            "no images (.png, .jpg, .jpeg, .ppm, .bmp, .webp, .tif, .tiff) in {}",
        ),
    ],
)
def test_bad_inputs_name_the_file(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture, make, message: str
) -> None:
    spec = make(tmp_path)
    assert run(tiny_model, str(spec), "-o", str(tmp_path / "out")) == 1
    assert message.format(spec) in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_failing_model_leaves_nothing(
    tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        media.main(
            [str(image_dir), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "none.pt")]
        )
        == 1
    )
    assert f"model file not found: {tmp_path / 'none.pt'}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def mjpeg_clip(path: Path, frames: list[np.ndarray]) -> Path:
    """An MJPEG AVI of ``frames`` (each a JPEG of its own, easy to spoil or count)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, SIZE)
    for bgr in frames:
        writer.write(bgr)
    writer.release()
    return path


def test_a_corrupt_frame_in_the_middle_of_a_video_is_listed(
    tmp_path: Path, tiny_model: Path, small_frames: list[np.ndarray], capsys: pytest.CaptureFixture
) -> None:
    """An MJPEG AVI whose third JPEG is wiped: frames 0, 1, 3, 4 segmented, frame 2 listed."""
    clip = mjpeg_clip(tmp_path / "clip.avi", small_frames)
    data = bytearray(clip.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == len(small_frames)
    data[starts[2] : starts[2] + 600] = bytes(600)
    clip.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert run(tiny_model, str(clip), "-o", str(out), "--masks") == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        f"{i:06d}.png" for i in (0, 1, 3, 4)
    ]
    assert (
        f"skipped frame #2 (000002): {clip} frame 2 could not be decoded"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "0", "1e30"])
def test_a_bad_fps_is_refused_naming_the_option(
    tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture, value: str
) -> None:
    """--fps inf hung in cv2.VideoWriter.write; the others were errors naming a .partial.mp4."""
    with pytest.raises(SystemExit) as info:
        media.get_args_parser().parse_args(
            [str(image_dir), "-o", str(tmp_path / "o"), "--fps", value]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"argument --fps: must be a finite number in [0.1, 1000] Hz, got {float(value)!r}" in err
    )


@pytest.mark.parametrize(
    "output, words",
    [
        ("/proc/x", "cannot write --output /proc/x: No such file or directory in /proc"),
        ("/sys/x", "cannot write --output /sys/x: Operation not permitted in /sys"),
        (".", "--output '.' must name a file or folder of its own"),
        ("", "--output '' must name a file or folder of its own"),
    ],
)
def test_outputs_are_checked_before_the_model_loads(
    tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture, output: str, words: str
) -> None:
    """The model named does not exist: the error is the output's, so it came first."""
    if output.startswith(("/proc", "/sys")) and not Path(output).parent.is_dir():
        pytest.skip(f"{Path(output).parent} is not mounted here")
    code = media.main(
        [str(image_dir), "-o", output, "--overwrite", "--model", str(tmp_path / "none.pt")]
    )
    err = capsys.readouterr().err
    assert code == 1 and f"error: {words}" in err and "Traceback" not in err


def test_an_output_below_a_file_is_named(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "afile").write_text("mine")
    assert run(tiny_model, str(image_dir), "-o", str(tmp_path / "afile" / "sub")) == 1
    assert f"{tmp_path / 'afile'} is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"


def test_overwrite_does_not_replace_the_folder_holding_the_input(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run(tiny_model, str(image_dir), "-o", str(tmp_path), "--overwrite") == 1
    assert "which holds the input" in capsys.readouterr().err
    assert len(list(image_dir.iterdir())) == len(KITTI)


def test_an_image_whose_header_claims_60000x60000_is_listed_not_decoded(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """A 74-byte PNG: cv2.imread raised CV_IO_MAX_IMAGE_PIXELS and ended the whole run."""
    bomb = image_dir / "uu_000098.png"
    bomb.write_bytes(png_claiming(60000, 60000))
    assert bomb.stat().st_size < 80
    out = tmp_path / "out"
    assert run(tiny_model, str(image_dir), "-o", str(out), "--masks") == 0
    printed = capsys.readouterr().out
    assert f"skipped frame #5 (uu_000098): cannot read image {bomb}" in printed
    assert len(list((out / "masks").iterdir())) == 5
    assert run(tiny_model, str(bomb), "-o", str(tmp_path / "alone"), "--masks") == 1
    err = capsys.readouterr().err
    assert f"could be segmented: cannot read image {bomb}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "name, write, reason",
    [
        ("empty.jpg", lambda p: p.write_bytes(b""), "cannot read image {} (0 bytes)"),
        (
            "dot.png",
            lambda p: cv2.imwrite(str(p), np.zeros((1, 1, 3), np.uint8)),
            "{}: image of 1x1 (HxW) is too small",
        ),
    ],
)
def test_a_single_image_that_fails_says_why(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture, name: str, write, reason: str
) -> None:
    path = tmp_path / name
    write(path)
    assert run(tiny_model, str(path), "-o", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert f"none of the frames of 1 images from {path} could be segmented: " in err
    assert reason.format(path) in err


def test_the_output_folder_has_the_usual_permissions(
    tmp_path: Path, tiny_model: Path, image_dir: Path
) -> None:
    old = os.umask(0o022)
    try:
        assert run(tiny_model, str(image_dir), "-o", str(tmp_path / "out"), "--masks") == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_overwrite_onto_a_file_leaves_nothing_behind(
    tmp_path: Path, tiny_model: Path, image_dir: Path
) -> None:
    (tmp_path / "afile").write_text("old")
    out = tmp_path / "afile"
    assert run(tiny_model, str(image_dir), "-o", str(out), "--overwrite", "--masks") == 0
    assert out.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "images"]


def test_leftovers_of_a_killed_run_go_at_start(
    tmp_path: Path, tiny_model: Path, image_dir: Path
) -> None:
    """Another output's temporaries, of a process that is gone, in the output's folder."""
    stale = tmp_path / ".other.999999999.abcd1234.partial"
    (stale / "masks").mkdir(parents=True)
    (stale / "masks" / "a.png").write_bytes(b"x" * 4096)
    assert run(tiny_model, str(image_dir), "-o", str(tmp_path / "out"), "--masks") == 0
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("claimed", [2, 40], ids=["fewer", "more"])
def test_a_video_is_read_to_its_end_whatever_its_header_says(
    tmp_path: Path, small_frames: list[np.ndarray], claimed: int
) -> None:
    """5 frames in an AVI whose headers (avih total frames, strh length) claim 2 or 40: all 5
    are read, and none listed as undecodable."""
    clip = mjpeg_clip(tmp_path / "clip.avi", small_frames)
    data = bytearray(clip.read_bytes())
    for chunk, offset in ((b"avih", 16), (b"strh", 32)):
        struct.pack_into("<I", data, data.index(chunk) + 8 + offset, claimed)
    clip.write_bytes(bytes(data))
    source = media.open_source(str(clip))
    assert source.total == claimed
    items = list(source.frames)
    assert [(i.index, i.bgr is not None) for i in items] == [(k, True) for k in range(5)]


def test_two_images_with_one_name_are_refused_before_any_work(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """frame.png and frame.jpg would both write masks/frame.png: refused, naming both."""
    twin = image_dir / f"{KITTI[0].stem}.jpg"
    assert cv2.imwrite(str(twin), cv2.imread(str(KITTI[0])))
    out = tmp_path / "out"
    assert run(tiny_model, str(image_dir), "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert f"{twin} and {image_dir / KITTI[0].name} would both be written as" in err  # sorted
    assert not out.exists()


def test_overwrite_onto_an_input_file_of_a_glob_or_folder_is_refused(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    victim = image_dir / KITTI[1].name
    before = victim.read_bytes()
    for spec in (str(image_dir / "*.png"), str(image_dir)):
        assert run(tiny_model, spec, "-o", str(victim), "--overwrite", "--masks") == 1
        assert f"--overwrite would replace {victim}, which holds the input {victim}" in (
            capsys.readouterr().err
        )
        assert victim.is_file() and victim.read_bytes() == before


def test_the_contact_sheet_takes_the_next_good_frame_for_an_unreadable_one(
    tmp_path: Path, tiny_model: Path, small_frames: list[np.ndarray]
) -> None:
    """30 images, only #2, #7, #12, #17, #22 and #27 readable: the sheet's tiles
    (linspace(0, 29, 24) rounded: 0, 1, 3, 4, 5, 6, 8, ...) fall to them, one tile each."""
    folder = tmp_path / "sheet"
    folder.mkdir()
    good = {2, 7, 12, 17, 22, 27}
    for i in range(30):
        path = folder / f"f{i:02d}.png"
        if i in good:
            assert cv2.imwrite(str(path), small_frames[i % len(small_frames)])
        else:
            path.write_bytes(b"")
    out = tmp_path / "out"
    assert run(tiny_model, str(folder), "-o", str(out), "--contact-sheet") == 0
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    cell_h = 22 + round(SIZE[1] * 320 / SIZE[0])  # label band + a 320-wide thumbnail
    assert sheet.shape == (2 * cell_h, 4 * 320, 3)  # 6 tiles in rows of 4


@pytest.mark.parametrize(
    "spec, message",
    [
        ("99999999999999999999", "camera index 99999999999999999999 is out of range (0-9999)"),
        ("\u00b2", "input not found: \u00b2"),
    ],
)
def test_camera_indices_that_are_not_are_clear_errors(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, spec: str, message: str
) -> None:
    assert run(tiny_model, spec, "-o", str(tmp_path / "out")) == 1
    assert message in capsys.readouterr().err


def test_an_existing_file_named_like_a_camera_index_is_the_file(
    tmp_path: Path, small_frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    mjpeg_clip(tmp_path / "clip.avi", small_frames).rename(tmp_path / "7")
    source = media.open_source("7")
    assert source.description.startswith("video 7 (") and not source.live


@pytest.mark.parametrize("suffix", [".bmp", ".webp", ".tif"])
def test_other_image_formats_are_images_not_videos(
    tmp_path: Path, small_frames: list[np.ndarray], suffix: str
) -> None:
    path = tmp_path / f"picture{suffix}"
    assert cv2.imwrite(str(path), small_frames[0])
    source = media.open_source(str(path))
    assert source.still and source.total == 1
    assert next(source.frames).bgr.shape == small_frames[0].shape


def test_overwrite_refuses_an_input_reached_through_a_symlinked_folder(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """'link -> images', then '-o images --overwrite' deleted every input image."""
    (tmp_path / "link").symlink_to(image_dir)
    assert run(tiny_model, str(tmp_path / "link"), "-o", str(image_dir), "--overwrite") == 1
    assert "which holds the input" in capsys.readouterr().err
    assert sorted(p.name for p in image_dir.iterdir()) == [p.name for p in KITTI]


def test_two_images_with_one_confidence_name_are_refused(
    tmp_path: Path, tiny_model: Path, image_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """um_000005.png and um_road_000005.png both became confidence/um_road_000005.png: one of
    the two maps was silently lost."""
    (image_dir / "um_road_000005.png").write_bytes((image_dir / "uu_000002.png").read_bytes())
    assert run(tiny_model, str(image_dir), "-o", str(tmp_path / "out"), "--confidence") == 1
    err = capsys.readouterr().err
    assert "um_000005.png and " in err and "both be written as um_road_000005.png" in err
    assert not (tmp_path / "out").exists()
