"""Build a TensorRT engine from the exported ONNX model: ``build_engine`` and
``fcn-road-build-engine``.

``EngineBuilder`` follows NVIDIA's TensorRT ``samples/python`` (Builder, OnnxParser,
BuilderConfig, ``build_serialized_network``) for TensorRT 10 and 11: networks are always explicit
batch, the workspace is a memory-pool limit, and a timing cache can be loaded and saved.
Precision:

- TensorRT 10 (weak typing): FP16 via ``BuilderFlag.FP16``; INT8 via ``BuilderFlag.INT8`` with an
  entropy calibrator (``IInt8EntropyCalibrator2``) fed from a folder of images, or a
  Q/DQ-quantized ONNX model.
- TensorRT 11 (strong typing only): the ONNX model carries its precision. ``fcn-road-export
  --fp16`` writes an FP16 model; for INT8, quantize it with Q/DQ nodes (``EXPLICIT_QUANTIZATION``).

Every engine is written atomically with its sidecar ``<engine>.json`` metadata.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..atomic import atomic_path
from ..bounds import WORKSPACE_GB
from ..device import resolve_device
from ..errors import ModelError, run_cli
from ..image import read_rgb_folder
from ..metadata import read_sidecar, sidecar_path, write_sidecar
from ..model import INPUT, OUTPUT, check_metadata, working_size_of
from .base import fit
from .tensorrt_common import (
    ENGINE_FORMAT,
    TENSORRT_QDQ,
    OnnxInfo,
    TrtFeatures,
    import_tensorrt,
    inspect_onnx,
    system_facts,
    trt_features,
)

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "int8")
#: optimisation profile (min, opt, max) as (H, W) for ONNX models with dynamic height and width;
#: OPT is the model's working size where its metadata records one (``default_profile``)
DEFAULT_PROFILE = ((32, 32), (384, 1248), (1536, 2048))
DEFAULT_WORKSPACE_GB = 4.0
EXPLICIT_QUANTIZATION = (
    "use explicit quantization instead: insert symmetric int8 Q/DQ (QuantizeLinear/"
    f"DequantizeLinear) nodes into the fp32 ONNX model with {TENSORRT_QDQ} (not fcn-road-export "
    "--int8, whose uint8 activations are for ONNX Runtime on CPUs), then build the quantized "
    "model with --int8"
)


@dataclass(frozen=True)
class BuildPlan:
    """How to build: the resulting precision, network typing, builder flags and whether to
    calibrate."""

    precision: str
    strongly_typed: bool
    flags: tuple[str, ...] = ()
    calibrate: bool = False


def plan_build(onnx: OnnxInfo, precision: str, features: TrtFeatures) -> BuildPlan:
    """Choose network typing and builder flags for ``precision`` on this TensorRT; ModelError
    when impossible."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision '{precision}'; choose one of {PRECISIONS}")
    own = "int8" if onnx.qdq else "fp16" if onnx.fp16 else "fp32"
    if precision == "auto":
        precision = own if own != "fp32" or not features.weak_typing else "fp16"
    if onnx.qdq:
        if precision != "int8":
            raise ModelError(
                f"{onnx.path} is quantized (Q/DQ nodes): build it as int8, not {precision}"
            )
        # TensorRT 10: Q/DQ network with the INT8 flag, FP16 for the layers left
        if features.weak_typing:
            return BuildPlan("int8", False, ("INT8", "FP16"))
        return BuildPlan("int8", True)
    if onnx.fp16:
        if precision != "fp16":
            raise ModelError(
                f"{onnx.path} is an fp16 model: build it as fp16 (or export it "
                "again without --fp16)"
            )
        typed = features.strongly_typed_flag or not features.weak_typing
        return BuildPlan("fp16", typed, () if typed else ("FP16",))
    if precision == "fp32":
        return BuildPlan("fp32", not features.weak_typing)
    if precision == "fp16":
        if not features.weak_typing:
            raise ModelError(
                f"TensorRT {features.version} has no FP16 builder flag (strong "
                "typing only): export the model with fcn-road-export --fp16, or "
                "convert it with ModelOpt AutoCast "
                "(python -m modelopt.onnx.autocast --onnx_path model.onnx)"
            )
        return BuildPlan("fp16", False, ("FP16",))
    if not features.implicit_int8:
        raise ModelError(
            f"TensorRT {features.version} has no implicit INT8 calibration "
            f"(deprecated in TensorRT 10, removed in 11) and {onnx.path} has no Q/DQ "
            f"nodes: {EXPLICIT_QUANTIZATION}"
        )
    return BuildPlan("int8", False, ("INT8", "FP16"), calibrate=True)


def default_profile(onnx_path: str | Path) -> tuple[tuple[int, int], ...]:
    """``DEFAULT_PROFILE`` tuned (OPT) for the working size in the ONNX model's metadata, the size
    the runtime feeds it; the plain default when it records none. A ModelError naming the file
    when its metadata values are unusable."""
    meta = read_sidecar(onnx_path)
    if meta is not None:
        check_metadata(meta, f"model metadata {sidecar_path(onnx_path)}")
    size = working_size_of(meta)
    if size is None:
        return DEFAULT_PROFILE
    smallest, _, largest = DEFAULT_PROFILE
    return smallest, size, (max(largest[0], size[0]), max(largest[1], size[1]))


# --- INT8 calibration (TensorRT 10) ------------------------------------------------------------


def _calibration_images(
    folder: str | Path, size: tuple[int, int], device: torch.device, limit: int
) -> list[torch.Tensor]:
    """Up to ``limit`` images of ``folder`` letterboxed to ``size``, as 1 x H x W x 3 uint8 RGB
    CUDA tensors, finished: they are made on torch's stream and read on TensorRT's."""
    images = [
        fit(torch.from_numpy(rgb)[None].to(device), size, "letterbox")[0]
        for rgb in read_rgb_folder(folder, limit)
    ]
    torch.cuda.synchronize(device)
    return images


def make_calibrator(trt: Any, batches: Sequence[torch.Tensor], cache: Path | None) -> Any:
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` (CUDA tensors, batch 1) and keeps a
    cache file."""

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


# --- building ----------------------------------------------------------------------------------


class EngineBuilder:
    """Parses an ONNX model and builds a serialized TensorRT engine from it (as in NVIDIA's
    samples)."""

    def __init__(
        self,
        workspace_gb: float = DEFAULT_WORKSPACE_GB,
        timing_cache: str | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.trt = import_tensorrt()
        self.features = trt_features(self.trt)
        self.logger = self.trt.Logger(
            self.trt.Logger.VERBOSE if verbose else self.trt.Logger.WARNING
        )
        self.trt.init_libnvinfer_plugins(self.logger, namespace="")
        self.builder = self.trt.Builder(self.logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(
            self.trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30))
        )
        self.timing_cache_path = Path(timing_cache) if timing_cache else None
        self.timing_cache = None
        if self.timing_cache_path:
            data = self.timing_cache_path.read_bytes() if self.timing_cache_path.is_file() else b""
            self.timing_cache = self.config.create_timing_cache(data)
            if self.timing_cache is None or not self.config.set_timing_cache(
                self.timing_cache, ignore_mismatch=False
            ):
                raise ModelError(
                    f"TensorRT cannot use the timing cache {self.timing_cache_path} "
                    "(made by another TensorRT version or GPU?): delete it or pass "
                    "another file"
                )
        self.network = self.parser = None

    def create_network(self, onnx: OnnxInfo, strongly_typed: bool) -> None:
        """Parse ``onnx`` into a new network definition; ModelError with the parser's errors on
        failure."""
        flags = 0
        if strongly_typed and self.features.strongly_typed_flag:
            flags = 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        self.network = self.builder.create_network(flags)
        self.parser = self.trt.OnnxParser(self.network, self.logger)
        if not self.parser.parse_from_file(str(onnx.path)):
            errors = "; ".join(
                str(self.parser.get_error(i)) for i in range(self.parser.num_errors)
            )
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
            raise ModelError(
                "TensorRT failed to build the engine (see the TensorRT messages above)"
            )
        if self.timing_cache is not None:
            with atomic_path(self.timing_cache_path) as tmp:
                tmp.write_bytes(bytes(self.timing_cache.serialize()))
        return bytes(serialized)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    device: torch.device | None = None,
    precision: str = "auto",
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    timing_cache: str | Path | None = None,
    calib_dir: str | Path | None = None,
    calib_cache: str | Path | None = None,
    calib_images: int = 64,
    profile: Sequence[tuple[int, int]] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Build ``engine_path`` from ``onnx_path`` and write it with its metadata, atomically;
    returns the metadata. ``profile`` (min, opt, max) defaults to ``default_profile``."""
    device = device or resolve_device("cuda")
    onnx = inspect_onnx(onnx_path)
    profile = profile or default_profile(onnx_path)
    engine_path = Path(engine_path)
    with torch.cuda.device(device):
        builder = EngineBuilder(workspace_gb, timing_cache, verbose)
        plan = plan_build(onnx, precision, builder.features)
        builder.create_network(onnx, plan.strongly_typed)
        opt_profile = builder.add_profile(profile) if onnx.dynamic else None
        calibrator = None
        if plan.calibrate:
            if calib_dir is None and not (calib_cache and Path(calib_cache).is_file()):
                raise ModelError(
                    "INT8 calibration needs --calib-dir (a folder of representative "
                    "images) or an existing --calib-cache; or "
                    f"{EXPLICIT_QUANTIZATION}"
                )
            size = tuple(profile[1]) if onnx.dynamic else tuple(onnx.input_shape[1:3])
            batches = (
                _calibration_images(calib_dir, size, device, calib_images) if calib_dir else []
            )
            calibrator = make_calibrator(
                builder.trt, batches, Path(calib_cache) if calib_cache else None
            )
        if precision == "auto" and plan.precision == "fp32":
            log.warning(
                "TensorRT %s builds %s as fp32 (strong typing): export it with --fp16 for "
                "an FP16 engine",
                builder.features.version,
                onnx.path,
            )
        log.info(
            "building a %s TensorRT %s engine from %s",
            plan.precision,
            builder.features.version,
            onnx.path,
        )
        serialized = builder.create_engine(plan, calibrator, opt_profile)
    shapes = builder.io_shapes()
    meta = {
        "format": ENGINE_FORMAT,
        **system_facts(builder.trt, device),
        "precision": plan.precision,
        "strongly_typed": plan.strongly_typed,
        "input": {"name": INPUT, "shape": shapes[INPUT], "dtype": "uint8"},
        "output": {"name": OUTPUT, "shape": shapes[OUTPUT], "dtype": "float32"},
        "profile": [list(s) for s in profile] if onnx.dynamic else None,
        "onnx": os.path.relpath(onnx.path.resolve(), engine_path.resolve().parent),
        "onnx_sha256": onnx.sha256,
        "workspace_gb": workspace_gb,
        "engine_sha256": hashlib.sha256(serialized).hexdigest(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(serialized)
        write_sidecar(engine_path, meta)
    return meta


# --- fcn-road-build-engine ---------------------------------------------------------------------


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
    p = argparse.ArgumentParser(
        prog="fcn-road-build-engine",
        description="Build a TensorRT "
        "engine (plus <engine>.json metadata) from an ONNX model written "
        "by fcn-road-export.",
    )
    p.add_argument("onnx", help="ONNX model")
    p.add_argument("engine", nargs="?", help="output engine (default: the ONNX name with .engine)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16",
        dest="precision",
        action="store_const",
        const="fp16",
        help="FP16 engine (TensorRT 11: needs an fp16 ONNX model, fcn-road-export --fp16)",
    )
    precision.add_argument(
        "--int8",
        dest="precision",
        action="store_const",
        const="int8",
        help="INT8 engine: calibrated from --calib-dir (TensorRT 10), or from "
        "a Q/DQ-quantized ONNX model",
    )
    precision.add_argument(
        "--fp32", dest="precision", action="store_const", const="fp32", help="FP32 engine"
    )
    p.add_argument("--calib-dir", help="folder of representative images for INT8 calibration")
    p.add_argument(
        "--calib-cache",
        help="INT8 calibration cache file (read if present, written after calibrating)",
    )
    p.add_argument(
        "--calib-images", type=int, default=64, help="calibration images used at most (default 64)"
    )
    p.add_argument(
        "--workspace-gb",
        type=WORKSPACE_GB.parse,
        default=DEFAULT_WORKSPACE_GB,
        help=f"builder workspace memory limit in GiB (default {DEFAULT_WORKSPACE_GB:g})",
    )
    p.add_argument(
        "--timing-cache", help="timing cache file: loaded if present, saved after the build"
    )
    for name, (h, w), what in zip(
        ("min", "opt", "max"), DEFAULT_PROFILE, ("smallest", "tuned-for", "largest")
    ):
        default = "the working size in the model's metadata, else " if name == "opt" else ""
        p.add_argument(
            f"--{name}-size",
            type=_size,
            default=None if name == "opt" else f"{h}x{w}",
            metavar="HxW",
            help=f"dynamic models: {what} input size (default {default}{h}x{w})",
        )
    p.add_argument("--device", default="cuda", help="CUDA device to build for (default cuda)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    p.set_defaults(precision="auto")
    return p


def _build(args: argparse.Namespace) -> None:
    """``fcn-road-build-engine``'s body: build, then say what was written."""
    engine = Path(args.engine or Path(args.onnx).with_suffix(".engine"))
    meta = build_engine(
        args.onnx,
        engine,
        resolve_device(args.device),
        args.precision,
        args.workspace_gb,
        args.timing_cache,
        args.calib_dir,
        args.calib_cache,
        args.calib_images,
        (args.min_size, args.opt_size or default_profile(args.onnx)[1], args.max_size),
        args.verbose,
    )
    print(
        f"wrote {engine} ({meta['precision']}, TensorRT {meta['tensorrt']}, {meta['gpu']} sm "
        f"{meta['compute_capability']}, input {meta['input']['shape']}) and {engine.name}.json"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``fcn-road-build-engine MODEL.onnx [MODEL.engine]``: returns the exit status."""
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(_build, args)


if __name__ == "__main__":
    sys.exit(main())
