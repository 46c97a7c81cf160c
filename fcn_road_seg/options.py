"""Every option of the node and the tools, declared once.

Each ``Option`` has its name (the node's parameter), default, help text, choices or range, and
whether it may change at run time. From it come the node's ``ParameterDescriptor``s
(``ros/node.py``), the tools' argparse flags (``add_arguments``: ``segment_bag``,
``fcn-road-segment``), ``BackendOptions`` (``backend_options``), ``config/seg.yaml`` (checked by a
test) and the checks (``Option.problem``). A value parsed from a flag is stored under the
option's name, so the tools and the node hand the same mapping to the core.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .backends import BACKENDS, RESIZE_POLICIES, BackendOptions, parse_network_size
from .bounds import (
    CAMERA_ANGLE,
    CAMERA_HEIGHT,
    GRID_EXTENT,
    GRID_RESOLUTION,
    WORKSPACE_GB,
    Bounds,
)
from .device import device_problem
from .errors import ImageError, ModelError, OptionError
from .grid import MOUNT, OCCUPANCY_MODES, TARGET_FRAME, GridSpec
from .image import MAX_PIXELS, MIN_SIDE, check_size

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
REBUILDS = ("never", "if-stale")
UNIT = Bounds(0.0, 1.0)
THREADS = Bounds(0, 256)
COLOUR = Bounds(0, 255)
SIDE = Bounds(0, 8192)


def _is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    number = _is_int(value) or isinstance(value, (float, np.floating))
    return number and math.isfinite(value)


def _network_size_problem(text: str) -> str | None:
    """Why ``text`` is no ``network_size`` (auto, native or HxW), None when it is one."""
    if text == "auto":
        return None
    try:
        parse_network_size(text)
    except ModelError as exc:
        return str(exc).removeprefix(f"network_size '{text}'").lstrip(": ") or str(exc)
    return None


@dataclass(frozen=True)
class Option:
    """One option: its parameter name, default, help, choices or range, run-time or not.

    ``flag`` is the tools' flag (None: the node only). List options have ``length`` elements,
    each in ``bounds``. ``text_problem`` checks a string beyond ``choices``.
    """

    name: str
    default: Any
    help: str
    flag: str | None = None
    choices: tuple[str, ...] = ()
    bounds: Bounds | None = None
    length: int | None = None
    runtime: bool = False
    metavar: tuple[str, ...] | None = None
    text_problem: Callable[[str], str | None] | None = None

    @property
    def kind(self) -> str:
        """bool | int | float | str | ints | floats, from the default's type."""
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, (list, tuple)):
            return "ints" if all(_is_int(v) for v in self.default) else "floats"
        return {int: "int", float: "float", str: "str"}[type(self.default)]

    def _range(self) -> str:
        """`` in [low, high]`` for messages, or ""."""
        if self.bounds is None:
            return ""
        unit = f" {self.bounds.unit}" if self.bounds.unit else ""
        return f" in [{self.bounds.low:g}, {self.bounds.high:g}]{unit}"

    def _element_problem(self, value: Any, integer: bool) -> bool:
        """True when one number is of the wrong type or out of ``bounds``."""
        if not (_is_int(value) if integer else _is_number(value)):
            return True
        return self.bounds is not None and not self.bounds.low <= value <= self.bounds.high

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is invalid (``must be ..., got ...``), None when it is fine."""
        kind = self.kind
        if kind == "bool":
            ok = isinstance(value, (bool, np.bool_))
            return None if ok else f"must be true or false, got {value!r}"
        if kind == "str":
            if not isinstance(value, str):
                return f"must be a string, got {value!r}"
            if self.choices and value not in self.choices:
                return f"must be one of {', '.join(self.choices)}, got {value!r}"
            return self.text_problem(value) if self.text_problem else None
        if kind in ("int", "float"):
            if self._element_problem(value, kind == "int"):
                what = "an integer" if kind == "int" else "a finite number"
                return f"must be {what}{self._range()}, got {value!r}"
            return None
        sequence = isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str)
        integer = kind == "ints"
        if (
            not sequence
            or (self.length is not None and len(value) != self.length)
            or any(self._element_problem(v, integer) for v in value)
        ):
            count = f"{self.length} " if self.length is not None else ""
            what = "integers" if integer else "finite numbers"
            each = f", each{self._range()}" if self.bounds else ""
            shown = list(value) if isinstance(value, np.ndarray) else value
            return f"must be {count}{what}{each}, got {shown!r}"
        return None

    def check(self, value: Any) -> Any:
        """``value`` when valid; an OptionError naming the option when not."""
        reason = self.problem(value)
        if reason:
            raise OptionError(f"{self.name} {reason}")
        return value

    def _parse_one(self, text: str) -> Any:
        """argparse ``type`` of one number: in range, else argparse names the flag."""
        integer = self.kind in ("int", "ints")
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not {'an integer' if integer else 'a number'}: {text!r}"
            ) from None
        if self._element_problem(value, integer):
            what = "an integer" if integer else "a finite number"
            raise argparse.ArgumentTypeError(f"must be {what}{self._range()}, got {text}")
        return value

    def _parse_text(self, text: str) -> str:
        """argparse ``type`` of a string checked by ``text_problem``."""
        reason = self.text_problem(text) if self.text_problem else None
        if reason:
            raise argparse.ArgumentTypeError(reason)
        return text

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """This option as the flag ``self.flag`` of ``parser``, stored under ``self.name``."""
        kind = self.kind
        kw: dict[str, Any] = {"dest": self.name, "help": self.help}
        if kind == "bool":
            parser.add_argument(self.flag, action="store_true", **kw)
            return
        listed = kind in ("ints", "floats")
        kw["default"] = list(self.default) if listed else self.default
        shown = " ".join(map(str, self.default)) if listed else self.default
        kw["help"] += f" (default: {shown if shown != '' else 'none'})"
        if kind == "str":
            if self.choices:
                kw["choices"] = self.choices
            elif self.text_problem:
                kw["type"] = self._parse_text
        else:
            kw["type"] = self._parse_one
            if kind in ("ints", "floats"):
                kw["nargs"] = self.length
                kw["metavar"] = self.metavar
        parser.add_argument(self.flag, **kw)


_GRID = GridSpec()

#: the per-frame core's options: model, backend and the run-time settings (node and tools)
SEGMENTER = (
    Option(
        "model_path",
        "",
        "model file: .pt checkpoint (torch), .onnx (ONNX Runtime, OpenVINO, or TensorRT on a GPU) "
        "or TensorRT .engine; '' = the model shipped in the package",
        flag="--model",
    ),
    Option(
        "backend",
        "auto",
        "inference backend (auto: TensorRT for .onnx on a GPU; on a CPU the fastest of OpenVINO, "
        "ONNX Runtime and torch, measured once per model and CPU and cached)",
        flag="--backend",
        choices=BACKENDS,
    ),
    Option(
        "device",
        "auto",
        "torch device: auto (the first CUDA GPU when there is one) | cpu | cuda | cuda:N",
        flag="--device",
        text_problem=device_problem,
    ),
    Option(
        "network_size",
        "auto",
        "size the network runs at: auto (the model's working scale, each frame's aspect ratio "
        "kept) | native (each frame's own size) | HxW, e.g. 188x624",
        flag="--network-size",
        text_problem=_network_size_problem,
    ),
    Option(
        "test_time_flip",
        BackendOptions.flip,
        "also run each frame mirrored left-right and average P(road), for twice the network "
        "time: KITTI F@0.5 +0.6, CamVid -0.4 with the default model",
        flag="--flip",
    ),
    Option(
        "resize_policy",
        "letterbox",
        "how frames meet a fixed-shape model exported at another size than its working size: "
        "letterbox (keep the aspect ratio, pad) | stretch",
        flag="--resize-policy",
        choices=RESIZE_POLICIES,
    ),
    Option(
        "precision",
        BackendOptions.precision,
        "network precision: torch auto|fp32|fp16|bf16; TensorRT auto|fp32|fp16|int8; OpenVINO "
        "auto|fp32|bf16|fp16 (what the ONNX model leaves in float)",
        flag="--precision",
        choices=PRECISIONS,
    ),
    Option(
        "torch_compile",
        BackendOptions.compile,
        "torch.compile the network (torch backend)",
        flag="--compile",
    ),
    Option(
        "cpu_threads",
        BackendOptions.threads,
        "CPU threads of ONNX Runtime and OpenVINO (0 = their default: all cores)",
        flag="--threads",
        bounds=THREADS,
    ),
    Option(
        "trt_rebuild",
        BackendOptions.rebuild,
        "TensorRT .engine files: rebuild a stale one from the ONNX named in its metadata",
        flag="--rebuild",
        choices=REBUILDS,
    ),
    Option(
        "trt_workspace_gb",
        BackendOptions.workspace_gb,
        "TensorRT builder workspace (engines built at startup from an .onnx)",
        flag="--workspace-gb",
        bounds=WORKSPACE_GB,
    ),
    Option(
        "trt_timing_cache",
        BackendOptions.timing_cache,
        "TensorRT timing cache file ('' = none)",
        flag="--timing-cache",
    ),
    Option(
        "max_pixels",
        MAX_PIXELS,
        "largest width x height accepted; larger frames are bad messages (compressed ones "
        f"before decoding); each side must also be >= {MIN_SIDE}",
        flag="--max-pixels",
        bounds=Bounds(MIN_SIDE**2, 1 << 31),
    ),
    Option(
        "threshold",
        0.5,
        "a pixel is road when P(road) >= threshold; changeable at run time",
        flag="--threshold",
        bounds=UNIT,
        runtime=True,
    ),
    Option(
        "overlay_alpha",
        0.5,
        "blend weight of overlay_color over road pixels in the overlay; changeable at run time",
        flag="--overlay-alpha",
        bounds=UNIT,
        runtime=True,
    ),
    Option(
        "overlay_color",
        [0, 255, 0],
        "[R, G, B] painted over road pixels in the overlay; changeable at run time",
        flag="--overlay-color",
        bounds=COLOUR,
        length=3,
        runtime=True,
        metavar=("R", "G", "B"),
    ),
)

#: the drivable-area grid's options (node and segment_bag)
GRID = (
    Option(
        "target_frame",
        TARGET_FRAME,
        "frame of the grid; the ground is its z = 0 plane (x forward, y left)",
        flag="--target-frame",
    ),
    Option(
        "image_rectified",
        False,
        "the images are rectified (image_rect): the grid projects through camera_info's P and "
        "ignores D; false: they are the raw images camera_info describes (image_raw), and the "
        "grid follows D's distortion (plumb_bob, rational_polynomial, equidistant)",
        flag="--image-rectified",
    ),
    Option(
        "camera_height",
        MOUNT[0],
        "camera height over the ground without tf, m (KITTI: 1.65)",
        flag="--camera-height",
        bounds=CAMERA_HEIGHT,
    ),
    Option(
        "camera_pitch",
        MOUNT[1],
        "camera pitch without tf, rad (positive = looking down)",
        flag="--camera-pitch",
        bounds=CAMERA_ANGLE,
    ),
    Option(
        "camera_roll",
        MOUNT[2],
        "camera roll without tf, rad (positive = clockwise seen from behind)",
        flag="--camera-roll",
        bounds=CAMERA_ANGLE,
    ),
    Option(
        "grid_resolution",
        _GRID.resolution,
        "grid cell size, m",
        flag="--grid-resolution",
        bounds=GRID_RESOLUTION,
    ),
    Option(
        "grid_x_range",
        list(_GRID.x_range),
        "[min, max] of the grid along target_frame's x (forward), m",
        flag="--grid-x-range",
        bounds=GRID_EXTENT,
        length=2,
        metavar=("MIN", "MAX"),
    ),
    Option(
        "grid_y_range",
        list(_GRID.y_range),
        "[min, max] of the grid along target_frame's y (left), m",
        flag="--grid-y-range",
        bounds=GRID_EXTENT,
        length=2,
        metavar=("MIN", "MAX"),
    ),
    Option(
        "grid_occupancy",
        OCCUPANCY_MODES[0],
        "cell values: binary (road 0, other 100) | scaled (round(100 (1 - P))); unseen cells -1",
        flag="--grid-occupancy",
        choices=OCCUPANCY_MODES,
    ),
)

#: what only the node has: its inputs and outputs, warm-up, tf, the former name of cpu_threads
NODE = (
    Option(
        "onnx_threads",
        0,
        "former name of cpu_threads, used when cpu_threads is 0",
        bounds=THREADS,
    ),
    Option(
        "warmup_size",
        [375, 1242],
        "[height, width] of the blank frames run at startup (KITTI: 375 x 1242); [0, 0] = none",
        bounds=SIDE,
        length=2,
    ),
    Option(
        "publish_confidence",
        True,
        "advertise road_seg/confidence (mono8, 255 * P(road)); computed only while subscribed",
    ),
    Option(
        "publish_overlay",
        True,
        "advertise road_seg/overlay (the input with road pixels tinted); computed only while "
        "subscribed",
    ),
    Option(
        "publish_grid",
        True,
        "advertise road_seg/grid (nav_msgs/OccupancyGrid of drivable road in target_frame, from "
        "camera_info and the camera's pose); computed only while subscribed",
    ),
    Option(
        "use_compressed",
        False,
        "subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image",
    ),
    Option(
        "grid_use_tf",
        False,
        "the camera's pose in target_frame from tf2 (the image's frame_id); false: from "
        "camera_height, camera_pitch and camera_roll, target_frame on the ground under the camera",
    ),
)

OPTIONS: dict[str, Option] = {o.name: o for o in (*SEGMENTER, *GRID, *NODE)}
RUNTIME = tuple(name for name, o in OPTIONS.items() if o.runtime)


def add_arguments(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """``options`` as flags of ``parser`` (each value stored under the option's name)."""
    for option in options:
        option.add_to(parser)


def defaults(options: Iterable[Option] = OPTIONS.values()) -> dict[str, Any]:
    """``{name: default}`` of ``options`` (lists copied)."""
    return {o.name: list(o.default) if o.length else o.default for o in options}


def problems(values: Mapping[str, Any]) -> list[str]:
    """``"<name> must be ..."`` for each invalid value among the known options in ``values``."""
    found = [
        f"{name} {reason}"
        for name, value in values.items()
        if name in OPTIONS and (reason := OPTIONS[name].problem(value))
    ]
    warmup = _warmup_problem(values) if not found else None
    return found + ([warmup] if warmup else [])


def _warmup_problem(values: Mapping[str, Any]) -> str | None:
    """Why ``warmup_size`` is no frame the node would accept under ``max_pixels``; None when it
    is one or [0, 0] (no warm-up)."""
    size = values.get("warmup_size")
    if size is None or list(size) == [0, 0]:
        return None
    try:
        check_size(int(size[0]), int(size[1]), int(values.get("max_pixels", MAX_PIXELS)))
    except ImageError as exc:
        return f"warmup_size {list(size)}: {exc}; [0, 0] = no warm-up"
    return None


def check_setting(name: str, value: Any) -> str | None:
    """Why ``value`` is invalid for the run-time setting ``name``, None when it is fine."""
    if name not in RUNTIME:
        return f"'{name}' is not a run-time setting (those are {', '.join(RUNTIME)})"
    reason = OPTIONS[name].problem(value)
    return f"{name} {reason}" if reason else None


def backend_options(values: Mapping[str, Any]) -> BackendOptions:
    """The backends' settings from option values (the node's parameters or the tools' flags)."""
    return BackendOptions(
        precision=values["precision"],
        compile=values["torch_compile"],
        threads=values["cpu_threads"] or values.get("onnx_threads", 0),
        rebuild=values["trt_rebuild"],
        workspace_gb=float(values["trt_workspace_gb"]),
        timing_cache=values["trt_timing_cache"],
        flip=values["test_time_flip"],
    )
