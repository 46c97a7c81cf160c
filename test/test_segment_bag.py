"""segment_bag (``fcn_road_seg/segment_bag.py``) on bags of real KITTI frames (downscaled copies).

Checked value by value against the per-frame core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer

from fcn_road_seg.tools import bags, exports, segment_bag
from fcn_road_seg import geometry, image
from fcn_road_seg import segmenter as segmenter_module
from fcn_road_seg.backends import load_backend
from fcn_road_seg.errors import DataError, OptionError
from fcn_road_seg.grid import Camera, GridSpec, GroundGrid
from fcn_road_seg.image import Frame
from fcn_road_seg.tools.kitti import CameraModel
from fcn_road_seg.segmenter import Segmenter

from conftest import (
    AGREEMENT,
    CONVERTED,
    MONO_AGREEMENT,
    ROAD_NAMES,
    encoded_image,
    kitti_frame,
    leftovers,
    read_bag,
    rosbags_image,
    video_frames,
)

SEG_TOPICS = ["/road_seg/mask", "/road_seg/confidence", "/road_seg/overlay"]


@pytest.fixture(scope="module")
def segmented(converted: dict[str, Any], segmenter: Segmenter) -> dict[str, Any]:
    """segment_bag's summary for the converted bag, with every export."""
    out = converted["bag"].parent
    return segment_bag.segment_bag(
        converted["bag"],
        out / "seg",
        segmenter,
        video=out / "o.mp4",
        frames_dir=out / "frames",
        sheet=out / "sheet.png",
        progress=False,
    )


def test_segment_bag_copies_input_unchanged(
    converted: dict[str, Any], segmented: dict[str, Any]
) -> None:
    before, after = read_bag(converted["bag"]), read_bag(segmented["output"])
    assert sorted(after) == sorted([*before, *SEG_TOPICS])
    for topic, messages in before.items():
        assert [(s, raw) for s, raw, _ in after[topic]] == [(s, raw) for s, raw, _ in messages]
    assert segmented["frames"] == 3 and segmented["copied"] == 6 and segmented["skipped"] == []
    assert segmented["fps"] > 0 and segmented["core_ms"] > 0


def test_segment_bag_outputs_equal_the_core(
    segmented: dict[str, Any], tiny_model: Path, road_dir: Path
) -> None:
    # a fresh core on the same checkpoint
    core = Segmenter(load_backend(tiny_model, "torch", "cpu"))
    topics = read_bag(segmented["output"])
    for i, name in enumerate(ROAD_NAMES):
        stamp, _, img = topics[bags.IMAGE_TOPIC][i]
        want = core.segment(Frame(cv2.imread(str(road_dir / "image_2" / name)), "bgr8"))
        for topic, array, encoding in zip(
            SEG_TOPICS, (want.mask, want.confidence, want.overlay), ("mono8", "mono8", "bgr8")
        ):
            out_stamp, _, msg = topics[topic][i]
            assert out_stamp == stamp and msg.header == img.header and msg.encoding == encoding
            np.testing.assert_array_equal(msg.data.reshape(array.shape), array)
    # the tiny model's maps are not constant
    assert 0 < np.count_nonzero(want.mask) < want.mask.size


def test_segment_bag_exports(segmented: dict[str, Any], converted: dict[str, Any]) -> None:
    outputs = segmented["outputs"]
    assert video_frames(outputs["video"]) == 3
    overlays = [msg for _, _, msg in read_bag(segmented["output"])["/road_seg/overlay"]]
    for i, (path, stamp, msg) in enumerate(
        zip(sorted(outputs["frames_dir"].iterdir()), converted["stamps_ns"], overlays, strict=True)
    ):
        assert path.name == f"{i:06d}_{stamp}.png"
        np.testing.assert_array_equal(
            cv2.imread(str(path)), msg.data.reshape(msg.height, msg.width, 3)
        )
    sheet = cv2.imread(str(outputs["contact_sheet"]))
    thumb_height = round(overlays[0].height * exports.THUMB_WIDTH / overlays[0].width)
    assert sheet.shape == (22 + thumb_height, 3 * exports.THUMB_WIDTH, 3)
    assert leftovers(segmented["output"].parent) == []


def test_corrupt_bag_is_named_and_leaves_no_output(
    converted: dict[str, Any], segmenter: Segmenter, tmp_path: Path
) -> None:
    bag = tmp_path / "truncated"
    bag.mkdir()
    for item in converted["bag"].iterdir():
        data = item.read_bytes()
        (bag / item.name).write_bytes(data[: len(data) // 2] if item.suffix == ".db3" else data)
    with pytest.raises(DataError, match=f"cannot read bag {bag}"):
        segment_bag.segment_bag(
            bag, tmp_path / "seg", segmenter, video=tmp_path / "o.mp4", progress=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated"]


def write_bag(path: Path, messages: list[tuple[str, str, int, Any]]) -> None:
    """A bag with ``(topic, msgtype, stamp, message)`` entries, written with rosbags directly."""
    ts = bags.typestore()
    with Writer(path, version=8) as writer:
        conns: dict[str, Any] = {}
        for topic, msgtype, stamp, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], stamp, ts.serialize_cdr(msg, msgtype))


def test_compressed_images_other_topics_and_skipped_frames(
    road_dir: Path, segmenter: Segmenter, tmp_path: Path
) -> None:
    types = bags.typestore().types
    compressed, string = types[bags.COMPRESSED], types["std_msgs/msg/String"]
    png = cv2.imread(str(road_dir / "image_2" / ROAD_NAMES[0]))
    good = np.frombuffer(cv2.imencode(".png", png)[1].tobytes(), np.uint8)
    stamps = [10**18 + i * 10**8 for i in range(3)]
    write_bag(
        tmp_path / "in",
        [
            (
                "/cam/compressed",
                bags.COMPRESSED,
                stamps[0],
                compressed(header=bags.header(stamps[0] - 5), format="png", data=good),
            ),
            ("/chatter", "std_msgs/msg/String", stamps[0] + 1, string(data="hello")),
            (
                "/cam/compressed",
                bags.COMPRESSED,
                stamps[1],
                compressed(
                    header=bags.header(stamps[1]), format="jpeg", data=np.zeros(10, np.uint8)
                ),
            ),
            (
                "/cam/compressed",
                bags.COMPRESSED,
                stamps[2],
                compressed(header=bags.header(stamps[2]), format="png", data=good),
            ),
        ],
    )
    summary = segment_bag.segment_bag(
        tmp_path / "in",
        tmp_path / "out",
        segmenter,
        topic="/cam/compressed",
        namespace="seg/",
        progress=False,
    )
    assert summary["frames"] == 2 and summary["copied"] == 4
    assert summary["skipped"] == [
        {
            "index": 1,
            "stamp_ns": stamps[1],
            "reason": "cannot decode compressed image (format 'jpeg', 10 bytes): "
            "no JPEG/PNG header",
        }
    ]
    before, after = read_bag(tmp_path / "in"), read_bag(tmp_path / "out")
    assert after["/chatter"][0][:2] == before["/chatter"][0][:2]
    want = segmenter.segment(Frame(png, "bgr8"))
    overlays = after["/seg/overlay"]
    assert [s for s, _, _ in overlays] == [stamps[0], stamps[2]]
    assert (
        bags.header_ns(overlays[0][2].header) == stamps[0] - 5
        and overlays[0][2].encoding == "bgr8"
    )
    np.testing.assert_array_equal(
        after["/seg/mask"][1][2].data.reshape(want.mask.shape), want.mask
    )


def test_missing_image_topic_lists_the_image_topics(
    converted: dict[str, Any], segmenter: Segmenter, tmp_path: Path
) -> None:
    with pytest.raises(
        DataError,
        match=r"topic /nope is not in it; image topics in the bag: "
        r"/kitti/camera_color_left/image_raw \(sensor_msgs/msg/Image\)",
    ):
        segment_bag.segment_bag(
            converted["bag"], tmp_path / "seg", segmenter, topic="/nope", progress=False
        )


def test_segment_bag_command_line(
    converted: dict[str, Any],
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bag, seg = str(converted["bag"]), str(tmp_path / "seg")
    monkeypatch.setattr(segmenter_module, "default_model_path", lambda: tmp_path / "missing.pt")
    assert segment_bag.main([bag, seg, "--no-progress"]) == 1
    assert (
        f"error: the default model {tmp_path / 'missing.pt'} is not installed"
        in capsys.readouterr().err
    )
    assert (
        segment_bag.main(
            [
                bag,
                seg,
                "--model",
                str(tiny_model),
                "--device",
                "cpu",
                "--no-progress",
                "--contact-sheet",
                str(tmp_path / "sheet.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "3 frames segmented" in out
        and "FPS" in out
        and f"contact_sheet: {tmp_path / 'sheet.png'}" in out
    )
    with pytest.raises(SystemExit):
        segment_bag.main([bag, str(tmp_path / "x"), "--threshold", "2"])
    assert (
        "argument --threshold: must be a finite number in [0, 1], got 2" in capsys.readouterr().err
    )


def test_a_corrupt_message_is_skipped_and_listed_or_stops_with_strict(
    converted: dict[str, Any], segmenter: Segmenter, tmp_path: Path
) -> None:
    """A bag whose second image message holds truncated CDR bytes.

    Like an undecodable image, it is skipped.
    """
    from rosbags.rosbag2 import Writer

    store = bags.typestore()
    src = read_bag(converted["bag"])[bags.IMAGE_TOPIC]
    bag = tmp_path / "corrupt"
    with Writer(bag, version=bags.BAG_VERSION) as writer:
        conn = writer.add_connection(bags.IMAGE_TOPIC, bags.IMAGE, typestore=store)
        for i, (stamp, raw, _) in enumerate(src):
            writer.write(conn, stamp, raw[:40] if i == 1 else raw)
    summary = segment_bag.segment_bag(bag, tmp_path / "seg", segmenter, progress=False)
    assert summary["frames"] == len(src) - 1 and [s["index"] for s in summary["skipped"]] == [1]
    assert (
        f"bag {bag}: corrupt {bags.IMAGE} message at {src[1][0]} ns"
        in summary["skipped"][0]["reason"]
    )
    with Reader(tmp_path / "seg") as reader:  # the copy keeps the corrupt message as it was
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts[f"{bags.SEG_NAMESPACE}/mask"] == len(src) - 1 and counts[
        bags.IMAGE_TOPIC
    ] == len(src)
    with pytest.raises(DataError, match=r"frame #1 .* \(--strict\)"):
        segment_bag.segment_bag(bag, tmp_path / "strict", segmenter, progress=False, strict=True)
    assert not (tmp_path / "strict").exists() and leftovers(tmp_path) == []


def quarter_kitti_info(stamp_ns: int, fx: float) -> Any:
    """A rosbags CameraInfo of KITTI's camera 2 at a quarter of its size, focal length ``fx``."""
    p = np.array([[fx, 0, 152.4, 0], [0, fx, 43.2, 0], [0, 0, 1, 0]])
    model = CameraModel(k=p[:, :3].ravel(), r=np.eye(3).ravel(), p=p.ravel(), d=np.zeros(5))
    return bags.camera_info(bags.header(stamp_ns), model, 310, 93)


def test_segment_bag_grid_uses_each_frames_camera_info(
    road_dir: Path, segmenter: Segmenter, tmp_path: Path
) -> None:
    frame = cv2.imread(str(road_dir / "image_2" / ROAD_NAMES[0]))
    image_msg = lambda ns: bags.make_image(bags.header(ns), image.to_fields(frame, "bgr8"))  # noqa: E731
    # camera_info after its image at the same stamp (as kitti2bag writes them);
    # the third frame has none of its own
    write_bag(
        tmp_path / "in",
        [
            (bags.IMAGE_TOPIC, bags.IMAGE, 10, image_msg(10)),
            (bags.INFO_TOPIC, bags.CAMERA_INFO, 10, quarter_kitti_info(10, 180.0)),
            (bags.IMAGE_TOPIC, bags.IMAGE, 20, image_msg(20)),
            (bags.INFO_TOPIC, bags.CAMERA_INFO, 20, quarter_kitti_info(20, 150.0)),
            (bags.IMAGE_TOPIC, bags.IMAGE, 29, image_msg(29)),
        ],
    )
    core = GroundGrid(GridSpec(0.1))
    mount = geometry.camera_from_mount(1.65, 0.0, 0.0)
    grid = segment_bag.BagGrid(core, mount, "base_footprint", bags.INFO_TOPIC)
    summary = segment_bag.segment_bag(
        tmp_path / "in", tmp_path / "out", segmenter, progress=False, grid=grid
    )
    assert (summary["frames"], summary["grids"], summary["no_grid"]) == (3, 3, [])
    topics = read_bag(tmp_path / "out")
    grids, masks = topics["/road_seg/grid"], topics["/road_seg/mask"]
    assert [g[0] for g in grids] == [10, 20, 29]
    for (stamp, _, msg), (_, _, mask), fx in zip(grids, masks, (180.0, 150.0, 150.0)):
        assert (msg.header.stamp.nanosec, msg.header.frame_id) == (stamp, "base_footprint")
        assert (msg.info.width, msg.info.height, msg.info.origin.position.y) == (400, 200, -10.0)
        expected = GroundGrid(GridSpec(0.1))
        expected.update(Camera.from_info(quarter_kitti_info(0, fx)), mount)
        pixels = np.frombuffer(mask.data, np.uint8).reshape(93, 310)
        cells = expected.occupancy(pixels, pixels)
        np.testing.assert_array_equal(np.asarray(msg.data).reshape(200, 400), cells)
        assert (cells != -1).any()
    assert core.rebuilds == 2  # one per distinct camera_info, not per frame


def test_segment_bag_grid_needs_camera_info(
    converted: dict[str, Any], segmenter: Segmenter, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    grid = segment_bag.BagGrid(
        GroundGrid(GridSpec()), np.eye(4), "base_footprint", "/other/camera_info"
    )
    with pytest.raises(
        DataError,
        match="--grid needs sensor_msgs/CameraInfo on /other/camera_info; "
        f"camera_info topics in the bag: {bags.INFO_TOPIC}",
    ):
        segment_bag.segment_bag(
            converted["bag"], tmp_path / "out", segmenter, progress=False, grid=grid
        )
    assert not (tmp_path / "out").exists()


def test_segment_bag_grid_command_line(
    converted: dict[str, Any], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = [str(converted["bag"]), "--model", str(tiny_model), "--device", "cpu", "--no-progress"]
    grid = ["--grid", "--grid-resolution", "0.5"]
    assert segment_bag.main([base[0], str(tmp_path / "a"), *base[1:], *grid]) == 0
    assert "grid: 3 frames" in capsys.readouterr().out
    topics = read_bag(tmp_path / "a")
    assert len(topics["/road_seg/grid"]) == 3
    assert (
        topics["/road_seg/grid"][0][2].info.width,
        topics["/road_seg/grid"][0][2].info.height,
    ) == (80, 40)
    bad = [*grid, "--grid-x-range", "5", "1"]
    assert segment_bag.main([base[0], str(tmp_path / "b"), *base[1:], *bad]) == 1
    assert "error: --grid options: grid x range must be [min, max]" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_segment_bag_grid_lists_frames_it_cannot_project(
    road_dir: Path, segmenter: Segmenter, tmp_path: Path
) -> None:
    """camera_info of another image size: the frame is segmented, its grid listed as missing."""
    frame = cv2.resize(cv2.imread(str(road_dir / "image_2" / ROAD_NAMES[0])), (200, 60))
    msg = bags.make_image(bags.header(10), image.to_fields(frame, "bgr8"))
    write_bag(
        tmp_path / "in",
        [
            (bags.IMAGE_TOPIC, bags.IMAGE, 10, msg),
            (bags.INFO_TOPIC, bags.CAMERA_INFO, 10, quarter_kitti_info(10, 180.0)),
        ],
    )
    grid = segment_bag.BagGrid(
        GroundGrid(GridSpec(0.1)), np.eye(4), "base_footprint", bags.INFO_TOPIC
    )
    summary = segment_bag.segment_bag(
        tmp_path / "in", tmp_path / "out", segmenter, progress=False, grid=grid
    )
    assert (summary["frames"], summary["grids"]) == (1, 0)
    assert summary["no_grid"] == [
        {"index": 0, "stamp_ns": 10, "reason": "the frame is 200x60 but camera_info says 310x93"}
    ]
    assert "/road_seg/grid" not in read_bag(tmp_path / "out")


def test_every_camera_encoding_through_a_bag_gives_the_bgr8_mask(
    default_segmenter: Segmenter, tmp_path: Path
) -> None:
    """One real KITTI frame in every camera encoding on one topic (rows padded, 16-bit samples
    big-endian): segment_bag's masks agree with the bgr8 message's, and equal the core's for the
    same message; overlays of non-8-bit-colour input are bgr8."""
    bgr = kitti_frame("uu_000002.png")[:374]
    encodings = ["bgr8", *CONVERTED]
    msgs = [rosbags_image(bgr, "bgr8")] + [
        encoded_image(bgr, e, pad=3, bigendian=e.endswith("16")) for e in CONVERTED
    ]
    write_bag(
        tmp_path / "in",
        [(bags.IMAGE_TOPIC, bags.IMAGE, 10 + i, m) for i, m in enumerate(msgs)],
    )
    summary = segment_bag.segment_bag(
        tmp_path / "in", tmp_path / "out", default_segmenter, progress=False
    )
    assert (summary["frames"], summary["skipped"]) == (len(encodings), [])
    topics = read_bag(tmp_path / "out")
    masks = [np.asarray(m.data).reshape(374, 1242) for _, _, m in topics["/road_seg/mask"]]
    for encoding, msg, mask, (_, _, out) in zip(
        encodings, msgs, masks, topics["/road_seg/overlay"]
    ):
        agree = (mask == masks[0]).mean()
        assert agree >= (MONO_AGREEMENT if encoding == "mono16" else AGREEMENT), encoding
        assert out.encoding == "bgr8", encoding
        if encoding in ("bayer_rggb16", "nv21", "mono16"):
            core, _ = default_segmenter.process(msg, bags.make_image, ("mask",))
            np.testing.assert_array_equal(mask, core.mask)


def test_segment_bag_grid_follows_the_camera_info_distortion(
    road_dir: Path,
    segmenter: Segmenter,
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """A raw camera_info (plumb_bob, D != 0): the grid goes through its lens, or through P alone
    with --image-rectified; an unknown distortion model is named."""
    frame = cv2.imread(str(road_dir / "image_2" / ROAD_NAMES[0]))
    info = quarter_kitti_info(10, 180.0)
    info.d = np.array([-0.3, 0.1, 0.001, 0.002, 0.0])
    image_msg = bags.make_image(bags.header(10), image.to_fields(frame, "bgr8"))
    bag = [
        (bags.IMAGE_TOPIC, bags.IMAGE, 10, image_msg),
        (bags.INFO_TOPIC, bags.CAMERA_INFO, 10, info),
    ]
    write_bag(tmp_path / "in", bag)
    mount = geometry.camera_from_mount(1.65, 0.0, 0.0)
    grids = {}
    for rectified in (False, True):
        out = tmp_path / f"out{rectified}"
        core = GroundGrid(GridSpec(0.1))
        grid = segment_bag.BagGrid(core, mount, "base_footprint", bags.INFO_TOPIC, rectified)
        segment_bag.segment_bag(tmp_path / "in", out, segmenter, progress=False, grid=grid)
        topics = read_bag(out)
        mask = np.frombuffer(topics["/road_seg/mask"][0][2].data, np.uint8).reshape(93, 310)
        camera = Camera.from_info(info, rectified)
        assert (camera.lens is None) == rectified
        expected = GroundGrid(GridSpec(0.1))
        expected.update(camera, mount)
        grids[rectified] = np.asarray(topics["/road_seg/grid"][0][2].data).reshape(200, 400)
        np.testing.assert_array_equal(grids[rectified], expected.occupancy(mask, mask))
    assert (grids[False] != grids[True]).sum() > 100
    info.distortion_model = "kannala_brandt"
    write_bag(tmp_path / "bad", bag)
    args = [str(tmp_path / "bad"), str(tmp_path / "o"), "--model", str(tiny_model), "--grid"]
    args += ["--device", "cpu", "--no-progress"]
    assert segment_bag.main(args) == 1
    assert (
        f"no usable camera_info on {bags.INFO_TOPIC} (camera_info distortion model "
        "'kannala_brandt' is not supported" in capsys.readouterr().err
    )
    assert segment_bag.main([*args, "--image-rectified"]) == 0


def test_a_picture_beside_the_overlay_is_scaled_to_its_height() -> None:
    left = np.zeros((4, 6, 3), np.uint8)
    tall = np.zeros((8, 4, 3), np.uint8)
    tall[:, 2:] = 200  # right half bright
    both = exports.side_by_side(left, tall)
    assert both.shape == (4, 8, 3)  # 8x4 at height 4: 2 wide
    np.testing.assert_array_equal(both[:, :6], left)
    np.testing.assert_array_equal(both[:, 6:, 0], [[0, 200]] * 4)
    short = exports.side_by_side(np.zeros((6, 2, 3), np.uint8), np.full((2, 1, 3), 9, np.uint8))
    assert short.shape == (6, 5, 3) and (short[:, 2:] == 9).all()  # enlarged, nearest


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--video", "v.mp4", "--video-fps", "inf"], "argument --video-fps: must be a finite"),
        (["--video", "v.mp4", "--video-fps", "nan"], "argument --video-fps: must be a finite"),
        (["--grid", "--grid-resolution", "100"], "argument --grid-resolution: must be a finite"),
        (["--grid", "--grid-resolution", "1e-320"], "argument --grid-resolution: must be"),
        (["--grid", "--grid-x-range", "0", "inf"], "argument --grid-x-range: must be a finite"),
        (["--grid", "--grid-y-range", "-5000", "1"], "argument --grid-y-range: must be a finite"),
        (["--grid", "--camera-height", "0"], "argument --camera-height: must be a finite"),
        (["--grid", "--camera-height", "-1.65"], "argument --camera-height: must be a finite"),
        (["--grid", "--camera-height", "nan"], "argument --camera-height: must be a finite"),
        (["--grid", "--camera-pitch", "inf"], "argument --camera-pitch: must be a finite"),
        (["--grid", "--camera-roll", "x"], "argument --camera-roll: not a number: 'x'"),
        (["--workspace-gb", "inf"], "argument --workspace-gb: must be a finite"),
    ],
)
def test_bad_float_options_are_refused_naming_the_option(
    converted: dict[str, Any],
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    flags: list[str],
    words: str,
) -> None:
    """--video-fps inf hung the MP4 writer; --grid-resolution 100 gave a 0x0 grid and a cv2
    traceback per frame; --camera-height 0 an all-road grid written with exit 0."""
    flags = [str(tmp_path / f) if f.endswith(".mp4") else f for f in flags]
    args = [str(converted["bag"]), str(tmp_path / "seg"), "--model", str(tiny_model), *flags]
    with pytest.raises(SystemExit) as info:
        segment_bag.main([*args, "--no-progress"])
    assert info.value.code == 2 and words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_bad_video_rate_from_code_names_it_and_writes_nothing(
    converted: dict[str, Any], segmenter: Segmenter, tmp_path: Path
) -> None:
    with pytest.raises(OptionError, match="video fps must be a finite number .* got inf"):
        segment_bag.segment_bag(
            converted["bag"],
            tmp_path / "seg",
            segmenter,
            video=tmp_path / "v.mp4",
            fps=float("inf"),
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_outputs_are_checked_before_the_model_loads(
    converted: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The model does not exist: an error about the output proves it was checked first."""
    (tmp_path / "afile").write_text("")
    cases = [
        (str(tmp_path / "afile" / "seg"), f"{tmp_path / 'afile'} is a file, not a folder"),
        ("/proc/x", "cannot write output /proc/x: No such file or directory in /proc"),
    ]
    cases.append(
        (
            str(converted["bag"] / "seg"),
            f"output {converted['bag'] / 'seg'} is inside the input bag",
        )
    )
    for output, words in cases:
        assert segment_bag.main([str(converted["bag"]), output, "--model", "none.pt"]) == 1
        err = capsys.readouterr().err
        assert words in err and err.startswith("error: ") and "Traceback" not in err


def test_leftovers_of_a_killed_run_go_at_start(
    converted: dict[str, Any], tiny_model: Path, tmp_path: Path
) -> None:
    """A SIGKILLed segment_bag left its bag and video temporaries (about 131 MB in the issue)."""
    dead_bag = tmp_path / ".seg.999999999.abcd_123.partial"
    (dead_bag / "seg").mkdir(parents=True)
    (dead_bag / "seg" / "seg.db3").write_bytes(bytes(1 << 20))
    dead_video = tmp_path / ".o.mp4.999999999.zzzz.partial.mp4"
    dead_video.write_bytes(bytes(1 << 20))
    args = [str(converted["bag"]), str(tmp_path / "other"), "--model", str(tiny_model)]
    assert segment_bag.main([*args, "--device", "cpu", "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


@pytest.mark.parametrize(
    "flags",
    [
        ["--video", "v.mp4", "--contact-sheet", "v.mp4"],  # the sheet was silently lost
        ["--video", "x.mp4", "--frames-dir", "x.mp4"],  # traceback, the frames left behind
        ["--video", "seg/v.mp4"],  # inside the output bag: traceback, seg/v.mp4 left behind
    ],
)
def test_overlapping_outputs_are_refused_before_any_work(
    converted: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str]
) -> None:
    flags = [str(tmp_path / f) if "." in f else f for f in flags]
    args = [str(converted["bag"]), str(tmp_path / "seg"), "--model", "none.pt", *flags]
    assert segment_bag.main([*args, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: outputs ") and "overlap" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ns", ["", "/", "my seg!", "/2d", "a//b"])
def test_a_namespace_that_gives_no_ros_topic_names_is_refused(
    converted: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture, ns: str
) -> None:
    """--ns '' wrote //mask, --ns 'my seg!' wrote '/my seg!/mask': bags ROS cannot play."""
    args = [str(converted["bag"]), str(tmp_path / "seg"), "--model", "none.pt", f"--ns={ns}"]
    assert segment_bag.main([*args, "--no-progress"]) == 1
    assert f"error: --ns {ns!r} is not a ROS 2 namespace" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_input_bag_is_checked_before_the_model_loads(
    converted: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A missing bag was reported as 'model file not found'; a wrong topic after the load."""
    cases = [
        ([str(tmp_path / "none"), str(tmp_path / "seg")], "input bag not found"),
        ([str(converted["bag"]), str(tmp_path / "seg"), "--topic", "/x"], "topic /x is not in it"),
        (
            [str(converted["bag"]), str(tmp_path / "seg"), "--grid", "--camera-info-topic", "/c"],
            "--grid needs sensor_msgs/CameraInfo on /c",
        ),
    ]
    for args, words in cases:
        assert segment_bag.main([*args, "--model", "none.pt", "--no-progress"]) == 1
        assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
