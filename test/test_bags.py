"""kitti2bag and segment_bag on real KITTI frames (downscaled copies), checked value by value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer

from fcn_road_seg import bags, exports, geometry, image
from fcn_road_seg import segmenter as segmenter_module
from fcn_road_seg.backends import load_backend
from fcn_road_seg.errors import DataError
from fcn_road_seg.grid import Camera, GridSpec, GroundGrid
from fcn_road_seg.image import from_array
from fcn_road_seg.kitti import CameraModel, parse_stamp
from fcn_road_seg.segmenter import Segmenter

from conftest import video_frames

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "kitti" / "image_2"
NAMES = ["um_000005.png", "umm_000015.png", "uu_000002.png"]
SEG_TOPICS = ["/road_seg/mask", "/road_seg/confidence", "/road_seg/overlay"]


def p2_for(i: int) -> np.ndarray:
    """A distinct P2 per frame, like KITTI Road's per-frame calibration files."""
    return np.array([700.0 + i, 0, 600.5, 45.25, 0, 701.0 + i, 170.25, -0.5, 0, 0, 1, 0.003])


@pytest.fixture(scope="module")
def road_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KITTI Road folder with quarter-size copies of real frames and a calib file each."""
    root = tmp_path_factory.mktemp("kitti")
    (root / "image_2").mkdir()
    (root / "calib").mkdir()
    for i, name in enumerate(NAMES):
        pixels = cv2.imread(str(SAMPLES / name))
        small = cv2.resize(
            pixels, (pixels.shape[1] // 4, pixels.shape[0] // 4), interpolation=cv2.INTER_AREA
        )
        cv2.imwrite(str(root / "image_2" / name), small)
        (root / "calib" / name.replace(".png", ".txt")).write_text(
            "P0: "
            + " ".join(["0"] * 12)
            + "\nP2: "
            + " ".join(f"{v:.12e}" for v in p2_for(i))
            + "\n"
        )
    return root


@pytest.fixture(scope="module")
def converted(road_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """kitti2bag's summary for ``road_dir``."""
    out = tmp_path_factory.mktemp("bags") / "kitti"
    return bags.kitti2bag(
        road_dir,
        out,
        rate_hz=4.0,
        start_ns=parse_stamp("2011-09-26 13:02:25.964389445"),
        progress=False,
    )


@pytest.fixture(scope="module")
def segmenter(tiny_model: Path) -> Segmenter:
    return segmenter_module.make_segmenter(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def segmented(converted: dict[str, Any], segmenter: Segmenter) -> dict[str, Any]:
    """segment_bag's summary for the converted bag, with every export."""
    out = converted["bag"].parent
    return bags.segment_bag(
        converted["bag"],
        out / "seg",
        segmenter,
        video=out / "o.mp4",
        frames_dir=out / "frames",
        sheet=out / "sheet.png",
        progress=False,
    )


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes, Any]]]:
    """topic -> [(bag timestamp, raw bytes, message)] in order."""
    topics: dict[str, list[tuple[int, bytes, Any]]] = {}
    with Reader(path) as reader:
        for conn, stamp, raw in reader.messages():
            msg = bags.typestore().deserialize_cdr(raw, conn.msgtype)
            topics.setdefault(conn.topic, []).append((stamp, bytes(raw), msg))
    return topics


def leftovers(folder: Path) -> list[str]:
    """Temporary names an aborted atomic write would leave."""
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


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
    for (stamp, _, msg), want, name in zip(topics[bags.IMAGE_TOPIC], expected, NAMES, strict=True):
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
    core = Segmenter(
        load_backend(tiny_model, "torch", "cpu")
    )  # a fresh core on the same checkpoint
    topics = read_bag(segmented["output"])
    for i, name in enumerate(NAMES):
        stamp, _, img = topics[bags.IMAGE_TOPIC][i]
        want = core.segment(from_array(cv2.imread(str(road_dir / "image_2" / name)), "bgr8"))
        for topic, array, encoding in zip(
            SEG_TOPICS, (want.mask, want.confidence, want.overlay), ("mono8", "mono8", "bgr8")
        ):
            out_stamp, _, msg = topics[topic][i]
            assert out_stamp == stamp and msg.header == img.header and msg.encoding == encoding
            np.testing.assert_array_equal(msg.data.reshape(array.shape), array)
    assert (
        0 < np.count_nonzero(want.mask) < want.mask.size
    )  # the tiny model's maps are not constant


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


def test_outputs_are_never_overwritten(
    converted: dict[str, Any], road_dir: Path, segmenter: Segmenter, tmp_path: Path
) -> None:
    with pytest.raises(
        DataError, match=f"refusing to overwrite existing output: {converted['bag']}"
    ):
        bags.kitti2bag(road_dir, converted["bag"], progress=False)
    video = tmp_path / "taken.mp4"
    video.write_bytes(b"mine")
    with pytest.raises(DataError, match=f"refusing to overwrite existing output: {video}"):
        bags.segment_bag(
            converted["bag"], tmp_path / "seg", segmenter, video=video, progress=False
        )
    assert video.read_bytes() == b"mine" and not (tmp_path / "seg").exists()


def test_unreadable_frames_are_named(road_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "kitti"
    (src / "image_2").mkdir(parents=True)
    for name in NAMES:
        (src / "image_2" / name).write_bytes((road_dir / "image_2" / name).read_bytes())
    data = (src / "image_2" / NAMES[1]).read_bytes()
    (src / "image_2" / NAMES[1]).write_bytes(data[: len(data) // 2])  # truncated PNG
    with pytest.raises(
        DataError, match=rf"1 of 3 frames .*could not be read.*--skip-bad.*\n  .*{NAMES[1]}"
    ):
        bags.kitti2bag(src, tmp_path / "bag", progress=False)
    assert not (tmp_path / "bag").exists() and leftovers(tmp_path) == []
    summary = bags.kitti2bag(src, tmp_path / "bag", skip_bad=True, progress=False)
    assert (
        summary["frames"] == 2
        and len(summary["skipped"]) == 1
        and NAMES[1] in summary["skipped"][0]
    )
    assert len(read_bag(tmp_path / "bag")[bags.IMAGE_TOPIC]) == 2


def test_corrupt_bag_is_named_and_leaves_no_output(
    converted: dict[str, Any], segmenter: Segmenter, tmp_path: Path
) -> None:
    bag = tmp_path / "truncated"
    bag.mkdir()
    for item in converted["bag"].iterdir():
        data = item.read_bytes()
        (bag / item.name).write_bytes(data[: len(data) // 2] if item.suffix == ".db3" else data)
    with pytest.raises(DataError, match=f"cannot read bag {bag}"):
        bags.segment_bag(
            bag, tmp_path / "seg", segmenter, video=tmp_path / "o.mp4", progress=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated"]


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
        bags.segment_bag(
            converted["bag"],
            tmp_path / "seg",
            segmenter,
            video=tmp_path / "o.mp4",
            frames_dir=tmp_path / "frames",
            sheet=tmp_path / "s.png",
            progress=False,
        )
    real_messages = bags.frame_messages

    def interrupted(frame: Any, layout: str) -> Any:
        if frame.image.name == NAMES[2]:
            raise KeyboardInterrupt  # Ctrl-C on the last frame
        return real_messages(frame, layout)

    monkeypatch.setattr(bags, "frame_messages", interrupted)
    assert bags.kitti2bag_main([str(road_dir), str(tmp_path / "kitti"), "--no-progress"]) == 130
    assert list(tmp_path.iterdir()) == []


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
    png = cv2.imread(str(road_dir / "image_2" / NAMES[0]))
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
    summary = bags.segment_bag(
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
    want = segmenter.segment(from_array(png, "bgr8"))
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
        bags.segment_bag(
            converted["bag"], tmp_path / "seg", segmenter, topic="/nope", progress=False
        )


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
    summary = bags.kitti2bag(date, tmp_path / "bag", storage="mcap", progress=False)
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
        bags.kitti2bag(date, tmp_path / "bag2", rate_hz=5.0, progress=False)


def test_command_lines(
    road_dir: Path,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bag, seg = str(tmp_path / "bag"), str(tmp_path / "seg")
    assert bags.kitti2bag_main([str(road_dir), bag, "--limit", "2", "--no-progress"]) == 0
    assert "2 frames of the KITTI road layout" in capsys.readouterr().out
    assert bags.kitti2bag_main([str(road_dir), bag, "--no-progress"]) == 1
    assert f"error: refusing to overwrite existing output: {bag}" in capsys.readouterr().err
    monkeypatch.setattr(segmenter_module, "default_model_path", lambda: tmp_path / "missing.pt")
    assert bags.segment_bag_main([bag, seg, "--no-progress"]) == 1
    assert (
        f"error: the default model {tmp_path / 'missing.pt'} is not installed"
        in capsys.readouterr().err
    )
    assert (
        bags.segment_bag_main(
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
        "2 frames segmented" in out
        and "FPS" in out
        and f"contact_sheet: {tmp_path / 'sheet.png'}" in out
    )
    with pytest.raises(SystemExit):
        bags.segment_bag_main([bag, str(tmp_path / "x"), "--threshold", "2"])
    assert "threshold must be a number in [0, 1]" in capsys.readouterr().err


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
    summary = bags.segment_bag(bag, tmp_path / "seg", segmenter, progress=False)
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
        bags.segment_bag(bag, tmp_path / "strict", segmenter, progress=False, strict=True)
    assert not (tmp_path / "strict").exists() and leftovers(tmp_path) == []


def quarter_kitti_info(stamp_ns: int, fx: float) -> Any:
    """A rosbags CameraInfo of KITTI's camera 2 at a quarter of its size, focal length ``fx``."""
    p = np.array([[fx, 0, 152.4, 0], [0, fx, 43.2, 0], [0, 0, 1, 0]])
    model = CameraModel(k=p[:, :3].ravel(), r=np.eye(3).ravel(), p=p.ravel(), d=np.zeros(5))
    return bags.camera_info(bags.header(stamp_ns), model, 310, 93)


def test_segment_bag_grid_uses_each_frames_camera_info(
    road_dir: Path, segmenter: Segmenter, tmp_path: Path
) -> None:
    frame = cv2.imread(str(road_dir / "image_2" / NAMES[0]))
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
    grid = bags.BagGrid(core, mount, "base_footprint", bags.INFO_TOPIC)
    summary = bags.segment_bag(
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
    grid = bags.BagGrid(GroundGrid(GridSpec()), np.eye(4), "base_footprint", "/other/camera_info")
    with pytest.raises(
        DataError,
        match="--grid needs sensor_msgs/CameraInfo on /other/camera_info; "
        f"camera_info topics in the bag: {bags.INFO_TOPIC}",
    ):
        bags.segment_bag(converted["bag"], tmp_path / "out", segmenter, progress=False, grid=grid)
    assert not (tmp_path / "out").exists()


def test_segment_bag_grid_command_line(
    converted: dict[str, Any], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    base = [str(converted["bag"]), "--model", str(tiny_model), "--device", "cpu", "--no-progress"]
    grid = ["--grid", "--grid-resolution", "0.5"]
    assert bags.segment_bag_main([base[0], str(tmp_path / "a"), *base[1:], *grid]) == 0
    assert "grid: 3 frames" in capsys.readouterr().out
    topics = read_bag(tmp_path / "a")
    assert len(topics["/road_seg/grid"]) == 3
    assert (
        topics["/road_seg/grid"][0][2].info.width,
        topics["/road_seg/grid"][0][2].info.height,
    ) == (80, 40)
    bad = [*grid, "--grid-x-range", "5", "1"]
    assert bags.segment_bag_main([base[0], str(tmp_path / "b"), *base[1:], *bad]) == 1
    assert "error: --grid options: grid x range must be [min, max]" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
