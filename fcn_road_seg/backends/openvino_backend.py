"""OpenVINO backend: an exported ONNX model (the INT8 companion first) on Intel's CPU runtime.

OpenVINO reads the same QDQ INT8 file ONNX Runtime runs and executes it with int8 kernels
(AVX-512 VNNI, AMX), several times faster than ONNX Runtime on a CPU. Every input shape gets its
own compiled model, kept for the backend's life: measured faster than one dynamic-shape compile
(see BENCHMARKS.md). Past ``static_shapes`` shapes, a stream of ever new sizes runs on one
dynamic compile instead of compiling again and again. A fixed-shape model compiles once, at
start-up. Compile times are logged and shown by ``describe``. Every backend shares the process's
one ``openvino.Core`` (``shared_core``).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..errors import ModelError
from .base import Backend
from .companion import int8_companion
from .onnx_backend import checked_sidecar, input_size, io_problems

log = logging.getLogger(__name__)

#: the ``precision`` option -> OpenVINO's INFERENCE_PRECISION_HINT, and the CPU capability it needs
PRECISIONS = {"fp32": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}
#: OpenVINO element type names as ONNX Runtime spells them (what ``io_problems`` checks)
_TYPES = {"u8": "uint8", "f32": "float"}
STATIC_SHAPES = 4


def import_openvino() -> Any:
    """The openvino module, or a ModelError that says how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ModelError(
            "OpenVINO is not installed: pip install openvino, or pip install "
            "'fcn_road_seg[openvino]'; or use the onnxruntime or torch backend"
        ) from exc
    return openvino


def shared_core() -> Any:
    """The process's one ``openvino.Core``, made on first use and kept to the end.

    OpenVINO's CPU plugin gives the calling thread a new signal stack for each Core and unmaps it
    when that Core goes, restoring the one it replaced. Cores freed in another order than they
    were made leave the thread on an unmapped stack, and its next signal (Ctrl-C, a child's exit
    under a SIGCHLD handler) kills the process with SIGSEGV, printing nothing. One Core never
    frees its stack before the process ends.
    """
    return _core_of(import_openvino())


@functools.cache
def _core_of(openvino: Any) -> Any:
    """``openvino``'s Core, one per process (see ``shared_core``)."""
    return openvino.Core()


def onnx_for(model_path: str | Path) -> Path:
    """The ONNX file OpenVINO runs for ``model_path``: itself, or a checkpoint's INT8 companion."""
    path = Path(model_path)
    if path.suffix.lower() == ".onnx":
        return path
    companion = int8_companion(path) if path.suffix.lower() in (".pt", ".pth") else None
    if companion is None:
        raise ModelError(
            f"backend 'openvino' runs ONNX models: give an .onnx, or a checkpoint with an INT8 "
            f"companion ({path.stem}.int8.onnx from fcn-road-export --int8); {path} has none"
        )
    return companion


def _port(port: Any) -> SimpleNamespace:
    """An OpenVINO input/output described as ONNX Runtime describes its own (name, type, shape)."""
    shape = port.get_partial_shape()
    dims = [] if shape.rank.is_dynamic else [d.get_length() if d.is_static else "?" for d in shape]
    kind = port.get_element_type().get_type_name()
    return SimpleNamespace(
        name=port.any_name, type=f"tensor({_TYPES.get(kind, kind)})", shape=dims
    )


class OpenVinoBackend(Backend):
    """Runs an exported ONNX model with OpenVINO on the CPU, any input shape."""

    name = "openvino"

    def __init__(
        self,
        model_path: str | Path,
        device: torch.device,
        resize_policy: str = "letterbox",
        threads: int = 0,
        precision: str = "auto",
        static_shapes: int = STATIC_SHAPES,
    ) -> None:
        if device.type != "cpu":
            raise ModelError(f"backend 'openvino' runs on the CPU (device 'cpu'), not '{device}'")
        self.model_path = Path(model_path)
        self.core = shared_core()
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        if precision != "auto":
            self.config["INFERENCE_PRECISION_HINT"] = self._hint(precision)
        try:
            self.model = self.core.read_model(str(model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError for unreadable models
            raise ModelError(f"cannot load ONNX model {model_path}: {exc}") from exc
        inputs = [_port(p) for p in self.model.inputs]
        problems = io_problems(inputs, [_port(p) for p in self.model.outputs])
        try:
            size = None if problems else input_size(inputs[0].shape)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ModelError(
                f"{model_path} is not an fcn_road_seg ONNX model: {'; '.join(problems)} "
                "(export one with fcn-road-export)"
            )
        meta = checked_sidecar(self.model_path, size)
        super().__init__(device, size, resize_policy)
        self.set_model_metadata(meta)
        self.precision = precision
        self.static_shapes = static_shapes
        self.compile_s: dict[tuple[int, ...] | str, float] = {}
        self._requests: dict[tuple[int, ...], Any] = {}
        self._any_shape: Any = None
        if size is not None:
            self._request((1, *size, 3))

    def _hint(self, precision: str) -> str:
        """INFERENCE_PRECISION_HINT for ``precision``; a ModelError when this CPU lacks it."""
        if precision not in PRECISIONS:
            raise ModelError(
                f"unknown precision '{precision}' for backend 'openvino'; "
                f"choose one of {sorted(PRECISIONS)} or 'auto'"
            )
        hint, capability = PRECISIONS[precision]
        found = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if capability not in found:
            raise ModelError(
                f"precision '{precision}': OpenVINO cannot run {capability} on this CPU "
                f"(it can: {', '.join(found)})"
            )
        return hint

    def _compile(self, shape: tuple[int, ...] | None) -> Any:
        """An infer request of the model compiled for ``shape`` (None: its dynamic shape)."""
        model = self.model
        if shape is not None and not self.model.inputs[0].get_partial_shape().is_static:
            model = self.model.clone()
            model.reshape({self.model.inputs[0].any_name: list(shape)})
        start = time.perf_counter()
        try:
            compiled = self.core.compile_model(model, "CPU", self.config)
        except Exception as exc:  # OpenVINO raises RuntimeError when it cannot compile
            raise ModelError(f"OpenVINO cannot compile {self.model_path}: {exc}") from exc
        key = "any" if shape is None else "x".join(map(str, shape[1:3]))
        self.compile_s[key] = time.perf_counter() - start
        log.info(
            "OpenVINO compiled %s for %s in %.2f s",
            self.model_path.name,
            "any shape" if shape is None else key,
            self.compile_s[key],
        )
        return compiled.create_infer_request()

    def _request(self, shape: tuple[int, ...]) -> Any:
        """The infer request for ``shape``: its own compile, or the dynamic one past the limit."""
        request = self._requests.get(shape)
        if request is not None:
            return request
        if len(self._requests) < (self.static_shapes if self.input_size is None else 1):
            request = self._requests[shape] = self._compile(shape)
            return request
        if self._any_shape is None:
            self._any_shape = self._compile(None)
        return self._any_shape

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """P(road) for the fitted uint8 image (the result is copied out of OpenVINO's buffer)."""
        request = self._request(tuple(image.shape))
        out = request.infer({0: image.numpy()}, share_inputs=True)
        return torch.from_numpy(np.asarray(out[0]))

    def _release(self) -> None:
        """Drop every compiled model and the model read from the file."""
        self._requests, self._any_shape, self.model = {}, None, None

    def describe(self) -> str:
        """Adds the file, OpenVINO's precision and threads, and the compile times."""
        compiled = ", ".join(f"{k} in {v:.2f} s" for k, v in self.compile_s.items())
        return (
            f"{super().describe()} {self.model_path.name} [OpenVINO CPU, precision "
            f"{self.precision}, threads {self.config.get('INFERENCE_NUM_THREADS', 'auto')}; "
            f"compiled {compiled or 'nothing yet'}]"
        )
