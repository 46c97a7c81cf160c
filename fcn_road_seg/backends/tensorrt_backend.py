"""TensorRT runtime: run a TensorRT engine, checked against this system before deserializing.

``TensorRTBackend`` compares an engine's sidecar metadata with the running system first, so a
foreign or damaged engine is a ModelError, never a crash; given an .onnx model it builds and caches
an engine (``tensorrt_build``). Device buffers are torch CUDA tensors; inference is
``execute_async_v3`` on a dedicated torch stream. TensorRT is imported lazily: nothing else in the
package needs it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..metadata import read_sidecar, sha256_file, sidecar_path
from ..model import INPUT, OUTPUT, check_metadata, working_size_of
from .base import Backend
from .tensorrt_build import DEFAULT_WORKSPACE_GB, build_engine
from .tensorrt_common import (
    compare_metadata,
    engine_cache_path,
    engine_io_problems,
    import_tensorrt,
    onnx_source,
    system_facts,
)

log = logging.getLogger(__name__)

REBUILD_POLICIES = ("never", "if-stale")


class TensorRTBackend(Backend):
    """Runs a TensorRT engine (or builds and caches one beside a given .onnx) on a CUDA device."""

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | Path,
        device: torch.device,
        resize_policy: str = "letterbox",
        rebuild: str = "never",
        precision: str = "auto",
        workspace_gb: float = DEFAULT_WORKSPACE_GB,
        timing_cache: str | Path | None = None,
    ) -> None:
        super().__init__(device, None, resize_policy)
        if rebuild not in REBUILD_POLICIES:
            raise ModelError(
                f"unknown rebuild policy '{rebuild}'; choose one of {REBUILD_POLICIES}"
            )
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"TensorRT model file not found: {path}")
        if path.stat().st_size == 0:
            raise ModelError(f"TensorRT model {path} is empty (0 bytes)")
        if device.type != "cuda":
            raise ModelError(f"{path}: TensorRT runs on a CUDA device, not '{device}'")
        self.trt = import_tensorrt()
        self.build_options = {
            "precision": precision,
            "workspace_gb": workspace_gb,
            "timing_cache": timing_cache,
        }
        with torch.cuda.device(device):
            if path.suffix.lower() == ".onnx":  # a cached engine, (re)built whenever not current
                facts = system_facts(self.trt, device)
                self.engine_path, rebuild, source = (
                    engine_cache_path(path, facts, precision),
                    "if-stale",
                    path,
                )
            else:
                self.engine_path, source = path, None
            self._prepare(device, rebuild, source)
            self._adopt(self._deserialize())
            self.stream = torch.cuda.Stream(device)
        sources = [self.engine_path, source or self.engine_path.with_suffix(".onnx")]
        metas = [(p, read_sidecar(p)) for p in sources]
        for p, meta in metas:
            if meta is not None:
                check_metadata(meta, f"model metadata {sidecar_path(p)}")
        self.set_model_metadata(next(filter(working_size_of, (m for _, m in metas)), None))

    def _problems(
        self, device: torch.device, meta: dict | None, source: Path | None
    ) -> tuple[list[str], list[str]]:
        """(incompatible, stale) reasons for the engine file, from its metadata and this system."""
        path = self.engine_path
        if not path.is_file():
            return [f"{path} does not exist"], []
        if meta is None:
            return [], [
                f"it has no metadata {path.name}.json, so it cannot be checked before loading"
            ]
        found = {
            **system_facts(self.trt, device),
            "engine_sha256": sha256_file(path),
            "onnx_sha256": sha256_file(source) if source else None,
            "precision": self.build_options["precision"],
        }
        return compare_metadata(meta, found)

    def _prepare(self, device: torch.device, rebuild: str, source: Path | None) -> None:
        """Check the engine's metadata against this system; rebuild it or raise, as the policy
        says."""
        path = self.engine_path
        try:
            meta, unreadable = read_sidecar(path), []
        except ModelError as exc:
            meta, unreadable = None, [str(exc)]
        source = source or onnx_source(path, meta)
        incompatible, stale = (
            (unreadable, []) if unreadable else self._problems(device, meta, source)
        )
        if not incompatible and (not stale or rebuild == "never"):
            self.warnings += [f"TensorRT engine {path}: {reason}" for reason in stale]
            return
        reasons = "; ".join(incompatible + stale)
        if rebuild == "never":
            raise ModelError(
                f"TensorRT engine {path} cannot be used here: {reasons}. Rebuild it "
                "with fcn-road-build-engine, or load it with rebuild='if-stale'"
            )
        if source is None:
            raise ModelError(
                f"TensorRT engine {path} needs a rebuild ({reasons}) but its ONNX "
                "model was not found (looked for the one named in its metadata and "
                f"{path.with_suffix('.onnx')})"
            )
        if path.is_file():  # an engine that is there but cannot serve: say why it is replaced
            self.warnings.append(f"TensorRT engine {path} rebuilt from {source}: {reasons}")
        log.warning(
            "building TensorRT engine %s from %s (%s); this takes a while", path, source, reasons
        )
        start = time.perf_counter()
        build_engine(source, path, device, **self.build_options)
        log.warning("built TensorRT engine %s in %.1f s", path, time.perf_counter() - start)

    def _deserialize(self) -> Any:
        """The engine object, with its I/O checked; ModelError when TensorRT rejects the file."""
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise ModelError(
                f"TensorRT could not deserialize {self.engine_path} (see the "
                "TensorRT messages above)"
            )
        io = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            io[name] = (
                engine.get_tensor_mode(name).name,
                engine.get_tensor_dtype(name).name,
                tuple(engine.get_tensor_shape(name)),
            )
        problems = engine_io_problems(io)
        if problems:
            raise ModelError(
                f"{self.engine_path} is not an fcn_road_seg engine: {'; '.join(problems)}"
            )
        return engine

    def _adopt(self, engine: Any) -> None:
        """Use ``engine``: its execution context, and its input size (None when dynamic)."""
        context = engine.create_execution_context()
        if context is None:
            raise ModelError(
                f"TensorRT could not create an execution context for {self.engine_path} "
                "(out of GPU memory? see the TensorRT messages above)"
            )
        self.engine, self.context = engine, context
        shape = tuple(engine.get_tensor_shape(INPUT))
        self.dynamic = min(shape[1:3]) < 0  # then every call sets the input shape
        self.input_size = None if self.dynamic else (shape[1], shape[2])

    def _output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for an input of ``shape``, set first on a dynamic engine (even when
        a network size fixes what it is given)."""
        if self.dynamic and not self.context.set_input_shape(INPUT, shape):
            raise ModelError(
                f"a {shape[2]}x{shape[1]} image is outside the optimisation profile of "
                f"{self.engine_path}; rebuild it with a larger --max-size"
            )
        return tuple(self.context.get_tensor_shape(OUTPUT))

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """``execute_async_v3`` on the backend's stream, ordered after the upload and before
        post-processing."""
        current = torch.cuda.current_stream(self.device)
        prob = torch.empty(
            self._output_shape(tuple(image.shape)), dtype=torch.float32, device=self.device
        )
        self.context.set_tensor_address(INPUT, image.data_ptr())
        self.context.set_tensor_address(OUTPUT, prob.data_ptr())
        self.stream.wait_stream(current)  # the upload and fit are queued on the current stream
        with torch.cuda.device(self.device):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ModelError(f"TensorRT inference failed with {self.engine_path}")
        image.record_stream(self.stream)
        prob.record_stream(self.stream)
        current.wait_stream(self.stream)  # post-processing waits for the network
        return prob

    def _release(self) -> None:
        """Drop the execution context before the engine, as TensorRT requires."""
        self.context = None
        self.engine = None

    def describe(self) -> str:
        """Adds the engine file and TensorRT version to the base description."""
        return f"{super().describe()} {self.engine_path.name} (TensorRT {self.trt.__version__})"
