"""TensorRT: build an engine from the exported ONNX model, check it against this system, and run it.

``EngineBuilder`` follows NVIDIA's TensorRT ``samples/python`` (Builder, OnnxParser, BuilderConfig,
``build_serialized_network``) for TensorRT 10 and 11: networks are always explicit batch (no
``EXPLICIT_BATCH`` flag, no ``build_engine``, no ``max_workspace_size``), the workspace is a memory-pool
limit, and a timing cache can be loaded and saved. Precision:

- TensorRT 10 (weak typing): FP16 via ``BuilderFlag.FP16``; INT8 via ``BuilderFlag.INT8`` with an entropy
  calibrator (``IInt8EntropyCalibrator2``) fed from a folder of images, or a Q/DQ-quantized ONNX model.
- TensorRT 11 (strong typing only; the precision flags and implicit calibration are gone): the ONNX model
  carries its precision. ``fcn-road-export --fp16`` writes an FP16 model; for INT8, quantize the ONNX
  model with Q/DQ nodes (explicit quantization, see ``EXPLICIT_QUANTIZATION``) and build that.

Every engine is written atomically with a sidecar ``<engine>.json`` (TensorRT version, GPU and compute
capability, shapes, ONNX and engine SHA-256, precision, date). ``TensorRTBackend`` compares it with the
running system *before* deserializing, so a foreign or damaged engine is a ModelError, never a crash.
Device buffers are torch CUDA tensors; inference is ``execute_async_v3`` on a dedicated torch stream.
TensorRT is imported lazily: nothing else in the package needs it.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from ..atomic import atomic_path
from ..cache import cache_dir
from ..errors import ModelError, RoadSegError
from ..image import read_rgb_folder
from ..model import INPUT, OUTPUT, working_size_of
from ..device import resolve_device
from ..metadata import read_sidecar, sha256_file, write_sidecar
from . import Backend, fit

log = logging.getLogger(__name__)

ENGINE_FORMAT = "fcn_road_seg.engine/1"
PRECISIONS = ("auto", "fp32", "fp16", "int8")
REBUILD_POLICIES = ("never", "if-stale")
#: optimisation profile (min, opt, max) as (H, W) for ONNX models with dynamic height and width
DEFAULT_PROFILE = ((32, 32), (384, 1248), (1536, 2048))
DEFAULT_WORKSPACE_GB = 4.0
EXPLICIT_QUANTIZATION = (
    "use explicit quantization instead: insert Q/DQ (QuantizeLinear/DequantizeLinear) nodes into the ONNX model, "
    "e.g. with NVIDIA ModelOpt (python -m modelopt.onnx.quantization --onnx_path model.onnx --quantize_mode int8 "
    "--calibration_data calib.npy) or onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ), "
    "then build the quantized model with --int8")


def import_tensorrt() -> Any:
    """The tensorrt module, or a ModelError that says how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ModelError("TensorRT is not installed: pip install tensorrt (it needs an NVIDIA GPU and driver), "
                         "or use the onnxruntime or torch backend") from exc
    return tensorrt


# --- what the ONNX model and the installed TensorRT can do (pure, testable without TensorRT) ---------------------

@dataclass(frozen=True)
class OnnxInfo:
    """What the builder needs to know about an ONNX model before parsing it."""

    path: Path
    sha256: str
    input_shape: tuple[int | str, ...]
    fp16: bool
    qdq: bool

    @property
    def dynamic(self) -> bool:
        """Height or width is symbolic."""
        return not all(isinstance(d, int) and d > 0 for d in self.input_shape[1:3])


def inspect_onnx(path: str | Path) -> OnnxInfo:
    """Read an ONNX model's input shape and whether it is already typed (fp16 tensors, Q/DQ nodes)."""
    try:
        import onnx
    except ImportError as exc:
        raise ModelError("building a TensorRT engine needs the onnx package: pip install onnx") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors and OSError
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from exc
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or inputs[0].name != INPUT:
        raise ModelError(f"{path} is not an fcn_road_seg ONNX model: expected one input '{INPUT}', found "
                         f"{[i.name for i in inputs]}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in inputs[0].type.tensor_type.shape.dim)
    half = onnx.TensorProto.FLOAT16
    fp16 = any(t.data_type == half for t in model.graph.initializer) or any(
        a.name == "to" and a.i == half for n in model.graph.node if n.op_type == "Cast" for a in n.attribute)
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return OnnxInfo(Path(path), sha256_file(path), dims, fp16, qdq)


@dataclass(frozen=True)
class TrtFeatures:
    """Which build APIs the installed TensorRT has (TensorRT 11 dropped weak typing and implicit INT8)."""

    version: str
    weak_typing: bool
    implicit_int8: bool
    strongly_typed_flag: bool


def trt_features(trt: Any) -> TrtFeatures:
    """Probe the tensorrt module for the APIs that differ between TensorRT 10 and 11."""
    flags = trt.BuilderFlag
    return TrtFeatures(
        version=trt.__version__,
        weak_typing=hasattr(flags, "FP16"),
        implicit_int8=hasattr(flags, "INT8") and hasattr(trt, "IInt8EntropyCalibrator2")
        and hasattr(trt.IBuilderConfig, "int8_calibrator"),
        strongly_typed_flag=hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"))


@dataclass(frozen=True)
class BuildPlan:
    """How to build: the resulting precision, network typing, builder flags and whether to calibrate."""

    precision: str
    strongly_typed: bool
    flags: tuple[str, ...] = ()
    calibrate: bool = False


def plan_build(onnx: OnnxInfo, precision: str, features: TrtFeatures) -> BuildPlan:
    """Choose network typing and builder flags for ``precision`` on this TensorRT; ModelError when impossible."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision '{precision}'; choose one of {PRECISIONS}")
    own = "int8" if onnx.qdq else "fp16" if onnx.fp16 else "fp32"
    if precision == "auto":
        precision = own if own != "fp32" or not features.weak_typing else "fp16"
    if onnx.qdq:
        if precision != "int8":
            raise ModelError(f"{onnx.path} is quantized (Q/DQ nodes): build it as int8, not {precision}")
        if features.weak_typing:  # TensorRT 10: Q/DQ network with the INT8 flag, FP16 for the layers left
            return BuildPlan("int8", False, ("INT8", "FP16"))
        return BuildPlan("int8", True)
    if onnx.fp16:
        if precision != "fp16":
            raise ModelError(f"{onnx.path} is an fp16 model: build it as fp16 (or export it again without --fp16)")
        typed = features.strongly_typed_flag or not features.weak_typing
        return BuildPlan("fp16", typed, () if typed else ("FP16",))
    if precision == "fp32":
        return BuildPlan("fp32", not features.weak_typing)
    if precision == "fp16":
        if not features.weak_typing:
            raise ModelError(f"TensorRT {features.version} has no FP16 builder flag (strong typing only): export "
                             "the model with fcn-road-export --fp16, or convert it with ModelOpt AutoCast "
                             "(python -m modelopt.onnx.autocast --onnx_path model.onnx)")
        return BuildPlan("fp16", False, ("FP16",))
    if not features.implicit_int8:
        raise ModelError(f"TensorRT {features.version} has no implicit INT8 calibration (deprecated in TensorRT "
                         f"10, removed in 11) and {onnx.path} has no Q/DQ nodes: {EXPLICIT_QUANTIZATION}")
    return BuildPlan("int8", False, ("INT8", "FP16"), calibrate=True)


# --- engine metadata: written beside every engine, checked before deserializing ----------------------------------

def compare_metadata(meta: Mapping[str, Any], found: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(reasons the engine cannot be loaded here, reasons it is stale) from its metadata and this system.

    ``found`` holds ``tensorrt``, ``compute_capability``, ``gpu`` and ``engine_sha256`` of the running
    system and engine file, ``onnx_sha256`` when the ONNX model it came from is at hand, and
    ``precision`` when a particular one is wanted.
    """
    missing = [k for k in ("format", "tensorrt", "compute_capability", "engine_sha256") if k not in meta]
    if missing:
        return [f"its metadata lacks {', '.join(missing)}"], []
    incompatible, stale = [], []
    if meta["format"] != ENGINE_FORMAT:
        incompatible.append(f"its metadata format is '{meta['format']}', not '{ENGINE_FORMAT}'")
    if meta["tensorrt"] != found["tensorrt"]:
        incompatible.append(f"it was built with TensorRT {meta['tensorrt']} but this is TensorRT {found['tensorrt']} "
                            "(an engine only loads in the TensorRT version that built it)")
    if meta["compute_capability"] != found["compute_capability"]:
        incompatible.append(f"it was built for compute capability {meta['compute_capability']} "
                            f"({meta.get('gpu', '?')}) but this GPU ({found['gpu']}) is {found['compute_capability']}")
    if meta["engine_sha256"] != found["engine_sha256"]:
        incompatible.append("the engine file does not match the SHA-256 in its metadata (corrupt, truncated or "
                            "replaced)")
    if not incompatible and meta.get("gpu") != found["gpu"]:
        stale.append(f"it was built on {meta.get('gpu')}, this is {found['gpu']} (same compute capability: it loads, "
                     "but tactics were tuned for the other GPU)")
    if found.get("onnx_sha256") and meta.get("onnx_sha256") not in (None, found["onnx_sha256"]):
        stale.append("its ONNX model has changed since it was built")
    if found.get("precision") not in (None, "auto", meta.get("precision")):
        stale.append(f"it is {meta.get('precision')}, {found['precision']} was asked for")
    return incompatible, stale


def system_facts(trt: Any, device: torch.device) -> dict[str, str]:
    """TensorRT version, GPU name and compute capability of ``device``."""
    major, minor = torch.cuda.get_device_capability(device)
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(device),
            "compute_capability": f"{major}.{minor}"}


def engine_cache_path(onnx_path: str | Path, facts: Mapping[str, str], precision: str) -> Path:
    """Where an engine built at startup from ``onnx_path`` is cached: keyed by the ONNX's SHA-256, the
    TensorRT version, the GPU and the precision, in the writable cache folder (never beside the model)."""
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", facts["gpu"]).strip("-")
    key = f"{sha256_file(onnx_path)[:16]}-trt{facts['tensorrt']}-{gpu}-sm{facts['compute_capability']}-{precision}"
    return cache_dir() / "engines" / f"{Path(onnx_path).stem}-{key}.engine"


def onnx_source(engine_path: Path, meta: Mapping[str, Any] | None) -> Path | None:
    """The ONNX model an engine was built from: the one its metadata names, else ``<engine stem>.onnx``."""
    named = meta.get("onnx") if meta else None
    for candidate in ([engine_path.parent / named] if named else []) + [engine_path.with_suffix(".onnx")]:
        if candidate.is_file():
            return candidate
    return None


def engine_io_problems(io: Mapping[str, tuple[str, str, tuple[int, ...]]]) -> list[str]:
    """What is wrong with an engine's I/O tensors ({name: (mode, dtype name, shape)}) for this package."""
    want = {INPUT: ("INPUT", "UINT8", 4), OUTPUT: ("OUTPUT", "FLOAT", 3)}
    if set(io) != set(want):
        return [f"expected I/O tensors {sorted(want)}, found {sorted(io)}"]
    problems = []
    for name, (mode, dtype, rank) in want.items():
        got_mode, got_dtype, shape = io[name]
        if (got_mode, got_dtype, len(shape)) != (mode, dtype, rank):
            problems.append(f"'{name}' is {got_mode} {got_dtype} {list(shape)}, expected {mode} {dtype} of rank {rank}")
    if not problems and (io[INPUT][2][3] != 3 or io[INPUT][2][0] not in (1, -1)):
        problems.append(f"'{INPUT}' has shape {list(io[INPUT][2])}, expected [1, H, W, 3]")
    return problems


# --- building --------------------------------------------------------------------------------------------------

def _calibration_images(folder: str | Path, size: tuple[int, int], device: torch.device,
                        limit: int) -> list[torch.Tensor]:
    """Up to ``limit`` images of ``folder`` letterboxed to ``size``, as 1 x H x W x 3 uint8 RGB CUDA tensors."""
    return [fit(torch.from_numpy(rgb)[None].to(device), size, "letterbox")[0]
            for rgb in read_rgb_folder(folder, limit)]


def make_calibrator(trt: Any, batches: Sequence[torch.Tensor], cache: Path | None) -> Any:
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` (CUDA tensors, batch 1) and keeps a cache file."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches: Iterator[torch.Tensor] = iter(batches)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Sequence[str]) -> list[int] | None:
            batch = next(self.batches, None)
            return None if batch is None else [batch.data_ptr()]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                with atomic_path(cache) as tmp:
                    tmp.write_bytes(bytes(data))

    return Calibrator()


class EngineBuilder:
    """Parses an ONNX model and builds a serialized TensorRT engine from it (as in NVIDIA's samples)."""

    def __init__(self, workspace_gb: float = DEFAULT_WORKSPACE_GB, timing_cache: str | Path | None = None,
                 verbose: bool = False) -> None:
        self.trt = import_tensorrt()
        self.features = trt_features(self.trt)
        self.logger = self.trt.Logger(self.trt.Logger.VERBOSE if verbose else self.trt.Logger.WARNING)
        self.trt.init_libnvinfer_plugins(self.logger, namespace="")
        self.builder = self.trt.Builder(self.logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        self.timing_cache_path = Path(timing_cache) if timing_cache else None
        self.timing_cache = None
        if self.timing_cache_path:
            data = self.timing_cache_path.read_bytes() if self.timing_cache_path.is_file() else b""
            self.timing_cache = self.config.create_timing_cache(data)
            if self.timing_cache is None or not self.config.set_timing_cache(self.timing_cache, ignore_mismatch=False):
                raise ModelError(f"TensorRT cannot use the timing cache {self.timing_cache_path} (made by another "
                                 "TensorRT version or GPU?): delete it or pass another file")
        self.network = self.parser = None

    def create_network(self, onnx: OnnxInfo, strongly_typed: bool) -> None:
        """Parse ``onnx`` into a new network definition; ModelError with the parser's errors on failure."""
        flags = 0
        if strongly_typed and self.features.strongly_typed_flag:
            flags = 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        self.network = self.builder.create_network(flags)
        self.parser = self.trt.OnnxParser(self.network, self.logger)
        if not self.parser.parse_from_file(str(onnx.path)):
            errors = "; ".join(str(self.parser.get_error(i)) for i in range(self.parser.num_errors))
            raise ModelError(f"TensorRT cannot parse {onnx.path}: {errors or 'unknown error'}")

    def io_shapes(self) -> dict[str, list[int]]:
        """Input and output shapes of the parsed network (-1 for dynamic dimensions)."""
        tensors = [self.network.get_input(0), self.network.get_output(0)]
        return {t.name: list(t.shape) for t in tensors}

    def add_profile(self, sizes: Sequence[tuple[int, int]]) -> Any:
        """An optimisation profile for a dynamic-size input: (min, opt, max) as (H, W)."""
        profile = self.builder.create_optimization_profile()
        profile.set_shape(INPUT, *[(1, h, w, 3) for h, w in sizes])
        self.config.add_optimization_profile(profile)
        return profile

    def create_engine(self, plan: BuildPlan, calibrator: Any = None, profile: Any = None) -> bytes:
        """Build the serialized engine for ``plan``; saves the timing cache when one was given."""
        for flag in plan.flags:
            self.config.set_flag(getattr(self.trt.BuilderFlag, flag))
        if calibrator is not None:
            self.config.int8_calibrator = calibrator
            if profile is not None:
                self.config.set_calibration_profile(profile)
        serialized = self.builder.build_serialized_network(self.network, self.config)
        if serialized is None:
            raise ModelError("TensorRT failed to build the engine (see the TensorRT messages above)")
        if self.timing_cache is not None:
            with atomic_path(self.timing_cache_path) as tmp:
                tmp.write_bytes(bytes(self.timing_cache.serialize()))
        return bytes(serialized)


def build_engine(onnx_path: str | Path, engine_path: str | Path, device: torch.device | None = None,
                 precision: str = "auto", workspace_gb: float = DEFAULT_WORKSPACE_GB,
                 timing_cache: str | Path | None = None, calib_dir: str | Path | None = None,
                 calib_cache: str | Path | None = None, calib_images: int = 64,
                 profile: Sequence[tuple[int, int]] = DEFAULT_PROFILE, verbose: bool = False) -> dict[str, Any]:
    """Build ``engine_path`` from ``onnx_path`` and write it with its metadata, atomically; returns the metadata."""
    device = device or resolve_device("cuda")
    onnx = inspect_onnx(onnx_path)
    engine_path = Path(engine_path)
    with torch.cuda.device(device):
        builder = EngineBuilder(workspace_gb, timing_cache, verbose)
        plan = plan_build(onnx, precision, builder.features)
        builder.create_network(onnx, plan.strongly_typed)
        opt_profile = builder.add_profile(profile) if onnx.dynamic else None
        calibrator = None
        if plan.calibrate:
            if calib_dir is None and not (calib_cache and Path(calib_cache).is_file()):
                raise ModelError("INT8 calibration needs --calib-dir (a folder of representative images) or an "
                                 f"existing --calib-cache; or {EXPLICIT_QUANTIZATION}")
            size = tuple(profile[1]) if onnx.dynamic else tuple(onnx.input_shape[1:3])
            batches = _calibration_images(calib_dir, size, device, calib_images) if calib_dir else []
            calibrator = make_calibrator(builder.trt, batches, Path(calib_cache) if calib_cache else None)
        if precision == "auto" and plan.precision == "fp32":
            log.warning("TensorRT %s builds %s as fp32 (strong typing): export it with --fp16 for an FP16 engine",
                        builder.features.version, onnx.path)
        log.info("building a %s TensorRT %s engine from %s", plan.precision, builder.features.version, onnx.path)
        serialized = builder.create_engine(plan, calibrator, opt_profile)
    shapes = builder.io_shapes()
    meta = {
        "format": ENGINE_FORMAT, **system_facts(builder.trt, device),
        "precision": plan.precision, "strongly_typed": plan.strongly_typed,
        "input": {"name": INPUT, "shape": shapes[INPUT], "dtype": "uint8"},
        "output": {"name": OUTPUT, "shape": shapes[OUTPUT], "dtype": "float32"},
        "profile": [list(s) for s in profile] if onnx.dynamic else None,
        "onnx": os.path.relpath(onnx.path.resolve(), engine_path.resolve().parent), "onnx_sha256": onnx.sha256,
        "workspace_gb": workspace_gb, "engine_sha256": hashlib.sha256(serialized).hexdigest(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(serialized)
        write_sidecar(engine_path, meta)
    return meta


# --- running ---------------------------------------------------------------------------------------------------

class TensorRTBackend(Backend):
    """Runs a TensorRT engine (or builds and caches one beside a given .onnx) on a CUDA device."""

    name = "tensorrt"

    def __init__(self, model_path: str | Path, device: torch.device, resize_policy: str = "letterbox",
                 rebuild: str = "never", precision: str = "auto", workspace_gb: float = DEFAULT_WORKSPACE_GB,
                 timing_cache: str | Path | None = None) -> None:
        super().__init__(device, None, resize_policy)
        if rebuild not in REBUILD_POLICIES:
            raise ModelError(f"unknown rebuild policy '{rebuild}'; choose one of {REBUILD_POLICIES}")
        path = Path(model_path)
        if path.stat().st_size == 0:
            raise ModelError(f"TensorRT model {path} is empty (0 bytes)")
        if device.type != "cuda":
            raise ModelError(f"{path}: TensorRT runs on a CUDA device, not '{device}'")
        self.trt = import_tensorrt()
        self.build_options = {"precision": precision, "workspace_gb": workspace_gb, "timing_cache": timing_cache}
        with torch.cuda.device(device):
            if path.suffix.lower() == ".onnx":  # a cached engine, (re)built whenever it is not current
                facts = system_facts(self.trt, device)
                self.engine_path, rebuild, source = engine_cache_path(path, facts, precision), "if-stale", path
            else:
                self.engine_path, source = path, None
            self._prepare(device, rebuild, source)
            self.engine = self._deserialize()
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device)
        shape = tuple(self.engine.get_tensor_shape(INPUT))
        self.input_size = None if min(shape[1:3]) < 0 else (shape[1], shape[2])
        sources = [self.engine_path, source or self.engine_path.with_suffix(".onnx")]
        self.working_size = next(filter(None, (working_size_of(read_sidecar(p)) for p in sources)), None)

    def _problems(self, device: torch.device, meta: dict | None, source: Path | None) -> tuple[list[str], list[str]]:
        """(incompatible, stale) reasons for the engine file, from its metadata and this system."""
        path = self.engine_path
        if not path.is_file():
            return [f"{path} does not exist"], []
        if meta is None:
            return [], [f"it has no metadata {path.name}.json, so it cannot be checked before loading"]
        found = {**system_facts(self.trt, device), "engine_sha256": sha256_file(path),
                 "onnx_sha256": sha256_file(source) if source else None, "precision": self.build_options["precision"]}
        return compare_metadata(meta, found)

    def _prepare(self, device: torch.device, rebuild: str, source: Path | None) -> None:
        """Check the engine's metadata against this system; rebuild it or raise, as the policy says."""
        path = self.engine_path
        try:
            meta, unreadable = read_sidecar(path), []
        except ModelError as exc:
            meta, unreadable = None, [str(exc)]
        source = source or onnx_source(path, meta)
        incompatible, stale = (unreadable, []) if unreadable else self._problems(device, meta, source)
        if not incompatible and (not stale or rebuild == "never"):
            for reason in stale:
                warnings.warn(f"TensorRT engine {path}: {reason}", RuntimeWarning, stacklevel=3)
            return
        reasons = "; ".join(incompatible + stale)
        if rebuild == "never":
            raise ModelError(f"TensorRT engine {path} cannot be used here: {reasons}. Rebuild it with "
                             "fcn-road-build-engine, or load it with rebuild='if-stale'")
        if source is None:
            raise ModelError(f"TensorRT engine {path} needs a rebuild ({reasons}) but its ONNX model was not found "
                             f"(looked for the one named in its metadata and {path.with_suffix('.onnx')})")
        log.warning("building TensorRT engine %s from %s (%s); this takes a while", path, source, reasons)
        start = time.perf_counter()
        build_engine(source, path, device, **self.build_options)
        log.warning("built TensorRT engine %s in %.1f s", path, time.perf_counter() - start)

    def _deserialize(self) -> Any:
        """The engine object, with its I/O checked; ModelError when TensorRT rejects the file."""
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise ModelError(f"TensorRT could not deserialize {self.engine_path} (see the TensorRT messages above)")
        io = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            io[name] = (engine.get_tensor_mode(name).name, engine.get_tensor_dtype(name).name,
                        tuple(engine.get_tensor_shape(name)))
        problems = engine_io_problems(io)
        if problems:
            raise ModelError(f"{self.engine_path} is not an fcn_road_seg engine: {'; '.join(problems)}")
        return engine

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """``execute_async_v3`` on the backend's stream, ordered after the upload and before post-processing."""
        if self.input_size is None and not self.context.set_input_shape(INPUT, tuple(image.shape)):
            raise ModelError(f"a {image.shape[2]}x{image.shape[1]} image is outside the optimisation profile of "
                             f"{self.engine_path}; rebuild it with a larger --max-size")
        current = torch.cuda.current_stream(self.device)
        prob = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT)), dtype=torch.float32, device=self.device)
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

    def describe(self) -> str:
        """Adds the engine file and TensorRT version to the base description."""
        return f"{super().describe()} {self.engine_path.name} (TensorRT {self.trt.__version__})"


# --- fcn-road-build-engine ---------------------------------------------------------------------------------------

def _size(text: str) -> tuple[int, int]:
    """argparse type: 'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got '{text}'") from exc
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got '{text}'")
    return h, w


def get_args_parser() -> argparse.ArgumentParser:
    """The ``fcn-road-build-engine`` command line."""
    p = argparse.ArgumentParser(prog="fcn-road-build-engine", description="Build a TensorRT engine (plus "
                                "<engine>.json metadata) from an ONNX model written by fcn-road-export.")
    p.add_argument("onnx", help="ONNX model")
    p.add_argument("engine", nargs="?", help="output engine (default: the ONNX name with .engine)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="FP16 engine "
                           "(TensorRT 11: needs an fp16 ONNX model, fcn-road-export --fp16)")
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8", help="INT8 engine: "
                           "calibrated from --calib-dir (TensorRT 10), or from a Q/DQ-quantized ONNX model")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="FP32 engine")
    p.add_argument("--calib-dir", help="folder of representative images for INT8 calibration")
    p.add_argument("--calib-cache", help="INT8 calibration cache file (read if present, written after calibrating)")
    p.add_argument("--calib-images", type=int, default=64, help="calibration images used at most (default 64)")
    p.add_argument("--workspace-gb", type=float, default=DEFAULT_WORKSPACE_GB,
                   help=f"builder workspace memory limit in GiB (default {DEFAULT_WORKSPACE_GB:g})")
    p.add_argument("--timing-cache", help="timing cache file: loaded if present, saved after the build")
    for name, (h, w), what in zip(("min", "opt", "max"), DEFAULT_PROFILE, ("smallest", "tuned-for", "largest")):
        p.add_argument(f"--{name}-size", type=_size, default=f"{h}x{w}", metavar="HxW",
                       help=f"dynamic models: {what} input size (default {h}x{w})")
    p.add_argument("--device", default="cuda", help="CUDA device to build for (default cuda)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    p.set_defaults(precision="auto")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``fcn-road-build-engine MODEL.onnx [MODEL.engine]``: returns the exit status."""
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = Path(args.engine or Path(args.onnx).with_suffix(".engine"))
    try:
        meta = build_engine(args.onnx, engine, resolve_device(args.device), args.precision, args.workspace_gb,
                            args.timing_cache, args.calib_dir, args.calib_cache, args.calib_images,
                            (args.min_size, args.opt_size, args.max_size), args.verbose)
    except RoadSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {engine} ({meta['precision']}, TensorRT {meta['tensorrt']}, {meta['gpu']} sm "
          f"{meta['compute_capability']}, input {meta['input']['shape']}) and {engine.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
