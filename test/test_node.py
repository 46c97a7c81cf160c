"""node.py in-process on a real ROS 2 (skipped without rclpy).

Parameters, frames in and masks out, startup errors.
"""

from __future__ import annotations

import array
from pathlib import Path
from typing import Any, Callable

import pytest

rclpy = pytest.importorskip("rclpy")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fcn_road_seg import image  # noqa: E402
from fcn_road_seg.backends import load_backend  # noqa: E402
from fcn_road_seg.options import OPTIONS, defaults  # noqa: E402
from fcn_road_seg.ros.node import RoadSegNode, main, make_image  # noqa: E402
from fcn_road_seg.segmenter import Segmenter  # noqa: E402

from conftest import kitti_frame, spin_until  # noqa: E402

FRAME_ID = "camera_color_left"


@pytest.fixture(scope="module")
def context() -> Context:
    """An rclpy context of this module's own (main() uses the default one)."""
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture(scope="module")
def frame_bgr() -> np.ndarray:
    """A real KITTI Road frame at a quarter of its size (310x93, BGR)."""
    pixels = kitti_frame()
    return cv2.resize(
        pixels, (pixels.shape[1] // 4, pixels.shape[0] // 4), interpolation=cv2.INTER_AREA
    )


@pytest.fixture
def overrides(request: pytest.FixtureRequest, tiny_model: Path) -> list[Parameter]:
    """The node's parameters: the tiny model, CPU, no warm-up.

    Plus any parameters given by indirect parametrisation.
    """
    return [
        Parameter("model_path", value=str(tiny_model)),
        Parameter("device", value="cpu"),
        Parameter("warmup_size", value=[0, 0]),
        *getattr(request, "param", []),
    ]


@pytest.fixture
def seg_node(context: Context, overrides: list[Parameter]) -> RoadSegNode:
    """The node under test; destroyed after the test."""
    node = RoadSegNode(context=context, parameter_overrides=overrides)
    yield node
    node.destroy_node()


@pytest.fixture
def probe(context: Context) -> Node:
    """A plain node that publishes images and listens to the outputs."""
    node = rclpy.create_node("road_seg_probe", context=context)
    yield node
    node.destroy_node()


def image_msg(pixels: np.ndarray, encoding: str, sec: int, nanosec: int) -> Image:
    """An rclpy Image over ``pixels`` with the given stamp."""
    header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=FRAME_ID)
    return make_image(header, image.to_fields(pixels, encoding))


@pytest.fixture
def executor(context: Context, seg_node: RoadSegNode, probe: Node) -> SingleThreadedExecutor:
    """An executor spinning the node under test and the probe."""
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(seg_node)
    executor.add_node(probe)
    yield executor
    executor.shutdown()


def test_every_parameter_is_declared_with_a_descriptor(seg_node: RoadSegNode) -> None:
    for name in OPTIONS:
        descriptor = seg_node.describe_parameter(name)
        assert descriptor.description == OPTIONS[name].help, name
        assert descriptor.read_only == (
            name not in ("threshold", "overlay_alpha", "overlay_color")
        ), name
    threshold = seg_node.describe_parameter("threshold").floating_point_range[0]
    assert (threshold.from_value, threshold.to_value) == (0.0, 1.0)
    threads = seg_node.describe_parameter("cpu_threads").integer_range[0]
    assert (threads.from_value, threads.to_value, threads.step) == (0, 256, 1)
    assert (
        seg_node.describe_parameter("backend").additional_constraints
        == "one of: auto, tensorrt, torch, onnxruntime, openvino"
    )
    # QoS through rclpy's standard overrides, sensor-data defaults: best effort, keep last 5
    assert (
        seg_node.get_parameter("qos_overrides./image.subscription.reliability").value
        == "best_effort"
    )
    assert seg_node.get_parameter("qos_overrides./image.subscription.depth").value == 5
    assert (
        seg_node.get_parameter("qos_overrides./road_seg/mask.publisher.reliability").value
        == "reliable"
    )
    assert seg_node.describe_parameter("qos_overrides./image.subscription.depth").read_only


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("threshold", 1.5, None),  # out of the descriptor's range: rclpy's own reason
        ("overlay_alpha", -0.5, None),
        (
            "overlay_color",
            [0, 255],
            "overlay_color must be 3 integers, each in [0, 255], got [0, 255]",
        ),
        (
            "overlay_color",
            [0, 256, 0],
            "overlay_color must be 3 integers, each in [0, 255], got [0, 256, 0]",
        ),
        ("model_path", "/other.pt", "Trying to set a read-only parameter: model_path."),
        ("target_frame", "map", "Trying to set a read-only parameter: target_frame."),
    ],
)
def test_invalid_or_read_only_parameters_are_rejected(
    seg_node: RoadSegNode, name: str, value: Any, reason: str | None
) -> None:
    before = seg_node.get_parameter(name).value
    [result] = seg_node.set_parameters([Parameter(name, value=value)])
    assert not result.successful
    assert result.reason == reason if reason else result.reason
    assert seg_node.get_parameter(name).value == before


def test_a_rejected_set_changes_nothing(seg_node: RoadSegNode) -> None:
    result = seg_node.set_parameters_atomically(
        [Parameter("threshold", value=0.2), Parameter("overlay_color", value=[1, 2])]
    )
    assert not result.successful
    assert seg_node.get_parameter("threshold").value == 0.5


def test_frame_in_mask_out_with_the_header(
    executor: SingleThreadedExecutor, probe: Node, tiny_model: Path, frame_bgr: np.ndarray
) -> None:
    got: dict[str, Image] = {}
    for name in ("mask", "overlay"):
        probe.create_subscription(
            Image, f"road_seg/{name}", lambda m, n=name: got.setdefault(n, m), 10
        )
    publisher = probe.create_publisher(Image, "image", qos_profile_sensor_data)
    msg = image_msg(frame_bgr, "bgr8", 1_700_000_123, 456_789)
    assert spin_until(executor, lambda: len(got) == 2, 30.0, lambda: publisher.publish(msg))
    expected, _ = Segmenter(load_backend(tiny_model, "torch", "cpu")).process(msg, make_image)
    for name, out in got.items():
        assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (
            1_700_000_123,
            456_789,
            FRAME_ID,
        ), name
        assert (out.height, out.width) == (93, 310), name
    mask, overlay = got["mask"], got["overlay"]
    assert (mask.encoding, mask.step, len(mask.data)) == ("mono8", 310, 310 * 93)
    np.testing.assert_array_equal(
        np.frombuffer(mask.data, np.uint8).reshape(93, 310), expected.mask
    )
    assert (overlay.encoding, overlay.step) == ("bgr8", 310 * 3)
    np.testing.assert_array_equal(
        np.frombuffer(overlay.data, np.uint8).reshape(93, 310, 3), expected.overlay
    )


@pytest.mark.parametrize("overrides", [[Parameter("use_compressed", value=True)]], indirect=True)
def test_compressed_input(
    executor: SingleThreadedExecutor, probe: Node, tiny_model: Path, frame_bgr: np.ndarray
) -> None:
    masks: list[Image] = []
    probe.create_subscription(Image, "road_seg/mask", masks.append, 10)
    publisher = probe.create_publisher(
        CompressedImage, "image/compressed", qos_profile_sensor_data
    )
    msg = CompressedImage(
        header=Header(stamp=Time(sec=42, nanosec=7), frame_id=FRAME_ID),
        format="png",
        data=array.array("B", cv2.imencode(".png", frame_bgr)[1].tobytes()),
    )
    assert spin_until(executor, lambda: masks, 30.0, lambda: publisher.publish(msg))
    expected, _ = Segmenter(load_backend(tiny_model, "torch", "cpu")).process(
        image_msg(frame_bgr, "bgr8", 42, 7), make_image, ("mask",)
    )
    assert (
        masks[0].header.stamp.sec,
        masks[0].header.stamp.nanosec,
        masks[0].header.frame_id,
    ) == (42, 7, FRAME_ID)
    np.testing.assert_array_equal(
        np.frombuffer(masks[0].data, np.uint8).reshape(93, 310), expected.mask
    )


def test_run_time_threshold_changes_the_mask(
    executor: SingleThreadedExecutor, seg_node: RoadSegNode, probe: Node, frame_bgr: np.ndarray
) -> None:
    masks: list[Image] = []
    probe.create_subscription(Image, "road_seg/mask", masks.append, 10)
    publisher = probe.create_publisher(Image, "image", qos_profile_sensor_data)
    for i, (threshold, value) in enumerate([(0.0, 255), (1.0, 0)]):
        assert seg_node.set_parameters([Parameter("threshold", value=threshold)])[0].successful
        msg = image_msg(frame_bgr, "bgr8", 100 + i, 0)
        assert spin_until(
            executor,
            lambda: any(m.header.stamp.sec == 100 + i for m in masks),
            30.0,
            lambda: publisher.publish(msg),
        )
        mask = next(m for m in masks if m.header.stamp.sec == 100 + i)
        assert set(mask.data) == {value}


def listen(probe: Node) -> tuple[list[Image], list[DiagnosticArray], Any]:
    """Collect road_seg/mask and /diagnostics on ``probe``.

    Returns them and a publisher on ``image``.
    """
    masks: list[Image] = []
    diagnostics: list[DiagnosticArray] = []
    probe.create_subscription(Image, "road_seg/mask", masks.append, 10)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    return masks, diagnostics, probe.create_publisher(Image, "image", qos_profile_sensor_data)


def bad_counted(diagnostics: list[DiagnosticArray]) -> bool:
    """Some /diagnostics message counts a bad message."""
    return any(
        dict((v.key, v.value) for v in d.status[0].values).get("bad messages", "0") != "0"
        for d in diagnostics
    )


def test_a_bad_message_is_counted_and_the_node_keeps_working(
    executor: SingleThreadedExecutor, probe: Node, frame_bgr: np.ndarray
) -> None:
    masks, diagnostics, publisher = listen(probe)
    bad = image_msg(frame_bgr, "bgr8", 7, 0)
    bad.step += 1  # data no longer matches step * height
    good = image_msg(frame_bgr, "bgr8", 8, 0)
    assert spin_until(
        executor, lambda: bad_counted(diagnostics), 30.0, lambda: publisher.publish(bad)
    )
    assert spin_until(
        executor,
        lambda: any(m.header.stamp.sec == 8 for m in masks),
        30.0,
        lambda: publisher.publish(good),
    )
    assert not any(m.header.stamp.sec == 7 for m in masks)
    status = diagnostics[-1].status[0]
    assert status.name == "/road_segmentation"
    assert {
        "FPS",
        "latency median (ms)",
        "latency p99 (ms)",
        "dropped frames",
        "bad messages",
        "backend",
    } <= {v.key for v in status.values}


def test_auto_on_a_cpu_reports_its_measured_choice(
    context: Context, probe: Node, int8_checkpoint: Path, frame_bgr: np.ndarray
) -> None:
    """A checkpoint with an INT8 companion: every candidate's time in /diagnostics."""
    params = [
        Parameter("model_path", value=str(int8_checkpoint)),
        Parameter("device", value="cpu"),
        Parameter("warmup_size", value=[0, 0]),
    ]
    node = RoadSegNode(context=context, parameter_overrides=params)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    try:
        masks, diagnostics, publisher = listen(probe)
        msg = image_msg(frame_bgr, "bgr8", 9, 0)
        assert spin_until(
            executor, lambda: masks and diagnostics, 30.0, lambda: publisher.publish(msg)
        )
        values = dict((v.key, v.value) for v in diagnostics[-1].status[0].values)
        chosen = node._segmenter.backend.name
        assert values["backend selection"].startswith(f"auto chose {chosen}")
        for label in ("openvino int8", "onnxruntime int8", "torch "):
            assert label in values["backend selection"]
    finally:
        executor.shutdown()
        node.destroy_node()


@pytest.mark.parametrize("cpu,onnx,threads", [(0, 1, 1), (2, 1, 2), (0, 0, None)])
def test_cpu_threads_and_its_former_name_onnx_threads(
    int8_checkpoint: Path, cpu: int, onnx: int, threads: int | None
) -> None:
    pytest.importorskip("openvino")
    from fcn_road_seg.segmenter import segmenter_from_options

    params = defaults()
    params.update(model_path=str(int8_checkpoint), backend="openvino", device="cpu")
    params.update(cpu_threads=cpu, onnx_threads=onnx)
    backend = segmenter_from_options(params).backend
    assert backend.config.get("INFERENCE_NUM_THREADS") == threads


@pytest.mark.parametrize(
    "overrides",
    [[Parameter("network_size", value="64x160"), Parameter("max_pixels", value=320 * 93)]],
    indirect=True,
)
def test_network_size_and_max_pixels_parameters(
    executor: SingleThreadedExecutor, probe: Node, tiny_model: Path, frame_bgr: np.ndarray
) -> None:
    """The network runs at 64x160, results come back at 310x93, /diagnostics says so.

    A bigger frame is refused.
    """
    masks, diagnostics, publisher = listen(probe)
    msg = image_msg(frame_bgr, "bgr8", 5, 0)
    assert spin_until(
        executor, lambda: masks and diagnostics, 30.0, lambda: publisher.publish(msg)
    )
    expected, _ = Segmenter(
        load_backend(tiny_model, "torch", "cpu", network_size="64x160")
    ).process(msg, make_image)
    assert (masks[0].height, masks[0].width) == (93, 310)
    np.testing.assert_array_equal(
        np.frombuffer(masks[0].data, np.uint8).reshape(93, 310), expected.mask
    )
    assert (
        dict((v.key, v.value) for v in diagnostics[-1].status[0].values)["network size"]
        == "64x160 (93x310 -> 64x160)"  # the size asked for, and each frame size seen
    )
    big = image_msg(cv2.resize(frame_bgr, (640, 186)), "bgr8", 6, 0)
    assert spin_until(
        executor, lambda: bad_counted(diagnostics), 30.0, lambda: publisher.publish(big)
    )
    assert not any(m.header.stamp.sec == 6 for m in masks)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["-p", "model_path:=/nonexistent/model.pt"],
            "cannot start: model file not found: /nonexistent/model.pt",
        ),
        (
            ["-p", "qos_overrides./image.subscription.reliability:=sometimes"],
            "cannot start: parameter qos_overrides for topic 'image': "
            "Unexpected QoS override for policy `reliability`",
        ),
        (
            ["-p", "grid_occupancy:=fuzzy"],
            "cannot start: parameter grid_occupancy must be one of binary, scaled, got 'fuzzy'",
        ),
        (
            ["-p", "grid_x_range:=[40.0, 0.0]"],
            "cannot start: parameters grid_resolution, grid_x_range, grid_y_range: "
            "grid x range must be [min, max] with max > min",
        ),
        (
            ["-p", "overlay_color:=[1, 2]"],
            "cannot start: parameter overlay_color must be 3 integers, each in [0, 255], "
            "got [1, 2]",
        ),
        (
            ["-p", "warmup_size:=[5]"],
            "cannot start: parameter warmup_size must be 2 integers, each in [0, 8192], got [5]",
        ),
        (
            ["-p", "network_size:=huge"],
            "cannot start: parameter network_size is not auto, native or HxW",
        ),
        (
            ["-p", "precision:=fp16", "-p", "device:=cpu", "-p", "backend:=torch"],
            "precision 'fp16' needs CUDA",
        ),
        (["-p", "threshold:=2.0"], "out of range"),
        (
            ["-p", "grid_x_range:=[0.0, 5000.0]"],
            "cannot start: parameter grid_x_range must be 2 finite numbers, each in "
            "[-1000, 1000] m, got [0.0, 5000.0]",
        ),
    ],
)
def test_main_exits_non_zero_with_a_clear_message(
    tiny_model: Path, capfd: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    model = [] if "model_path" in args[1] else ["-p", f"model_path:={tiny_model}"]
    assert main(["road_seg_node", "--ros-args", *model, "-p", "warmup_size:=[0, 0]", *args]) == 1
    err = capfd.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_main_without_a_model_names_the_missing_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(
        "fcn_road_seg.segmenter.default_model_path", lambda: tmp_path / "default.pt"
    )
    assert main(["road_seg_node"]) == 1
    assert (
        f"cannot start: the default model {tmp_path / 'default.pt'} is not installed; "
        "pass a model file" in capfd.readouterr().err
    )


@pytest.mark.parametrize("name", ["camera_height", "grid_resolution", "camera_pitch"])
def test_main_refuses_a_nan_mount_or_grid_parameter(
    tiny_model: Path, capfd: pytest.CaptureFixture, name: str
) -> None:
    """NaN passes a range descriptor's comparisons in older rclpy: it gave an all-unknown grid.

    Refused either by rclpy's range (newer rclpy) or by the node's own check (the same bounds).
    """
    args = ["-p", f"model_path:={tiny_model}", "-p", "warmup_size:=[0, 0]", "-p", f"{name}:=nan"]
    assert main(["road_seg_node", "--ros-args", *args]) == 1
    err = capfd.readouterr().err
    assert f"parameter {name} must be a finite number" in err or (
        name in err and "out of range" in err
    )
    assert "Traceback" not in err


def test_a_model_warning_reaches_the_log_and_diagnostics(
    context: Context, probe: Node, tiny_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """An INT8 companion beside the checkpoint that its metadata does not vouch for: torch runs,
    one WARNING line in the node's log, and /diagnostics warns with the same line."""
    (tmp_path / "m.pt").write_bytes(tiny_model.read_bytes())
    (tmp_path / "m.int8.onnx").write_bytes(b"not a model")
    params = [
        Parameter("model_path", value=str(tmp_path / "m.pt")),
        Parameter("device", value="cpu"),
        Parameter("warmup_size", value=[0, 0]),
    ]
    node = RoadSegNode(context=context, parameter_overrides=params)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    try:
        warning = (
            f"INT8 companion {tmp_path / 'm.int8.onnx'} not used: it has no metadata "
            f"m.int8.onnx.json; running the checkpoint {tmp_path / 'm.pt'} with torch instead"
        )
        _, diagnostics, _ = listen(probe)
        assert spin_until(executor, lambda: diagnostics, 30.0)
        status = diagnostics[-1].status[0]
        assert status.level == DiagnosticStatus.WARN and warning in status.message
        assert ("warning", warning) in [(v.key, v.value) for v in status.values]
        assert capfd.readouterr().err.count(warning) == 1
    finally:
        executor.shutdown()
        node.destroy_node()


# --- road_seg/grid -------------------------------------------------------------------------------


def quarter_kitti_info(stamp_sec: int) -> Any:
    """An rclpy CameraInfo of KITTI's camera 2 (P2 of um_000000).

    Scaled to the quarter-size test frame.
    """
    from sensor_msgs.msg import CameraInfo

    p = np.array(
        [[721.5377 / 4, 0, 609.5593 / 4, 0], [0, 721.5377 / 4, 172.854 / 4, 0], [0, 0, 1, 0]]
    )
    return CameraInfo(
        header=Header(stamp=Time(sec=stamp_sec), frame_id=FRAME_ID),
        height=93,
        width=310,
        k=p[:, :3].ravel().tolist(),
        p=p.ravel().tolist(),
    )


def raw_kitti_info(stamp_sec: int) -> Any:
    """``quarter_kitti_info`` of a raw image: plumb_bob with a strong barrel distortion."""
    info = quarter_kitti_info(stamp_sec)
    info.distortion_model, info.d = "plumb_bob", [-0.3, 0.1, 0.001, 0.002, 0.0]
    return info


def expected_grid(
    tiny_model: Path, msg: Image, info: Any = None, rectified: bool = False
) -> np.ndarray:
    """The grid core's cells for ``msg`` with the node's default grid parameters.

    1.65 m high, level; ``info`` (default ``quarter_kitti_info``) read as a raw image unless
    ``rectified``.
    """
    from fcn_road_seg import geometry
    from fcn_road_seg.grid import Camera, GroundGrid, GridSpec

    result, _ = Segmenter(load_backend(tiny_model, "torch", "cpu")).process(
        msg, make_image, ["mask"]
    )
    grid = GroundGrid(GridSpec())
    grid.update(
        Camera.from_info(info or quarter_kitti_info(0), rectified),
        geometry.camera_from_mount(1.65, 0.0, 0.0),
    )
    return grid.occupancy(result.mask, result.confidence)


def grid_round_trip(
    executor: SingleThreadedExecutor,
    probe: Node,
    frame_bgr: np.ndarray,
    info: Callable[[int], Any] = quarter_kitti_info,
) -> tuple[Any, Image]:
    """Publish camera_info (``info``) and a frame until road_seg/grid arrives; returns (grid,
    frame)."""
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import CameraInfo

    grids: list[OccupancyGrid] = []
    probe.create_subscription(OccupancyGrid, "road_seg/grid", grids.append, 10)
    infos = probe.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    images = probe.create_publisher(Image, "image", qos_profile_sensor_data)
    msg = image_msg(frame_bgr, "bgr8", 21, 500)

    def publish() -> None:
        infos.publish(info(21))
        images.publish(msg)

    assert spin_until(executor, lambda: grids, 30.0, publish)
    return grids[0], msg


def test_grid_arrives_with_the_input_stamp_in_target_frame(
    executor: SingleThreadedExecutor, probe: Node, tiny_model: Path, frame_bgr: np.ndarray
) -> None:
    grid, msg = grid_round_trip(executor, probe, frame_bgr)
    assert (grid.header.stamp.sec, grid.header.stamp.nanosec) == (21, 500)
    assert grid.header.frame_id == "base_footprint"
    assert (grid.info.width, grid.info.height, grid.info.resolution) == (
        800,
        400,
        pytest.approx(0.05),
    )
    assert (grid.info.origin.position.x, grid.info.origin.position.y) == (0.0, -10.0)
    cells = np.array(grid.data, np.int8).reshape(400, 800)
    np.testing.assert_array_equal(cells, expected_grid(tiny_model, msg))
    assert {-1, 0, 100} >= set(np.unique(cells)) and (cells == -1).any() and (cells != -1).any()


@pytest.mark.parametrize(
    "overrides", [[], [Parameter("image_rectified", value=True)]], indirect=True
)
def test_the_grid_of_a_raw_camera_follows_its_distortion(
    executor: SingleThreadedExecutor,
    probe: Node,
    tiny_model: Path,
    frame_bgr: np.ndarray,
    overrides: list[Parameter],
) -> None:
    """camera_info with D: through the lens, unless image_rectified says the image is not raw."""
    rectified = any(p.name == "image_rectified" for p in overrides)
    grid, msg = grid_round_trip(executor, probe, frame_bgr, raw_kitti_info)
    cells = np.array(grid.data, np.int8).reshape(400, 800)
    np.testing.assert_array_equal(
        cells, expected_grid(tiny_model, msg, raw_kitti_info(0), rectified)
    )
    other = expected_grid(tiny_model, msg, raw_kitti_info(0), not rectified)
    assert (cells != other).any()


@pytest.mark.parametrize(
    "overrides",
    [[Parameter("grid_use_tf", value=True), Parameter("camera_height", value=9.0)]],
    indirect=True,
)
def test_grid_pose_from_tf2(
    executor: SingleThreadedExecutor, probe: Node, tiny_model: Path, frame_bgr: np.ndarray
) -> None:
    """With grid_use_tf the pose comes from tf (camera_height is ignored).

    A static 1.65 m level mount.
    """
    from geometry_msgs.msg import TransformStamped
    from tf2_ros import StaticTransformBroadcaster

    mount = TransformStamped()
    mount.header.frame_id, mount.child_frame_id = "base_footprint", FRAME_ID
    mount.transform.translation.z = 1.65
    # optical frame (z forward, x right, y down) in base_footprint:
    # quaternion (-0.5, 0.5, -0.5, 0.5)
    mount.transform.rotation.x, mount.transform.rotation.y = -0.5, 0.5
    mount.transform.rotation.z, mount.transform.rotation.w = -0.5, 0.5
    broadcaster = StaticTransformBroadcaster(probe)
    broadcaster.sendTransform(mount)
    grid, msg = grid_round_trip(executor, probe, frame_bgr)
    cells = np.array(grid.data, np.int8).reshape(400, 800)
    np.testing.assert_array_equal(cells, expected_grid(tiny_model, msg))


# --- lifecycle -----------------------------------------------------------------------------------


def test_lifecycle_publishes_only_while_active(
    context: Context, overrides: list[Parameter], probe: Node, frame_bgr: np.ndarray
) -> None:
    from lifecycle_msgs.msg import State

    from fcn_road_seg.ros.lifecycle_node import RoadSegLifecycleNode

    node = RoadSegLifecycleNode(context=context, parameter_overrides=overrides)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    try:
        masks, _, publisher = listen(probe)
        msg = image_msg(frame_bgr, "bgr8", 30, 0)
        assert node._segmenter is None  # nothing loaded before configure
        node.trigger_configure()
        assert (
            node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE
            and node._segmenter is not None
        )
        spin_until(executor, lambda: False, 2.0, lambda: publisher.publish(msg))
        # inactive: not even subscribed
        assert not masks and publisher.get_subscription_count() == 0
        node.trigger_activate()
        assert spin_until(executor, lambda: masks, 30.0, lambda: publisher.publish(msg))
        node.trigger_deactivate()
        spin_until(executor, lambda: False, 0.5)
        count = len(masks)
        spin_until(executor, lambda: False, 2.0, lambda: publisher.publish(msg))
        assert len(masks) == count and publisher.get_subscription_count() == 0
        node.trigger_activate()  # the model was kept: straight back to work
        assert spin_until(
            executor, lambda: len(masks) > count, 30.0, lambda: publisher.publish(msg)
        )
        node.trigger_deactivate()
        node.trigger_cleanup()
        assert node._segmenter is None
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        executor.shutdown()
        node.destroy_node()


def test_lifecycle_configure_fails_cleanly_on_a_bad_model(
    context: Context, overrides: list[Parameter], tmp_path: Path
) -> None:
    from lifecycle_msgs.msg import State

    from fcn_road_seg.ros.lifecycle_node import RoadSegLifecycleNode

    bad = [p for p in overrides if p.name != "model_path"] + [
        Parameter("model_path", value=str(tmp_path / "x.pt"))
    ]
    node = RoadSegLifecycleNode(context=context, parameter_overrides=bad)
    try:
        node.trigger_configure()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        node.destroy_node()


def test_lifecycle_refuses_an_out_of_range_parameter_before_configure(
    context: Context, overrides: list[Parameter]
) -> None:
    """Every parameter is checked when the node is made, before any model could load."""
    from fcn_road_seg.ros.lifecycle_node import RoadSegLifecycleNode

    bad = Parameter("grid_x_range", value=[0.0, 5000.0])
    with pytest.raises(ValueError, match=r"parameter grid_x_range must be 2 finite numbers"):
        RoadSegLifecycleNode(context=context, parameter_overrides=[*overrides, bad])


@pytest.mark.parametrize("bad", [[Parameter("grid_x_range", value=[40.0, 0.0])]])
def test_lifecycle_configure_is_all_or_nothing_and_shutdown_always_works(
    context: Context, overrides: list[Parameter], bad: list[Parameter]
) -> None:
    """A grid that is no grid (max < min): before, the model was loaded and warmed up first and
    kept in the unconfigured state; shutdown then raised AttributeError on publishers never
    made."""
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn

    from fcn_road_seg.ros.lifecycle_node import RoadSegLifecycleNode

    node = RoadSegLifecycleNode(context=context, parameter_overrides=[*overrides, *bad])
    try:
        node.trigger_configure()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert node._segmenter is None and node._outputs == {}
        assert node.on_shutdown(None) == TransitionCallbackReturn.SUCCESS
        assert node.on_shutdown(None) == TransitionCallbackReturn.SUCCESS  # idempotent
    finally:
        node.destroy_node()


def test_lifecycle_configure_with_a_bad_qos_override_fails_cleanly(
    context: Context, overrides: list[Parameter], capfd: pytest.CaptureFixture
) -> None:
    """The publishers' QoS override raised outside the try: error processing, not FAILURE."""
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn

    from fcn_road_seg.ros.lifecycle_node import RoadSegLifecycleNode

    bad = Parameter("qos_overrides./road_seg/confidence.publisher.reliability", value="sometimes")
    node = RoadSegLifecycleNode(context=context, parameter_overrides=[*overrides, bad])
    try:
        assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
        assert node._segmenter is None and node._outputs == {} and node._grid_pub is None
        err = capfd.readouterr().err
        assert "cannot configure: parameter qos_overrides for topic 'road_seg/confidence'" in err
        node.trigger_configure()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        node.destroy_node()


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each backend closed, in order (``Backend.close`` still runs)."""
    from fcn_road_seg.backends.base import Backend

    calls: list[str] = []
    close = Backend.close

    def recording(self: Backend) -> None:
        calls.append(self.name)
        close(self)

    monkeypatch.setattr(Backend, "close", recording)
    return calls


def test_lifecycle_failure_after_the_model_loaded_closes_it_once(
    context: Context, overrides: list[Parameter], closed: list[str]
) -> None:
    """The publishers' QoS override fails after the model loaded: the model is
    closed (its memory freed), and shutdown and cleanup after the failed configure do nothing
    more, however often they come."""
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn

    from fcn_road_seg.ros.lifecycle_node import RoadSegLifecycleNode

    bad = Parameter("qos_overrides./road_seg/mask.publisher.reliability", value="sometimes")
    node = RoadSegLifecycleNode(context=context, parameter_overrides=[*overrides, bad])
    try:
        assert closed == []
        node.trigger_configure()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert closed == ["torch"] and node._segmenter is None and node._outputs == {}
        assert node.on_shutdown(None) == TransitionCallbackReturn.SUCCESS
        assert node.on_cleanup(None) == TransitionCallbackReturn.SUCCESS
        assert closed == ["torch"]
    finally:
        node.destroy_node()
    assert closed == ["torch"]


def test_lifecycle_cleanup_closes_the_model_and_shutdown_after_it_is_harmless(
    context: Context, overrides: list[Parameter], closed: list[str]
) -> None:
    from lifecycle_msgs.msg import State

    from fcn_road_seg.ros.lifecycle_node import RoadSegLifecycleNode

    node = RoadSegLifecycleNode(context=context, parameter_overrides=overrides)
    try:
        node.trigger_configure()
        node.trigger_activate()
        node.trigger_deactivate()
        node.trigger_cleanup()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert closed == ["torch"] and node._segmenter is None and node._worker is None
        node.trigger_shutdown()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_FINALIZED
    finally:
        node.destroy_node()
    assert closed == ["torch"]


def test_the_plain_node_closes_its_model_when_a_qos_override_fails(
    context: Context, overrides: list[Parameter], closed: list[str]
) -> None:
    """Construction fails after the model loaded (a subscription's QoS override): the model is
    closed before the error reaches the caller."""
    bad = Parameter("qos_overrides./image.subscription.reliability", value="sometimes")
    with pytest.raises(ValueError, match="parameter qos_overrides for topic 'image'"):
        RoadSegNode(context=context, parameter_overrides=[*overrides, bad])
    assert closed == ["torch"]
