"""The per-frame core shared by the node, the bag tool and the benchmarks. No ROS import.

message -> Frame -> backend -> mask / confidence / overlay -> output messages with the input's
header. Output messages are built by a ``make_image(header, fields)`` factory, the only thing that
differs between rclpy messages and rosbags messages.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Sequence

import cv2
import numpy as np

from . import image
from .backends import BACKENDS, RESIZE_POLICIES, Backend, BackendOptions, load_backend
from .bounds import WORKSPACE_GB
from .errors import ModelError
from .image import Frame
from .model import default_model_path

OUTPUTS = ("mask", "confidence", "overlay")
MakeImage = Callable[[Any, dict], Any]


def _is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_setting(name: str, value: Any) -> str | None:
    """Why ``value`` is invalid for the run-time setting ``name``, or None when it is fine."""
    if name in ("threshold", "overlay_alpha"):
        ok = (_is_int(value) or isinstance(value, float)) and 0.0 <= value <= 1.0
        return None if ok else f"{name} must be a number in [0, 1], got {value!r}"
    if name == "overlay_color":
        ok = (
            isinstance(value, (Sequence, np.ndarray))
            and not isinstance(value, str)
            and len(value) == 3
            and all(_is_int(v) and 0 <= v <= 255 for v in value)
        )
        return (
            None
            if ok
            else f"overlay_color must be three integers [R, G, B] in 0..255, got {value!r}"
        )
    return f"unknown setting '{name}'"


def overlay_encoding(frame: Frame) -> str:
    """The overlay's encoding: the frame's for 8-bit colour, else ``bgr8`` (tints need colour)."""
    return "bgr8" if frame.order == "mono" else frame.encoding


def overlay(frame: Frame, mask: np.ndarray, color_rgb: Sequence[int], alpha: float) -> np.ndarray:
    """The frame in ``overlay_encoding``, road pixels blended to ``color_rgb`` by ``alpha``."""
    r, g, b = color_rgb
    mono = frame.order == "mono"
    pixels = cv2.cvtColor(frame.pixels, cv2.COLOR_GRAY2BGR) if mono else frame.pixels
    color = (r, g, b) if frame.order == "rgb" else (b, g, r)
    tint = cv2.add(
        cv2.convertScaleAbs(pixels, alpha=1.0 - alpha), (*(alpha * c for c in color), 0.0)[:4]
    )
    out = cv2.copyTo(tint, mask, pixels if mono else np.array(pixels, order="C"))
    if out.shape[2] == 4:
        out[..., 3] = pixels[..., 3]
    return out


@dataclass
class SegResult:
    """One frame's outputs (uint8, input size) and the milliseconds each stage took."""

    mask: np.ndarray
    confidence: np.ndarray
    overlay: np.ndarray | None
    timings: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """A backend plus the run-time settings (threshold, overlay colour and alpha)."""

    def __init__(
        self,
        backend: Backend,
        threshold: float = 0.5,
        overlay_color: Sequence[int] = (0, 255, 0),
        overlay_alpha: float = 0.5,
        max_pixels: int = image.MAX_PIXELS,
    ) -> None:
        if not _is_int(max_pixels) or max_pixels < image.MIN_SIDE**2:
            raise ValueError(
                f"max_pixels must be an integer >= {image.MIN_SIDE**2}, got {max_pixels!r}"
            )
        self.backend = backend
        self.max_pixels = int(max_pixels)
        self.threshold = threshold
        self.overlay_color = tuple(overlay_color)
        self.overlay_alpha = overlay_alpha
        for name in ("threshold", "overlay_color", "overlay_alpha"):
            self.update(name, getattr(self, name))

    @property
    def warnings(self) -> list[str]:
        """One line each about how the model was opened (an INT8 companion not used, ...)."""
        return self.backend.warnings

    def update(self, name: str, value: Any) -> None:
        """Change one setting; raises ValueError with the reason when the value is invalid."""
        reason = check_setting(name, value)
        if reason:
            raise ValueError(reason)
        setattr(self, name, tuple(value) if name == "overlay_color" else float(value))

    def segment(self, frame: Frame, want_overlay: bool = True, profile: bool = False) -> SegResult:
        """Mask, confidence and (if wanted) overlay for one frame.

        Per-stage timings when ``profile``.
        """
        image.check_size(*frame.shape, self.max_pixels)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        maps = self.backend.infer(frame, self.threshold, timings if profile else None)
        t = time.perf_counter()
        tinted = (
            overlay(frame, maps.mask, self.overlay_color, self.overlay_alpha)
            if want_overlay
            else None
        )
        timings["overlay"] = 1e3 * (time.perf_counter() - t)
        timings["segment"] = 1e3 * (time.perf_counter() - start)
        return SegResult(maps.mask, maps.confidence, tinted, timings)

    def process(
        self,
        msg: Any,
        make_image: MakeImage,
        outputs: Collection[str] = OUTPUTS,
        compressed: bool = False,
        profile: bool = False,
    ) -> tuple[SegResult, dict[str, Any]]:
        """Segment one Image (or CompressedImage) message into output messages carrying its header.

        Raises ``ImageError`` for a message that cannot be segmented. Only the ``outputs`` asked
        for are built (the overlay is not even computed when nobody wants it).
        """
        start = time.perf_counter()
        frame = image.from_compressed(msg, self.max_pixels) if compressed else image.from_msg(msg)
        to_array = 1e3 * (time.perf_counter() - start)
        result = self.segment(frame, want_overlay="overlay" in outputs, profile=profile)
        t = time.perf_counter()
        arrays = {
            "mask": (result.mask, "mono8"),
            "confidence": (result.confidence, "mono8"),
            "overlay": (result.overlay, overlay_encoding(frame)),
        }
        messages = {
            name: make_image(msg.header, image.to_fields(*arrays[name])) for name in outputs
        }
        result.timings.update(
            to_array=to_array,
            to_msg=1e3 * (time.perf_counter() - t),
            total=1e3 * (time.perf_counter() - start),
        )
        return result, messages


def make_segmenter(
    model: str | os.PathLike | None = None,
    backend: str = "auto",
    device: str = "auto",
    resize_policy: str = "letterbox",
    network_size: str = "auto",
    threshold: float = 0.5,
    overlay_color: Sequence[int] = (0, 255, 0),
    overlay_alpha: float = 0.5,
    max_pixels: int = image.MAX_PIXELS,
    options: BackendOptions | None = None,
) -> Segmenter:
    """The one place a Segmenter is built from options (node, segment_bag, demo).

    ``model`` None = the default.
    """
    path = model or default_model_path()
    if not model and not os.path.isfile(path):
        raise ModelError(
            f"the default model {path} is not installed; pass a model file "
            "(checkpoint .pt, .onnx or TensorRT .engine)"
        )
    backend_ = load_backend(path, backend, device, resize_policy, network_size, options)
    return Segmenter(backend_, threshold, overlay_color, overlay_alpha, max_pixels)


def add_segmenter_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, backend and per-frame options every tool shares.

    The node has them as parameters.
    """
    o = BackendOptions()
    parser.add_argument(
        "--model",
        help=f"checkpoint, ONNX model or TensorRT engine (default {default_model_path()})",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--network-size",
        default="auto",
        help="size the network runs at: auto (the model's working size), native or HxW",
    )
    parser.add_argument(
        "--resize-policy",
        choices=RESIZE_POLICIES,
        default="letterbox",
        help="how frames meet a fixed-shape model exported at another size than its working size",
    )
    parser.add_argument(
        "--precision",
        default=o.precision,
        help="torch: auto|fp32|fp16|bf16; TensorRT: auto|fp32|fp16|int8; "
        "OpenVINO: auto|fp32|bf16|fp16 (default auto)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (torch)")
    parser.add_argument(
        "--threads",
        type=int,
        default=o.threads,
        help="CPU threads of ONNX Runtime and OpenVINO (0 = their default)",
    )
    parser.add_argument(
        "--rebuild",
        choices=("never", "if-stale"),
        default=o.rebuild,
        help="TensorRT: rebuild a stale .engine from its ONNX",
    )
    parser.add_argument(
        "--workspace-gb",
        type=WORKSPACE_GB.parse,
        default=o.workspace_gb,
        help="TensorRT builder workspace",
    )
    parser.add_argument(
        "--timing-cache", default=o.timing_cache, help="TensorRT timing cache file"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="road if P(road) >= threshold"
    )
    parser.add_argument(
        "--overlay-color", type=int, nargs=3, default=[0, 255, 0], metavar=("R", "G", "B")
    )
    parser.add_argument("--overlay-alpha", type=float, default=0.5)
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=image.MAX_PIXELS,
        help=f"largest width x height accepted (default {image.MAX_PIXELS}); "
        "larger frames are skipped",
    )


def segmenter_from_args(args: argparse.Namespace) -> Segmenter:
    """``make_segmenter`` from ``add_segmenter_arguments``' flags.

    A bad setting is a ModelError; the model's warnings are printed to stderr, one line each.
    """
    options = BackendOptions(
        args.precision,
        args.compile,
        args.threads,
        args.rebuild,
        args.workspace_gb,
        args.timing_cache,
    )
    try:
        segmenter = make_segmenter(
            args.model,
            args.backend,
            args.device,
            args.resize_policy,
            args.network_size,
            args.threshold,
            args.overlay_color,
            args.overlay_alpha,
            args.max_pixels,
            options,
        )
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
    for warning in segmenter.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return segmenter
