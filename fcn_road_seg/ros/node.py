"""The ROS 2 node: a thin rclpy adapter around the per-frame core (rclpy only here and in
``lifecycle_node.py``).

    image --(subscription callback)--> Latest slot --(worker thread)--> Segmenter.process
        --> publishers
    camera_info (+ tf2 or a mounting pose) --> GroundGrid --> road_seg/grid

The callback only stores the newest message, so a slow model drops frames instead of queueing
them; the confidence, overlay and grid are computed only while someone subscribes to them.
``RoadSeg`` holds everything both the plain node and the lifecycle node do; they differ only in
when they call it.
"""

from __future__ import annotations

import array
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion
from nav_msgs.msg import MapMetaData, OccupancyGrid
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import InvalidQosOverridesError, QoSOverridingOptions
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from .. import geometry
from ..backends import BACKENDS, RESIZE_POLICIES, BackendOptions
from ..bounds import CAMERA_ANGLE, CAMERA_HEIGHT, GRID_RESOLUTION, WORKSPACE_GB, Bounds
from ..errors import ImageError, OptionError, RoadSegError
from ..grid import (
    TARGET_FRAME,
    MOUNT,
    OCCUPANCY_MODES,
    Camera,
    GridSpec,
    GroundGrid,
    grid_spec,
    mount,
)
from ..image import MAX_PIXELS, MIN_SIDE
from ..latest import Latest
from ..segmenter import Segmenter, check_setting, make_segmenter
from ..stats import Stats, health
from ..throttle import ReasonThrottle

NODE_NAME = "road_segmentation"
RUNTIME = ("threshold", "overlay_alpha", "overlay_color")
CHOICES = {
    "backend": BACKENDS,
    "resize_policy": RESIZE_POLICIES,
    "trt_rebuild": ("never", "if-stale"),
    "grid_occupancy": OCCUPANCY_MODES,
}
LOG_PERIOD_S = 5.0
OUTPUT_DEPTH = 5
_UNIT = {"floating_point_range": [FloatingPointRange(from_value=0.0, to_value=1.0, step=0.0)]}
_GRID = GridSpec()


def _range(bounds: Bounds) -> dict[str, list[FloatingPointRange]]:
    """The descriptor range of a double parameter checked by ``bounds``."""
    return {
        "floating_point_range": [
            FloatingPointRange(from_value=bounds.low, to_value=bounds.high, step=0.0)
        ]
    }


_ANGLE = _range(CAMERA_ANGLE)
#: double parameters and their bounds, also checked at startup (a range descriptor lets NaN in)
BOUNDED = {
    "trt_workspace_gb": WORKSPACE_GB,
    "camera_height": CAMERA_HEIGHT,
    "camera_pitch": CAMERA_ANGLE,
    "camera_roll": CAMERA_ANGLE,
    "grid_resolution": GRID_RESOLUTION,
}

#: name -> (default, description, extra ParameterDescriptor fields); all but RUNTIME are read-only
PARAMETERS: dict[str, tuple[Any, str, dict]] = {
    "model_path": (
        "",
        "Model file: .pt checkpoint, .onnx or TensorRT .engine; '' = the model shipped "
        "in the package",
        {},
    ),
    "backend": (
        "auto",
        "Inference backend: auto | tensorrt | torch | onnxruntime | openvino (auto: TensorRT for "
        ".onnx on a GPU; on a CPU the fastest of OpenVINO, ONNX Runtime and torch, measured)",
        {},
    ),
    "device": ("auto", "torch device: auto (CUDA when available) | cpu | cuda | cuda:N", {}),
    "network_size": (
        "auto",
        "Size the network runs at: auto (the model's working size, from its file) | "
        "native (each frame's own size) | HxW, e.g. 188x624",
        {},
    ),
    "resize_policy": (
        "letterbox",
        "How frames meet a fixed-shape model exported at another size than its "
        "working size: letterbox (keep aspect, pad) | stretch",
        {},
    ),
    "precision": (
        "auto",
        "Network precision: torch auto | fp32 | fp16 | bf16; TensorRT auto | fp32 | fp16 | int8",
        {},
    ),
    "torch_compile": (False, "torch.compile the network (torch backend)", {}),
    "cpu_threads": (
        0,
        "CPU threads of ONNX Runtime and OpenVINO (0 = their default)",
        {"integer_range": [IntegerRange(from_value=0, to_value=256, step=1)]},
    ),
    "onnx_threads": (
        0,
        "Former name of cpu_threads, used when cpu_threads is 0",
        {"integer_range": [IntegerRange(from_value=0, to_value=256, step=1)]},
    ),
    "trt_rebuild": (
        "never",
        "TensorRT .engine files: never | if-stale (rebuild from the ONNX named in its metadata)",
        {},
    ),
    "trt_workspace_gb": (
        4.0,
        "TensorRT builder workspace in GiB (engines built at startup from an .onnx)",
        _range(WORKSPACE_GB),
    ),
    "trt_timing_cache": ("", "TensorRT timing cache file ('' = none)", {}),
    "warmup_size": (
        [375, 1242],
        "[height, width] of the blank frames run at startup; [0, 0] = no warm-up",
        {},
    ),
    "threshold": (0.5, "A pixel is road when P(road) >= threshold; changeable at run time", _UNIT),
    "overlay_alpha": (
        0.5,
        "Blend weight of overlay_color over road pixels; changeable at run time",
        _UNIT,
    ),
    "overlay_color": (
        [0, 255, 0],
        "[R, G, B] (0..255) painted over road pixels in the overlay; changeable at run time",
        {},
    ),
    "publish_confidence": (True, "Advertise road_seg/confidence (mono8, 255 * P(road))", {}),
    "publish_overlay": (
        True,
        "Advertise road_seg/overlay (the input with road pixels tinted)",
        {},
    ),
    "publish_grid": (
        True,
        "Advertise road_seg/grid (nav_msgs/OccupancyGrid of drivable road in target_frame; "
        "needs camera_info)",
        {},
    ),
    "use_compressed": (
        False,
        "Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image",
        {},
    ),
    "max_pixels": (
        MAX_PIXELS,
        f"Largest width x height accepted (bigger frames are rejected as bad messages, "
        f"compressed ones before decoding); each side must also be >= {MIN_SIDE}",
        {"integer_range": [IntegerRange(from_value=MIN_SIDE**2, to_value=1 << 31, step=1)]},
    ),
    "target_frame": (
        TARGET_FRAME,
        "Frame of road_seg/grid; the ground is its z = 0 plane (x forward, y left)",
        {},
    ),
    "grid_use_tf": (
        False,
        "Look the camera up in target_frame with tf2 (else: camera_height, camera_pitch, "
        "camera_roll, with target_frame on the ground under the camera)",
        {},
    ),
    "image_rectified": (
        False,
        "The image is rectified (e.g. image_rect): the grid projects through camera_info's P "
        "and ignores D. false: it is the raw image camera_info describes (image_raw), and the "
        "grid follows D's distortion (plumb_bob, rational_polynomial, equidistant)",
        {},
    ),
    "camera_height": (
        MOUNT[0],
        "Camera height over the ground (m), without tf (KITTI: 1.65)",
        _range(CAMERA_HEIGHT),
    ),
    "camera_pitch": (MOUNT[1], "Camera pitch (rad, positive = looking down), without tf", _ANGLE),
    "camera_roll": (
        MOUNT[2],
        "Camera roll (rad, positive = clockwise seen from behind), without tf",
        _ANGLE,
    ),
    "grid_resolution": (
        _GRID.resolution,
        "Grid cell size (m)",
        _range(GRID_RESOLUTION),
    ),
    "grid_x_range": (
        list(_GRID.x_range),
        "[min, max] of the grid along target_frame's x (forward), m",
        {},
    ),
    "grid_y_range": (
        list(_GRID.y_range),
        "[min, max] of the grid along target_frame's y (left), m",
        {},
    ),
    "grid_occupancy": (
        "binary",
        "Cell values: binary (road 0, other 100) | scaled (round(100 (1 - P))); unseen cells -1",
        {},
    ),
}


def _plain(value: Any) -> Any:
    """A parameter value with rclpy's array.array (integer and double arrays) as a list."""
    return value.tolist() if isinstance(value, array.array) else value


def make_image(header: Any, fields: dict) -> Image:
    """An rclpy Image from the core's fields; ``data`` goes in as array('B'), rclpy's fast path."""
    data = array.array("B")
    data.frombytes(fields["data"])
    return Image(
        header=header,
        height=fields["height"],
        width=fields["width"],
        encoding=fields["encoding"],
        is_bigendian=fields["is_bigendian"],
        step=fields["step"],
        data=data,
    )


def make_grid(header: Header, fields: dict) -> OccupancyGrid:
    """An rclpy OccupancyGrid from ``GroundGrid.fields``; ``data`` goes in as array('b')."""
    data = array.array("b")
    data.frombytes(fields["data"].tobytes())
    x, y = fields["origin_xy"]
    info = MapMetaData(
        map_load_time=header.stamp,
        resolution=fields["resolution"],
        width=fields["width"],
        height=fields["height"],
        origin=Pose(position=Point(x=x, y=y, z=0.0), orientation=Quaternion(w=1.0)),
    )
    return OccupancyGrid(header=header, info=info, data=data)


def declare_parameters(node: Node) -> dict[str, Any]:
    """Declare every parameter of PARAMETERS on ``node``; returns their values, checked."""
    for name, (default, description, extra) in PARAMETERS.items():
        descriptor = ParameterDescriptor(
            description=description, read_only=name not in RUNTIME, **extra
        )
        node.declare_parameter(name, default, descriptor)
    values = {name: _plain(node.get_parameter(name).value) for name in PARAMETERS}
    for name, choices in CHOICES.items():
        if values[name] not in choices:
            raise ValueError(
                f"parameter {name} must be one of {', '.join(choices)}, got '{values[name]}'"
            )
    size = values["warmup_size"]
    if len(size) != 2 or min(size) < 0:
        raise ValueError(f"parameter warmup_size must be [height, width] >= 0, got {size}")
    for name, bounds in BOUNDED.items():
        reason = bounds.problem(values[name])
        if reason:
            raise ValueError(f"parameter {name} {reason}")
    return values


def build_segmenter(p: dict[str, Any]) -> Segmenter:
    """The per-frame core from the node's parameters (ModelError or ValueError if impossible)."""
    options = BackendOptions(
        p["precision"],
        p["torch_compile"],
        p["cpu_threads"] or p["onnx_threads"],
        p["trt_rebuild"],
        p["trt_workspace_gb"],
        p["trt_timing_cache"],
    )
    return make_segmenter(
        p["model_path"] or None,
        p["backend"],
        p["device"],
        p["resize_policy"],
        p["network_size"],
        p["threshold"],
        p["overlay_color"],
        p["overlay_alpha"],
        p["max_pixels"],
        options,
    )


def build_grid(p: dict[str, Any]) -> tuple[GroundGrid, np.ndarray]:
    """The grid core and the camera mount from the node's parameters.

    ValueError naming the invalid ones.
    """
    try:
        camera_from_ground = mount(p["camera_height"], p["camera_pitch"], p["camera_roll"])
        spec = grid_spec(p["grid_resolution"], p["grid_x_range"], p["grid_y_range"])
    except OptionError as exc:
        raise ValueError(f"parameter {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"parameters grid_resolution, grid_x_range, grid_y_range: {exc}") from exc
    return GroundGrid(spec, p["grid_occupancy"]), camera_from_ground


def _overridable(create: Callable[..., Any], *args: Any) -> Any:
    """``create(*args)`` with the standard ``qos_overrides.<topic>.*`` parameters (ValueError)."""
    try:
        return create(*args, qos_overriding_options=QoSOverridingOptions.with_default_policies())
    except (RuntimeError, InvalidQosOverridesError, ParameterException) as exc:
        raise ValueError(f"parameter qos_overrides for topic '{args[1]}': {exc}") from exc


class RoadSeg:
    """What a road-segmentation node does, for a ``Node``: load, open, start, stop, release.

    ``load`` builds the core and warms it up, ``open`` creates the publishers (with the factory it
    is given: plain or lifecycle), ``start`` subscribes and starts the worker, ``stop`` undoes
    ``start`` and ``release`` undoes ``open`` and ``load``.
    """

    _params: dict[str, Any]
    _segmenter: Segmenter | None = None
    _worker: threading.Thread | None = None
    _outputs: dict[str, Any] = {}  # replaced, never changed in place
    _grid_pub: Any = None
    _diagnostics: Any = None
    _tf_buffer: Any = None
    _tf_listener: Any = None

    def _load(self) -> str:
        """Build the grid core and the segmenter and warm up; returns a log line about them.

        All or nothing: nothing is kept when any step fails. The model's warnings (an INT8
        companion not used, ...) are logged and shown in /diagnostics.
        """
        p = self._params
        grid, camera_from_ground = build_grid(p)
        segmenter = build_segmenter(p)
        backend = segmenter.backend
        warmup = backend.warmup(*p["warmup_size"]) if min(p["warmup_size"]) > 0 else 0.0
        self._grid, self._mount, self._segmenter = grid, camera_from_ground, segmenter
        self._camera: Camera | None = None
        self._throttle = ReasonThrottle(LOG_PERIOD_S)
        self._selection = backend.selection  # how backend: auto chose it, with each time
        self._backend_info = backend.describe()
        self._warnings = list(segmenter.warnings)
        for warning in self._warnings:
            self.get_logger().warning(warning)
        return (
            f"{self._backend_info}; model {p['model_path'] or 'the default model'}; "
            f"warm-up {warmup:.2f} s at "
            f"{p['warmup_size'][0]}x{p['warmup_size'][1]}"
            + (f"; {self._selection}" if self._selection else "")
        )

    def _open(
        self, create_publisher: Callable[..., Any], destroy_publisher: Callable[[Any], Any]
    ) -> None:
        """Create the output publishers with ``create_publisher`` (only the outputs asked for).

        All or nothing: on a bad QoS override (ValueError) the ones made are destroyed again.
        """
        p = self._params
        qos = QoSProfile(depth=OUTPUT_DEPTH)
        wanted = {
            "mask": True,
            "confidence": p["publish_confidence"],
            "overlay": p["publish_overlay"],
            "grid": p["publish_grid"],
        }
        made: dict[str, Any] = {}
        try:
            for name, on in wanted.items():
                if on:
                    msg_type = OccupancyGrid if name == "grid" else Image
                    made[name] = _overridable(create_publisher, msg_type, f"road_seg/{name}", qos)
        except ValueError:
            for publisher in made.values():
                destroy_publisher(publisher)
            raise
        self._grid_pub = made.pop("grid", None)
        self._outputs = made
        self._diagnostics = create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _start(self) -> None:
        """Subscribe, start the worker and the diagnostics timer; ValueError: bad QoS override."""
        p = self._params
        msg_type, topic = (
            (CompressedImage, "image/compressed") if p["use_compressed"] else (Image, "image")
        )
        inputs = [(msg_type, topic, self._on_image)]
        if self._grid_pub is not None:
            inputs.append((CameraInfo, "camera_info", self._on_camera_info))
        self._inputs = []
        try:
            for args in inputs:
                self._inputs.append(
                    _overridable(self.create_subscription, *args, qos_profile_sensor_data)
                )
        except ValueError:
            for subscription in self._inputs:
                self.destroy_subscription(subscription)
            raise
        if p["grid_use_tf"] and self._grid_pub is not None and self._tf_buffer is None:
            from tf2_ros import Buffer, TransformListener

            self._tf_buffer = Buffer()
            self._tf_listener = TransformListener(self._tf_buffer, self)
        self._slot: Latest[tuple[Any, float]] = Latest()
        self._stats = Stats()
        self._diag_timer = self.create_timer(1.0, self._on_diagnostics_timer)
        self._worker = threading.Thread(target=self._work, name="road_seg_worker", daemon=True)
        self._worker.start()
        qos = self._inputs[0].qos_profile
        self.get_logger().info(
            f"segmenting {self._inputs[0].topic_name} ({msg_type.__name__}, "
            f"{qos.reliability.name.lower()}, depth {qos.depth}); publishing "
            f"{', '.join([*self._outputs, *(['grid'] if self._grid_pub else [])])}"
        )

    def _stop(self) -> None:
        """Stop the worker (it finishes the frame in hand), the subscriptions and the timer."""
        if self._worker is None:
            return
        self._slot.close()
        self._worker.join()
        self._worker = None
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self.destroy_timer(self._diag_timer)

    def _release(self, destroy_publisher: Callable[[Any], Any]) -> None:
        """Destroy the publishers and drop the model; a no-op for what is not there."""
        for publisher in [*self._outputs.values(), self._grid_pub, self._diagnostics]:
            if publisher is not None:
                destroy_publisher(publisher)
        self._outputs, self._grid_pub, self._diagnostics = {}, None, None
        if self._tf_listener is not None:
            self._tf_listener.unregister()
        self._segmenter = self._tf_buffer = self._tf_listener = None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Apply run-time settings, or reject the whole set with the reason."""
        changes = [(p.name, _plain(p.value)) for p in params if p.name in RUNTIME]
        for name, value in changes:
            reason = check_setting(name, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for name, value in changes:
            self._params[name] = value
            if self._segmenter is not None:
                self._segmenter.update(name, value)
        return SetParametersResult(successful=True)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Keep only the newest message (and when it arrived) for the worker."""
        self._slot.put((msg, time.monotonic()))

    def _log(self, level: str, text: str) -> None:
        """Log ``text`` at ``level`` ('warning', 'error') unless its reason was logged less than
        LOG_PERIOD_S ago (``ReasonThrottle``: one fault does not hide another)."""
        line = self._throttle.admit(text)
        if line is not None:
            getattr(self.get_logger(), level)(line)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Keep the newest usable camera model for the grid."""
        try:
            self._camera = Camera.from_info(msg, self._params["image_rectified"])
        except ValueError as exc:
            self._log("warning", f"ignoring camera_info: {exc}")

    def _on_diagnostics_timer(self) -> None:
        """Publish one DiagnosticStatus with FPS, latency, drops and bad messages."""
        level, message, values = health(
            self._stats.summary(dropped=self._slot.dropped),
            self._backend_info,
            self._segmenter.backend.network_size_text(),
            self._warnings,
        )
        if self._selection:
            values.append(("backend selection", self._selection))
        status = DiagnosticStatus(
            level=getattr(DiagnosticStatus, level),
            name=self.get_fully_qualified_name(),
            message=message,
            hardware_id=self._backend_info,
            values=[KeyValue(key=k, value=v) for k, v in values],
        )
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics.publish(DiagnosticArray(header=header, status=[status]))

    def _work(self) -> None:
        """Worker thread: segment the newest message until the slot is closed."""
        while (item := self._slot.take()) is not None:
            msg, received = item
            try:
                self._segment(msg, received)
            except ImageError as exc:
                self._stats.bad_message()
                self._log("error", f"bad image message: {exc}")
            except (
                Exception
            ) as exc:  # keep serving frames; a shutting-down context ends the worker
                if not self.context.ok():
                    return
                self._log("error", f"segmentation failed: {exc!r}")

    def _segment(self, msg: Image | CompressedImage, received: float) -> None:
        """Segment one message and publish the outputs someone listens to (the mask always)."""
        outputs = [
            name
            for name, pub in self._outputs.items()
            if name == "mask" or pub.get_subscription_count()
        ]
        result, messages = self._segmenter.process(
            msg, make_image, outputs, compressed=self._params["use_compressed"]
        )
        for name, out in messages.items():
            self._outputs[name].publish(out)
        if self._grid_pub is not None and self._grid_pub.get_subscription_count():
            self._publish_grid(msg.header, result.mask, result.confidence)
        self._stats.frame(time.monotonic() - received)

    def _publish_grid(self, header: Header, mask: np.ndarray, confidence: np.ndarray) -> None:
        """Project the frame's maps onto the ground and publish the grid, or log why not."""
        pose = self._camera_pose(header.frame_id)
        if self._camera is None or pose is None:
            why = "no camera_info received yet" if self._camera is None else "no camera pose"
            self._log("warning", f"road_seg/grid not published: {why}")
            return
        try:
            self._grid.update(self._camera, pose)
            cells = self._grid.occupancy(mask, confidence)
        except ValueError as exc:
            self._log("warning", f"road_seg/grid not published: {exc}")
            return
        grid_header = Header(stamp=header.stamp, frame_id=self._params["target_frame"])
        self._grid_pub.publish(make_grid(grid_header, self._grid.fields(cells)))

    def _camera_pose(self, camera_frame: str) -> np.ndarray | None:
        """4x4 camera <- target_frame: the latest from tf2 (rigid mount), or the mount."""
        if self._tf_buffer is None:
            return self._mount
        from tf2_ros import TransformException

        try:
            t = self._tf_buffer.lookup_transform(
                camera_frame, self._params["target_frame"], Time()
            ).transform
        except TransformException as exc:
            self._log(
                "warning", f"no transform {self._params['target_frame']} -> {camera_frame}: {exc}"
            )
            return None
        r = geometry.rotation_from_quaternion(
            t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w
        )
        return geometry.rigid(r, np.array([t.translation.x, t.translation.y, t.translation.z]))


class RoadSegNode(RoadSeg, Node):
    """Subscribes to ``image`` (and ``camera_info``), publishes the ``road_seg/`` topics.

    They are ``road_seg/{mask,confidence,overlay,grid}``.

    Raises ``ModelError`` for a missing or incompatible model and ``ValueError`` or rclpy's
    ``ParameterException`` for invalid parameters.
    """

    def __init__(self, **kwargs: Any) -> None:
        Node.__init__(self, NODE_NAME, **kwargs)
        self._params = declare_parameters(self)
        loaded = self._load()
        self._open(self.create_publisher, self.destroy_publisher)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._start()
        self.get_logger().info(f"ready: {loaded}")

    def destroy_node(self) -> None:
        """Stop the worker (it finishes the frame in hand), then destroy the node."""
        self._stop()
        super().destroy_node()


def spin(node_class: type[Node], args: list[str] | None = None) -> int:
    """Create ``node_class`` and spin it until Ctrl-C or shutdown.

    1 when it cannot start (model or parameters).
    """
    rclpy.init(args=args)
    try:
        node = node_class()
    except (RoadSegError, ValueError, ParameterException) as exc:
        get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the model loads or warms up
        rclpy.try_shutdown()
        return 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """Run the road_segmentation node."""
    return spin(RoadSegNode, args)


if __name__ == "__main__":
    sys.exit(main())
