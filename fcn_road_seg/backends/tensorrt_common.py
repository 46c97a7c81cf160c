"""TensorRT facts shared by the engine builder and the runtime, testable without TensorRT.

The installed TensorRT's build APIs, an ONNX model's input and typing, and an engine's sidecar
``<engine>.json`` metadata: compared with the running system before deserializing, so a foreign
or damaged engine is a ModelError, never a crash. TensorRT is imported lazily.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..cache import cache_dir
from ..errors import ModelError
from ..metadata import sha256_file
from ..model import INPUT, OUTPUT

ENGINE_FORMAT = "fcn_road_seg.engine/1"


#: how to quantize an ONNX model for TensorRT's explicit quantization (symmetric int8 Q/DQ)
TENSORRT_QDQ = (
    "onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ, "
    "activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, extra_options="
    "{'ActivationSymmetric': True, 'QuantizeBias': False}), or NVIDIA ModelOpt "
    "(python -m modelopt.onnx.quantization --quantize_mode int8)"
)


def tensorrt_wheel(cuda: str | None) -> str:
    """The TensorRT wheel built for torch's CUDA major version (``torch.version.cuda``)."""
    return f"tensorrt-cu{cuda.split('.')[0]}" if cuda else "tensorrt-cu<CUDA major>"


def import_tensorrt() -> Any:
    """The tensorrt module, or a ModelError that says how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        cuda = torch.version.cuda
        raise ModelError(
            f"TensorRT is not installed: pip install {tensorrt_wheel(cuda)} (built for "
            f"{f'CUDA {cuda}, as torch is' if cuda else 'a CUDA build of torch'}; it needs an "
            "NVIDIA GPU and driver), or use the onnxruntime or torch backend"
        ) from exc
    return tensorrt


# --- what the ONNX model and the installed TensorRT can do ------------------------------------


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
    """Read an ONNX model's input shape and whether it is already typed (fp16 tensors, Q/DQ
    nodes)."""
    try:
        import onnx
    except ImportError as exc:
        raise ModelError(
            "building a TensorRT engine needs the onnx package: pip install onnx"
        ) from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors and OSError
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from exc
    inputs = [
        i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    ]
    if len(inputs) != 1 or inputs[0].name != INPUT:
        raise ModelError(
            f"{path} is not an fcn_road_seg ONNX model: expected one input "
            f"'{INPUT}', found {[i.name for i in inputs]}"
        )
    dims = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in inputs[0].type.tensor_type.shape.dim
    )
    half = onnx.TensorProto.FLOAT16
    fp16 = any(t.data_type == half for t in model.graph.initializer) or any(
        a.name == "to" and a.i == half
        for n in model.graph.node
        if n.op_type == "Cast"
        for a in n.attribute
    )
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    problem = qdq_problem(model.graph) if qdq else None
    if problem:
        raise ModelError(
            f"TensorRT cannot build {path}: {problem}. Run it with ONNX Runtime (backend "
            f"onnxruntime), or quantize the fp32 model for TensorRT: {TENSORRT_QDQ}"
        )
    return OnnxInfo(Path(path), sha256_file(path), dims, fp16, qdq)


def qdq_problem(graph: Any) -> str | None:
    """Why TensorRT cannot take an ONNX graph's Q/DQ nodes, or None.

    TensorRT quantizes symmetrically: int8 with zero point 0, and biases stay float. ONNX
    Runtime's CPU quantization (``fcn-road-export --int8``) uses uint8 activations with other zero
    points and int32 biases.
    """
    from onnx import TensorProto, numpy_helper

    constants = {t.name: t for t in graph.initializer}
    problems = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        source = constants.get(node.input[0])
        zero = constants.get(node.input[2]) if len(node.input) > 2 else None
        if (
            node.op_type == "DequantizeLinear"
            and getattr(source, "data_type", None) == TensorProto.INT32
        ):
            problems.append("int32 (quantized bias) DequantizeLinear")
        elif zero is not None and zero.data_type == TensorProto.UINT8:
            problems.append("uint8 zero points")
        elif zero is not None and numpy_helper.to_array(zero).any():
            problems.append("non-zero (asymmetric) zero points")
    if not problems:
        return None
    found = ", ".join(dict.fromkeys(problems))
    return f"its Q/DQ nodes have {found}; TensorRT takes only symmetric int8 Q/DQ (zero point 0)"


def tensorrt_ready(path: str | Path) -> bool:
    """Whether TensorRT can build ``path``: false for Q/DQ that it does not take (see
    ``qdq_problem``); a file that cannot be read is left to the builder's error."""
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # no onnx package, or unreadable: the builder says which
        return True
    return qdq_problem(graph) is None


@dataclass(frozen=True)
class TrtFeatures:
    """Which build APIs the installed TensorRT has (TensorRT 11 dropped weak typing and
    implicit INT8)."""

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
        implicit_int8=hasattr(flags, "INT8")
        and hasattr(trt, "IInt8EntropyCalibrator2")
        and hasattr(trt.IBuilderConfig, "int8_calibrator"),
        strongly_typed_flag=hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"),
    )


# --- engine metadata: written beside every engine, checked before deserializing ---------------


def compare_metadata(
    meta: Mapping[str, Any], found: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """(reasons the engine cannot be loaded here, reasons it is stale) from its metadata and
    this system.

    ``found`` holds ``tensorrt``, ``compute_capability``, ``gpu`` and ``engine_sha256`` of the
    running system and engine file, ``onnx_sha256`` when the ONNX model it came from is at hand,
    and ``precision`` when a particular one is wanted.
    """
    missing = [
        k for k in ("format", "tensorrt", "compute_capability", "engine_sha256") if k not in meta
    ]
    if missing:
        return [f"its metadata lacks {', '.join(missing)}"], []
    incompatible, stale = [], []
    if meta["format"] != ENGINE_FORMAT:
        incompatible.append(f"its metadata format is '{meta['format']}', not '{ENGINE_FORMAT}'")
    if meta["tensorrt"] != found["tensorrt"]:
        incompatible.append(
            f"it was built with TensorRT {meta['tensorrt']} but this is TensorRT "
            f"{found['tensorrt']} (an engine only loads in the TensorRT version "
            "that built it)"
        )
    if meta["compute_capability"] != found["compute_capability"]:
        incompatible.append(
            f"it was built for compute capability {meta['compute_capability']} "
            f"({meta.get('gpu', '?')}) but this GPU ({found['gpu']}) is "
            f"{found['compute_capability']}"
        )
    if meta["engine_sha256"] != found["engine_sha256"]:
        incompatible.append(
            "the engine file does not match the SHA-256 in its metadata "
            "(corrupt, truncated or replaced)"
        )
    if not incompatible and meta.get("gpu") != found["gpu"]:
        stale.append(
            f"it was built on {meta.get('gpu')}, this is {found['gpu']} (same compute "
            "capability: it loads, but tactics were tuned for the other GPU)"
        )
    if found.get("onnx_sha256") and meta.get("onnx_sha256") not in (None, found["onnx_sha256"]):
        stale.append("its ONNX model has changed since it was built")
    if found.get("precision") not in (None, "auto", meta.get("precision")):
        stale.append(f"it is {meta.get('precision')}, {found['precision']} was asked for")
    return incompatible, stale


def system_facts(trt: Any, device: torch.device) -> dict[str, str]:
    """TensorRT version, GPU name and compute capability of ``device``."""
    major, minor = torch.cuda.get_device_capability(device)
    return {
        "tensorrt": trt.__version__,
        "gpu": torch.cuda.get_device_name(device),
        "compute_capability": f"{major}.{minor}",
    }


def engine_cache_path(onnx_path: str | Path, facts: Mapping[str, str], precision: str) -> Path:
    """Where an engine built at startup from ``onnx_path`` is cached: keyed by the ONNX's
    SHA-256, the TensorRT version, the GPU and the precision, in the writable cache folder
    (never beside the model)."""
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", facts["gpu"]).strip("-")
    key = (
        f"{sha256_file(onnx_path)[:16]}-trt{facts['tensorrt']}-{gpu}"
        f"-sm{facts['compute_capability']}-{precision}"
    )
    return cache_dir() / "engines" / f"{Path(onnx_path).stem}-{key}.engine"


def onnx_source(engine_path: Path, meta: Mapping[str, Any] | None) -> Path | None:
    """The ONNX model an engine was built from: the one its metadata names, else
    ``<engine stem>.onnx``."""
    named = meta.get("onnx") if meta else None
    for candidate in ([engine_path.parent / named] if named else []) + [
        engine_path.with_suffix(".onnx")
    ]:
        if candidate.is_file():
            return candidate
    return None


def engine_io_problems(io: Mapping[str, tuple[str, str, tuple[int, ...]]]) -> list[str]:
    """What is wrong with an engine's I/O tensors ({name: (mode, dtype name, shape)}) for this
    package."""
    want = {INPUT: ("INPUT", "UINT8", 4), OUTPUT: ("OUTPUT", "FLOAT", 3)}
    if set(io) != set(want):
        return [f"expected I/O tensors {sorted(want)}, found {sorted(io)}"]
    problems = []
    for name, (mode, dtype, rank) in want.items():
        got_mode, got_dtype, shape = io[name]
        if (got_mode, got_dtype, len(shape)) != (mode, dtype, rank):
            problems.append(
                f"'{name}' is {got_mode} {got_dtype} {list(shape)}, expected {mode} "
                f"{dtype} of rank {rank}"
            )
    if not problems and (io[INPUT][2][3] != 3 or io[INPUT][2][0] not in (1, -1)):
        problems.append(f"'{INPUT}' has shape {list(io[INPUT][2])}, expected [1, H, W, 3]")
    return problems
