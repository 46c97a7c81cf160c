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
from ..errors import ImageError, OptionError, RoadSegError
from ..grid import (
    Camera,
    GroundGrid,
    grid_spec,
    mount,
)
from ..latest import Latest
from ..options import OPTIONS, RUNTIME, Option, check_setting, problems
from ..segmenter import Segmenter, segmenter_from_options
from ..stats import Stats, health
from ..throttle import ReasonThrottle

NODE_NAME = "road_segmentation"
LOG_PERIOD_S = 5.0
OUTPUT_DEPTH = 5


def descriptor(option: Option) -> ParameterDescriptor:
    """The parameter's descriptor from its option: description, range, choices, read-only."""
    extra: dict[str, Any] = {}
    if option.bounds is not None and option.kind == "float":
        low, high = option.bounds.low, option.bounds.high
        extra["floating_point_range"] = [
            FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
        ]
    elif option.bounds is not None and option.kind == "int":
        low, high = int(option.bounds.low), int(option.bounds.high)
        extra["integer_range"] = [IntegerRange(from_value=low, to_value=high, step=1)]
    if option.choices:
        extra["additional_constraints"] = f"one of: {', '.join(option.choices)}"
    elif option.length is not None:
        extra["additional_constraints"] = f"{option.length} values" + (
            f", each in [{option.bounds.low:g}, {option.bounds.high:g}]" if option.bounds else ""
        )
    return ParameterDescriptor(description=option.help, read_only=not option.runtime, **extra)


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
    """Declare every option of ``options.OPTIONS`` on ``node``; returns their values, checked.

    ValueError naming the first invalid parameter: nothing is loaded before every one is valid.
    """
    for name, option in OPTIONS.items():
        node.declare_parameter(name, option.default, descriptor(option))
    values = {name: _plain(node.get_parameter(name).value) for name in OPTIONS}
    bad = problems(values)
    if bad:
        raise ValueError(f"parameter {bad[0]}")
    return values


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
    ``start`` and ``release`` undoes ``open`` and ``load``. Every field is set in ``_reset``; each
    phase is all or nothing, and ``stop`` and ``release`` may be called in any state, repeatedly.
    """

    _params: dict[str, Any]  # declared and checked before anything is loaded

    def _reset(self) -> None:
        """Every field of the node's state, empty: nothing loaded, opened or started."""
        self._segmenter: Segmenter | None = None
        self._grid: GroundGrid | None = None
        self._mount: np.ndarray | None = None
        self._camera: Camera | None = None  # the newest usable camera_info
        self._throttle = ReasonThrottle(LOG_PERIOD_S)
        self._selection = ""  # how backend: auto chose the backend, with each time
        self._backend_info = ""
        self._warnings: list[str] = []
        self._outputs: dict[str, Any] = {}  # replaced, never changed in place
        self._grid_pub: Any = None
        self._diagnostics: Any = None
        self._tf_buffer: Any = None
        self._tf_listener: Any = None
        self._inputs: list[Any] = []
        self._slot: Latest[tuple[Any, float]] = Latest()
        self._stats = Stats()
        self._diag_timer: Any = None
        self._worker: threading.Thread | None = None

    def _load(self) -> str:
        """Build the grid core and the segmenter and warm up; returns a log line about them.

        All or nothing: nothing is kept when any step fails (a model that loaded is closed
        again). The model's warnings (an INT8 companion not used, ...) are logged and shown in
        /diagnostics.
        """
        p = self._params
        grid, camera_from_ground = build_grid(p)
        segmenter = segmenter_from_options(p)
        try:
            size = p["warmup_size"]
            warmup = segmenter.backend.warmup(*size) if min(size) > 0 else 0.0
        except BaseException:
            segmenter.close()
            raise
        backend = segmenter.backend
        self._grid, self._mount, self._segmenter = grid, camera_from_ground, segmenter
        self._selection = backend.selection
        self._backend_info = backend.describe()
        self._warnings = list(segmenter.warnings)
        for warning in self._warnings:
            self.get_logger().warning(warning)
        return (
            f"{self._backend_info}; model {p['model_path'] or 'the default model'}; "
            f"warm-up {warmup:.2f} s at {size[0]}x{size[1]}"
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
        self._slot = Latest()
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
        if self._worker is not None:
            self._slot.close()
            self._worker.join()
            self._worker = None
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None

    def _release(self, destroy_publisher: Callable[[Any], Any]) -> None:
        """Destroy the publishers, close the model (and its device memory), reset the state."""
        self._stop()
        for publisher in [*self._outputs.values(), self._grid_pub, self._diagnostics]:
            if publisher is not None:
                destroy_publisher(publisher)
        if self._tf_listener is not None:
            self._tf_listener.unregister()
        if self._segmenter is not None:
            self._segmenter.close()
        self._reset()

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
        """Log ``text`` at ``level`` ('warning', 'error'), at most once per reason per period.

        ``ReasonThrottle`` drops a repeat of a reason logged less than LOG_PERIOD_S ago, so one
        fault does not hide another.
        """
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
            except Exception as exc:
                # keep serving frames; a shutting-down context ends the worker
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

    The outputs are ``road_seg/mask``, ``confidence``, ``overlay`` and ``grid``. Raises
    ``ModelError`` for a missing or incompatible model and ``ValueError`` or rclpy's
    ``ParameterException`` for invalid parameters.
    """

    def __init__(self, **kwargs: Any) -> None:
        Node.__init__(self, NODE_NAME, **kwargs)
        self._reset()
        self._params = declare_parameters(self)
        try:
            loaded = self._load()
            self._open(self.create_publisher, self.destroy_publisher)
            self.add_on_set_parameters_callback(self._on_set_parameters)
            self._start()
        except BaseException:  # nothing half-built stays behind (the caller destroys the node)
            self._release(self.destroy_publisher)
            raise
        self.get_logger().info(f"ready: {loaded}")

    def destroy_node(self) -> None:
        """Stop the worker (it finishes the frame in hand), release all, destroy the node."""
        self._release(self.destroy_publisher)
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
