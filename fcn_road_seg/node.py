"""The ROS 2 node: a thin rclpy adapter around the per-frame core. The only module that imports rclpy.

    image --(subscription callback)--> Latest slot --(worker thread)--> Segmenter.process --> publishers

The callback only stores the newest message, so a slow model drops frames instead of queueing them;
the confidence and overlay are computed only while someone subscribes to them.
"""
from __future__ import annotations

import array
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from .backends import BACKENDS, RESIZE_POLICIES, BackendOptions
from .errors import ImageError, RoadSegError
from .image import MAX_PIXELS, MIN_SIDE
from .latest import Latest
from .segmenter import check_setting, make_segmenter
from .stats import Stats, health

NODE_NAME = "road_segmentation"
RUNTIME = ("threshold", "overlay_alpha", "overlay_color")
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
CHOICES = {"backend": BACKENDS, "resize_policy": RESIZE_POLICIES, "qos_reliability": tuple(RELIABILITY),
           "trt_rebuild": ("never", "if-stale")}
BAD_MESSAGE_LOG_PERIOD_S = 5.0
_UNIT = {"floating_point_range": [FloatingPointRange(from_value=0.0, to_value=1.0, step=0.0)]}

#: name -> (default, description, extra ParameterDescriptor fields); all but RUNTIME are read-only
PARAMETERS: dict[str, tuple[Any, str, dict]] = {
    "model_path": ("", "Model file: .pt checkpoint, .onnx or TensorRT .engine; '' = the model shipped "
                       "in the package", {}),
    "backend": ("auto", "Inference backend: auto | tensorrt | torch | onnxruntime (auto picks by file type, "
                        "TensorRT for .onnx when available)", {}),
    "device": ("auto", "torch device: auto (CUDA when available) | cpu | cuda | cuda:N", {}),
    "network_size": ("auto", "Size the network runs at: auto (the model's working size, from its file) | "
                              "native (each frame's own size) | HxW, e.g. 188x624", {}),
    "resize_policy": ("letterbox", "How frames meet a fixed-shape model exported at another size than its "
                                   "working size: letterbox (keep aspect, pad) | stretch", {}),
    "precision": ("auto", "Network precision: torch auto | fp32 | fp16 | bf16; TensorRT auto | fp32 | fp16 | int8", {}),
    "torch_compile": (False, "torch.compile the network (torch backend)", {}),
    "onnx_threads": (0, "ONNX Runtime intra-op threads (0 = its default)",
                     {"integer_range": [IntegerRange(from_value=0, to_value=256, step=1)]}),
    "trt_rebuild": ("never", "TensorRT .engine files: never | if-stale (rebuild from the ONNX named in its metadata)",
                    {}),
    "trt_workspace_gb": (4.0, "TensorRT builder workspace in GiB (engines built at startup from an .onnx)",
                         {"floating_point_range": [FloatingPointRange(from_value=0.25, to_value=1024.0, step=0.0)]}),
    "trt_timing_cache": ("", "TensorRT timing cache file ('' = none)", {}),
    "warmup_size": ([375, 1242], "[height, width] of the blank frames run at startup; [0, 0] = no warm-up",
                    {}),
    "threshold": (0.5, "A pixel is road when P(road) >= threshold; changeable at run time", _UNIT),
    "overlay_alpha": (0.5, "Blend weight of overlay_color over road pixels; changeable at run time", _UNIT),
    "overlay_color": ([0, 255, 0], "[R, G, B] (0..255) painted over road pixels in the overlay; changeable "
                                   "at run time", {}),
    "publish_confidence": (True, "Advertise road_seg/confidence (mono8, 255 * P(road))", {}),
    "publish_overlay": (True, "Advertise road_seg/overlay (the input with road pixels tinted)", {}),
    "use_compressed": (False, "Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image",
                       {}),
    "max_pixels": (MAX_PIXELS, f"Largest width x height accepted (bigger frames are rejected as bad messages, "
                               f"compressed ones before decoding); each side must also be >= {MIN_SIDE}",
                   {"integer_range": [IntegerRange(from_value=MIN_SIDE ** 2, to_value=1 << 31, step=1)]}),
    "qos_reliability": ("best_effort", "Input subscription reliability: best_effort | reliable", {}),
    "qos_depth": (5, "Input subscription queue depth (KEEP_LAST); also the output publishers' depth",
                  {"integer_range": [IntegerRange(from_value=1, to_value=100, step=1)]}),
}


def _plain(value: Any) -> Any:
    """A parameter value with rclpy's array.array (integer and double arrays) as a list."""
    return value.tolist() if isinstance(value, array.array) else value


def make_image(header: Any, fields: dict) -> Image:
    """An rclpy Image from the core's fields; ``data`` goes in as array('B'), rclpy's fast path."""
    data = array.array("B")
    data.frombytes(fields["data"])
    return Image(header=header, height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                 is_bigendian=fields["is_bigendian"], step=fields["step"], data=data)


class RoadSegNode(Node):
    """Subscribes to ``image``, publishes ``road_seg/{mask,confidence,overlay}`` and ``/diagnostics``.

    Raises ``ModelError`` for a missing or incompatible model and ``ValueError`` or rclpy's
    ``ParameterException`` for invalid parameters.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self._declare_parameters()
        options = BackendOptions(p["precision"], p["torch_compile"], p["onnx_threads"], p["trt_rebuild"],
                                 p["trt_workspace_gb"], p["trt_timing_cache"])
        self._segmenter = make_segmenter(p["model_path"] or None, p["backend"], p["device"], p["resize_policy"],
                                         p["network_size"], p["threshold"], p["overlay_color"], p["overlay_alpha"],
                                         p["max_pixels"], options)
        backend = self._segmenter.backend
        model_path = p["model_path"] or "the default model"
        warmup = backend.warmup(*p["warmup_size"]) if min(p["warmup_size"]) > 0 else 0.0
        self._backend_info = backend.describe()
        self._network_size = backend.network_size_text()
        self._compressed = p["use_compressed"]
        self._slot: Latest[tuple[Any, float]] = Latest()
        self._stats = Stats()

        out_qos = QoSProfile(depth=p["qos_depth"])
        wanted = {"mask": True, "confidence": p["publish_confidence"], "overlay": p["publish_overlay"]}
        self._outputs = {name: self.create_publisher(Image, f"road_seg/{name}", out_qos)
                         for name, on in wanted.items() if on}
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        in_qos = QoSProfile(history=qos_profile_sensor_data.history, depth=p["qos_depth"],
                            reliability=RELIABILITY[p["qos_reliability"]],
                            durability=qos_profile_sensor_data.durability)
        msg_type, topic = (CompressedImage, "image/compressed") if self._compressed else (Image, "image")
        self._subscription = self.create_subscription(msg_type, topic, self._on_image, in_qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(1.0, self._on_diagnostics_timer)
        self._worker = threading.Thread(target=self._work, name="road_seg_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"segmenting {self._subscription.topic_name} ({msg_type.__name__}, {p['qos_reliability']}, "
            f"depth {p['qos_depth']}) with {self._backend_info}; model {model_path}; warm-up "
            f"{warmup:.2f} s at {p['warmup_size'][0]}x{p['warmup_size'][1]}; publishing {', '.join(self._outputs)}")

    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every parameter with its descriptor; return the values, checked."""
        for name, (default, description, extra) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=description, read_only=name not in RUNTIME, **extra)
            self.declare_parameter(name, default, descriptor)
        values = {name: _plain(self.get_parameter(name).value) for name in PARAMETERS}
        for name, choices in CHOICES.items():
            if values[name] not in choices:
                raise ValueError(f"parameter {name} must be one of {', '.join(choices)}, got '{values[name]}'")
        size = values["warmup_size"]
        if len(size) != 2 or min(size) < 0:
            raise ValueError(f"parameter warmup_size must be [height, width] >= 0, got {size}")
        return values

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Apply run-time settings, or reject the whole set with the reason."""
        changes = [(p.name, _plain(p.value)) for p in params if p.name in RUNTIME]
        for name, value in changes:
            reason = check_setting(name, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for name, value in changes:
            self._segmenter.update(name, value)
        return SetParametersResult(successful=True)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Keep only the newest message (and when it arrived) for the worker."""
        self._slot.put((msg, time.monotonic()))

    def _on_diagnostics_timer(self) -> None:
        """Publish one DiagnosticStatus with FPS, latency, drops and bad messages."""
        level, message, values = health(self._stats.summary(dropped=self._slot.dropped), self._backend_info,
                                        self._network_size)
        status = DiagnosticStatus(level=getattr(DiagnosticStatus, level), name=self.get_fully_qualified_name(),
                                  message=message, hardware_id=self._backend_info,
                                  values=[KeyValue(key=k, value=v) for k, v in values])
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
                self.get_logger().error(f"bad image message: {exc}", throttle_duration_sec=BAD_MESSAGE_LOG_PERIOD_S)
            except Exception as exc:  # keep serving frames; a shutting-down context ends the worker
                if not self.context.ok():
                    return
                self.get_logger().error(f"segmentation failed: {exc!r}", throttle_duration_sec=BAD_MESSAGE_LOG_PERIOD_S)

    def _segment(self, msg: Image | CompressedImage, received: float) -> None:
        """Segment one message and publish the outputs someone listens to (the mask always)."""
        outputs = [name for name, pub in self._outputs.items() if name == "mask" or pub.get_subscription_count()]
        _, messages = self._segmenter.process(msg, make_image, outputs, compressed=self._compressed)
        for name, out in messages.items():
            self._outputs[name].publish(out)
        self._stats.frame(time.monotonic() - received)

    def destroy_node(self) -> None:
        """Stop the worker (it finishes the frame in hand), then destroy the node."""
        self._slot.close()
        self._worker.join()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; returns 1 when it cannot start (model or parameters)."""
    rclpy.init(args=args)
    try:
        node = RoadSegNode()
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
