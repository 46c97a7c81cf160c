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
from typing import Any, Callable, Collection, Mapping, Sequence

import cv2
import numpy as np

from . import image
from .backends import Backend, BackendOptions, load_backend
from .errors import ModelError, OptionError
from .image import Frame
from .model import default_model_path
from .options import (
    OPTIONS,
    SEGMENTER,
    add_arguments,
    backend_options,
    check_setting,
    problems,
)

OUTPUTS = ("mask", "confidence", "overlay")
MakeImage = Callable[[Any, dict], Any]


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
        *,
        threshold: float = OPTIONS["threshold"].default,
        overlay_color: Sequence[int] = tuple(OPTIONS["overlay_color"].default),
        overlay_alpha: float = OPTIONS["overlay_alpha"].default,
        max_pixels: int = OPTIONS["max_pixels"].default,
    ) -> None:
        reason = OPTIONS["max_pixels"].problem(max_pixels)
        if reason:
            raise ValueError(f"max_pixels {reason}")
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

    def close(self) -> None:
        """Release the backend's network and device memory (idempotent)."""
        self.backend.close()

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
    *,
    model_path: str | os.PathLike | None = None,
    backend: str = OPTIONS["backend"].default,
    device: str = OPTIONS["device"].default,
    resize_policy: str = OPTIONS["resize_policy"].default,
    network_size: str = OPTIONS["network_size"].default,
    threshold: float = OPTIONS["threshold"].default,
    overlay_color: Sequence[int] = tuple(OPTIONS["overlay_color"].default),
    overlay_alpha: float = OPTIONS["overlay_alpha"].default,
    max_pixels: int = OPTIONS["max_pixels"].default,
    options: BackendOptions | None = None,
) -> Segmenter:
    """The one place a Segmenter is built (node, segment_bag, fcn-road-segment, demo).

    ``model_path`` None or "" = the default model.
    """
    path = model_path or default_model_path()
    if not model_path and not os.path.isfile(path):
        raise ModelError(
            f"the default model {path} is not installed; pass a model file "
            "(checkpoint .pt, .onnx or TensorRT .engine)"
        )
    backend_ = load_backend(
        path,
        backend,
        device,
        resize_policy=resize_policy,
        network_size=network_size,
        options=options,
    )
    return Segmenter(
        backend_,
        threshold=threshold,
        overlay_color=overlay_color,
        overlay_alpha=overlay_alpha,
        max_pixels=max_pixels,
    )


def segmenter_from_options(values: Mapping[str, Any]) -> Segmenter:
    """``make_segmenter`` from option values keyed by name (``options.SEGMENTER``).

    The node's parameters and the tools' parsed flags are such mappings. Every value is checked
    before the model loads: an OptionError names the first bad one.
    """
    bad = problems({o.name: values[o.name] for o in SEGMENTER})
    if bad:
        raise OptionError(bad[0])
    return make_segmenter(
        model_path=values["model_path"] or None,
        backend=values["backend"],
        device=values["device"],
        resize_policy=values["resize_policy"],
        network_size=values["network_size"],
        threshold=float(values["threshold"]),
        overlay_color=tuple(values["overlay_color"]),
        overlay_alpha=float(values["overlay_alpha"]),
        max_pixels=values["max_pixels"],
        options=backend_options(values),
    )


def add_segmenter_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, backend and per-frame flags every tool shares (the node's parameters)."""
    add_arguments(parser, SEGMENTER)


def segmenter_from_args(args: argparse.Namespace) -> Segmenter:
    """``segmenter_from_options`` of ``add_segmenter_arguments``' flags.

    A bad setting is a ModelError; the model's warnings are printed to stderr, one line each.
    """
    try:
        segmenter = segmenter_from_options(vars(args))
    except (ValueError, OptionError) as exc:
        raise ModelError(str(exc)) from exc
    for warning in segmenter.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    return segmenter
