"""Checkpoint -> ONNX of ``RoadProbability``: uint8 NHWC RGB ``image`` -> float32 P(road) ``prob``.

Normalisation and the softmax live in the graph, so every runtime feeds raw pixels. The default
input is fixed at the checkpoint's working size (else 1 x 384 x 1248 x 3, a 375x1242 KITTI frame
padded to a multiple of 32); ``--dynamic`` makes height and width symbolic. ``--fp16`` runs the FCN
in half precision inside the graph (uint8 in, float32 out): a strongly typed FP16 model, which is
what TensorRT 11 needs for an FP16 engine.

The model is written atomically, after a built-in parity check (ONNX Runtime against torch on the
same checkpoint and the same pixels) has passed, together with ``<model>.onnx.json`` describing it.

    fcn-road-export runs/best.pt -o fcn8s.onnx \\
        --check-images ../shared/data/kitti_road_samples/testing/image_2
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import atomic_path, check_target
from ..backends import fit
from ..metadata import sha256_file, write_sidecar
from ..backends.onnx_backend import OnnxBackend
from ..bounds import int_at_least
from ..errors import DataError, ImageError, ModelError, OptionError, run_cli
from ..image import image_paths, read_rgb_folder
from ..model import (
    INPUT,
    OUTPUT,
    STRIDE,
    FCN8s,
    RoadProbability,
    read_checkpoint,
    working_height_of,
    working_size_of,
)

from .quantize import CALIBRATION_METHODS, CPU_SCHEME, quantize_int8

DEFAULT_SIZE = (384, 1248)
DEFAULT_OPSET = 18
MIN_OPSET = 17
EXPORTERS = ("dynamo", "torchscript")
MAX_DYNAMIC_SIDE = 4096


@dataclass(frozen=True)
class Tolerance:
    """Largest allowed max |ΔP| and fraction of pixels whose mask (P >= 0.5) may differ."""

    max_abs: float
    mask_fraction: float


#: fp32 graphs must match torch to 1e-4 and 0.01 % of mask pixels; fp16 graphs are held to fp16
#: accuracy; INT8 is judged by its masks (P itself moves by up to ~0.1 near the decision boundary)
TOLERANCES = {
    "fp32": Tolerance(1e-4, 1e-4),
    "fp16": Tolerance(2e-2, 2e-3),
    "int8": Tolerance(0.5, 1e-2),
}


#: what to do when an INT8 graph fails the check: it judges single pixels, the user judges MaxF
INT8_HINT = (
    ". Try other --calib-dir frames or --keep-fp32 nodes; or export with --no-check and compare "
    "fcn-road-eval's MaxF with --model the .onnx and with --model the checkpoint --backend "
    "torch on your validation set"
)


@dataclass(frozen=True)
class Parity:
    """Result of comparing ONNX Runtime with torch (the fp32 checkpoint) on the same inputs."""

    frames: int
    source: str
    max_abs: float
    mask_fraction: float
    sizes: tuple[str, ...] = ()  # the network input sizes (HxW) the frames ran at

    def report(self) -> str:
        """One line with the numbers."""
        at = f" at {', '.join(self.sizes)}" if self.sizes else ""
        return (
            f"parity on {self.frames} {self.source} frame(s){at}: max |dP| = {self.max_abs:.3g}, "
            f"masks differ on {100 * self.mask_fraction:.4f} % of pixels"
        )


def get_args_parser() -> argparse.ArgumentParser:
    """The ``fcn-road-export`` command line."""
    p = argparse.ArgumentParser(
        prog="fcn-road-export",
        description="Export a training checkpoint to ONNX "
        "(uint8 NHWC RGB 'image' in, float32 P(road) 'prob' out), with a parity check.",
    )
    p.add_argument("checkpoint", help="training checkpoint (.pt with 'model' and 'model_config')")
    p.add_argument(
        "-o", "--output", help="output .onnx (default: the checkpoint's name with .onnx)"
    )
    p.add_argument(
        "--height",
        type=int_at_least(32),
        default=None,
        help=f"input height (default: the checkpoint's working size, else {DEFAULT_SIZE[0]})",
    )
    p.add_argument(
        "--width",
        type=int_at_least(32),
        default=None,
        help=f"input width (default: the checkpoint's working size, else {DEFAULT_SIZE[1]})",
    )
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="symbolic height and width (--height/--width are then "
        "only the example size used for tracing and the check)",
    )
    p.add_argument(
        "--fp16",
        action="store_true",
        help="run the FCN in fp16 inside the graph (strongly typed; "
        "TensorRT 11 builds FP16 engines only from such a model)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="ONNX Runtime static INT8 quantization (QDQ, per-channel "
        "weights) for CPUs, calibrated on --calib-dir; with --dynamic it runs at any size",
    )
    p.add_argument(
        "--calib-dir",
        metavar="DIR",
        action="append",
        help="folder of real road frames (PNG/JPEG) for INT8 calibration, once per dataset "
        "(give every dataset the model was trained on); use training frames, not the ones you "
        "evaluate on. With --dynamic each frame is calibrated at the model's working scale",
    )
    p.add_argument(
        "--calib-frames",
        type=int_at_least(1),
        default=32,
        metavar="N",
        help="calibration frames per --calib-dir (default 32)",
    )
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, default="minmax")
    p.add_argument(
        "--keep-fp32",
        nargs="*",
        default=[],
        metavar="NODE",
        help="ONNX node names to leave in float (see fcn_road_seg.training.quantize.conv_nodes)",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, >= {MIN_OPSET} (default {DEFAULT_OPSET})",
    )
    p.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="dynamo",
        help="torch.onnx.export(dynamo=True) "
        "(torch.export based, default) or the legacy TorchScript exporter (dynamo=False)",
    )
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare ONNX Runtime with torch before writing the model (default on)",
    )
    p.add_argument(
        "--check-images",
        metavar="DIR",
        help="folder of real frames for the check (default: random images)",
    )
    p.add_argument(
        "--check-frames",
        type=int_at_least(1),
        default=3,
        metavar="N",
        help="frames used by the check (default 3)",
    )
    return p


def export_onnx(
    model: FCN8s,
    path: str | Path,
    size: tuple[int, int] = DEFAULT_SIZE,
    dynamic: bool = False,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    temperature: float = 1.0,
) -> None:
    """Write ``RoadProbability(model, temperature)`` to ``path`` as one self-contained ONNX file.

    Not atomic.
    """
    if opset < MIN_OPSET:
        raise ModelError(f"opset {opset} is too old: use {MIN_OPSET} or later")
    if exporter not in EXPORTERS:
        raise ModelError(f"unknown exporter '{exporter}'; choose one of {EXPORTERS}")
    net = RoadProbability(model, temperature).eval()
    if fp16:
        net = net.half()
    # a dynamic export traces at sides rounded up to the stride: torch.export cannot follow the
    # model's own padding to the stride from a side that needs it (188 rows -> 192)
    traced = [-(-side // STRIDE) * STRIDE for side in size] if dynamic else size
    example = torch.zeros((1, *traced, 3), dtype=torch.uint8)
    kwargs: dict[str, Any] = {}
    if dynamic and exporter == "dynamo":
        height, width = (
            torch.export.Dim(n, min=32, max=MAX_DYNAMIC_SIDE) for n in ("height", "width")
        )
        kwargs["dynamic_shapes"] = {"image": {1: height, 2: width}}
    elif dynamic:
        kwargs["dynamic_axes"] = {
            INPUT: {1: "height", 2: "width"},
            OUTPUT: {1: "height", 2: "width"},
        }
    try:
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=opset,
            dynamo=exporter == "dynamo",
            external_data=False,
            **kwargs,
        )
    except Exception as exc:  # exporter failures come in many types
        raise ModelError(f"ONNX export ({exporter}) failed: {exc}") from exc
    if dynamic:
        shapes_from_cast(path)


def shapes_from_cast(path: str | Path) -> None:
    """Make the Shape nodes that read the uint8 ``image`` read its Cast instead (same shape).

    TensorRT takes a uint8 input only straight into a Cast (NVIDIA/TensorRT#3985), but the dynamo
    exporter reads a dynamic export's height and width with ``Shape(image)``.
    """
    import onnx

    model = onnx.load(str(path))
    nodes = model.graph.node
    readers = [n for n in nodes if INPUT in n.input and n.op_type == "Shape"]
    cast = next((n for n in nodes if n.op_type == "Cast" and list(n.input) == [INPUT]), None)
    if not readers or cast is None:
        return
    for node in readers:
        node.input[0] = cast.output[0]
    nodes.remove(cast)
    nodes.insert(0, cast)  # the Shape nodes now depend on it: keep the graph topologically sorted
    onnx.save(model, str(path))


def random_images(size: tuple[int, int], count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` uniformly random H x W x 3 uint8 images."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def runtime_backend(onnx_path: Path, meta: dict[str, Any] | None) -> OnnxBackend:
    """ONNX Runtime on the CPU for ``onnx_path``, sizing frames as the runtime does with the
    checkpoint's metadata ``meta`` (``network_size: auto``)."""
    backend = OnnxBackend(onnx_path, torch.device("cpu"))
    backend.set_model_metadata(meta)
    backend.set_network_size("auto")
    return backend


def fitted(backend: OnnxBackend, rgb: np.ndarray) -> torch.Tensor:
    """``rgb`` fitted as the runtime fits it to the input of ``backend`` (1 x H x W x 3 uint8)."""
    size, policy = backend.network_input(*rgb.shape[:2])
    return fit(torch.from_numpy(np.ascontiguousarray(rgb))[None], size, policy)[0]


def parity(
    onnx_path: str | Path,
    model: FCN8s,
    images: Sequence[np.ndarray],
    source: str = "given",
    temperature: float = 1.0,
    meta: dict[str, Any] | None = None,
) -> Parity:
    """Run ONNX Runtime (CPU) and the fp32 torch model on the same fitted uint8 images.

    Compares their P(road). Each image is fitted as the runtime fits it (``network_input``): at
    the working scale of the model's metadata ``meta`` (its aspect ratio kept) when it has one,
    else as it is; into a fixed input resized or letterboxed.
    """
    backend = runtime_backend(onnx_path, meta)
    net = RoadProbability(model, temperature).eval()
    worst, differing, pixels, sizes = 0.0, 0, 0, set()
    with torch.inference_mode():
        for rgb in images:
            image = fitted(backend, rgb)
            got, want = backend._forward(image).numpy(), net(image).numpy()
            worst = max(worst, float(np.abs(got - want).max()))
            differing += int(((got >= 0.5) != (want >= 0.5)).sum())
            pixels += want.size
            sizes.add(f"{image.shape[1]}x{image.shape[2]}")
    return Parity(len(images), source, worst, differing / pixels, tuple(sorted(sizes)))


def check_parity(result: Parity, precision: str) -> None:
    """Raise a ModelError with the numbers if ``result`` is outside ``precision``'s tolerance."""
    tol = TOLERANCES[precision]
    if result.max_abs > tol.max_abs or result.mask_fraction > tol.mask_fraction:
        raise ModelError(
            f"ONNX parity check FAILED ({precision}): {result.report()}; allowed max |dP| <= "
            f"{tol.max_abs:g} and <= {100 * tol.mask_fraction:.4f} % of mask pixels"
            + (INT8_HINT if precision == "int8" else "")
        )


def metadata(
    args: argparse.Namespace,
    model: FCN8s,
    result: Parity | None,
    meta: dict[str, Any],
    onnx_sha256: str,
) -> dict[str, Any]:
    """The ``<model>.onnx.json`` sidecar: I/O names and shapes, precision, opset and provenance.

    It ties the model to its checkpoint both ways: the checkpoint's SHA-256 and its own.
    """
    h, w = ("height", "width") if args.dynamic else (args.height, args.width)
    return {
        "format": "fcn_road_seg.onnx/1",
        "input": {"name": INPUT, "shape": [1, h, w, 3], "dtype": "uint8", "layout": "NHWC RGB"},
        "output": {"name": OUTPUT, "shape": [1, h, w], "dtype": "float32", "meaning": "P(road)"},
        "dynamic": args.dynamic,
        "example_size": [args.height, args.width],
        "precision": precision_of(args),
        "int8": {
            "calib_dir": [str(d) for d in args.calib_dir],
            "calib_frames": args.calib_frames,
            "method": args.calib_method,
            **CPU_SCHEME,
            "keep_fp32": list(args.keep_fp32),
        }
        if args.int8
        else None,
        "opset": args.opset,
        "exporter": args.exporter,
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "checkpoint_sha256": sha256_file(args.checkpoint),
        "onnx_sha256": onnx_sha256,
        "model_config": model.config,
        "working_size": meta.get("working_size"),
        "working_height": working_height_of(meta),
        "encoder": meta.get("encoder"),
        "temperature": meta.get("temperature", 1.0),
        "parity": asdict(result) if result else None,
        "torch": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def precision_of(args: argparse.Namespace) -> str:
    """fp32, fp16 or int8, from the flags."""
    return "int8" if args.int8 else "fp16" if args.fp16 else "fp32"


def calibration_frames(
    args: argparse.Namespace, onnx_path: Path, meta: dict[str, Any]
) -> list[np.ndarray]:
    """``--calib-frames`` frames of each ``--calib-dir``, fitted as the runtime fits them to the
    fp32 model at ``onnx_path`` (``network_input``, with the checkpoint's metadata ``meta``):
    a dynamic model sees each frame at the working scale, a fixed one resized to its input where
    the frame's working size is that input and letterboxed into it otherwise."""
    backend = runtime_backend(onnx_path, meta)
    return [
        fitted(backend, rgb).numpy()
        for folder in args.calib_dir
        for rgb in read_rgb_folder(folder, args.calib_frames)
    ]


def write_int8(
    model: FCN8s,
    tmp: Path,
    args: argparse.Namespace,
    size: tuple[int, int],
    temperature: float,
    meta: dict[str, Any],
) -> None:
    """Export fp32 beside ``tmp`` (fixed at ``size``, or dynamic), then quantize it into ``tmp``.

    Calibrated with frames from every ``--calib-dir``.
    """
    fp32 = tmp.with_name(tmp.name + ".fp32.onnx")
    try:
        export_onnx(model, fp32, size, args.dynamic, False, args.opset, args.exporter, temperature)
        frames = calibration_frames(args, fp32, meta)
        quantize_int8(fp32, tmp, frames, args.keep_fp32, args.calib_method)
    finally:
        fp32.unlink(missing_ok=True)
    shapes = sorted({f.shape[1:3] for f in frames})
    print(
        f"INT8: calibrated on {len(frames)} frames of {', '.join(map(str, args.calib_dir))} "
        f"({args.calib_method}) at {', '.join(f'{h}x{w}' for h, w in shapes)}"
    )


def check_args(args: argparse.Namespace) -> Path:
    """The output path, once it and every input folder and size are known to be good.

    Before the model is loaded: an OptionError or DataError naming the option otherwise.
    """
    suffix = ".int8.onnx" if args.int8 else ".onnx"
    output = args.output or Path(args.checkpoint).with_name(Path(args.checkpoint).stem + suffix)
    what = "-o" if args.output else "the output (the default -o)"
    if not str(output).endswith(".onnx"):
        raise OptionError(f"-o {output}: an ONNX model's name must end in .onnx")
    if args.opset < MIN_OPSET:
        raise OptionError(f"--opset {args.opset} is too old: use {MIN_OPSET} or later")
    for size in (args.height, args.width):
        if size is not None and size > MAX_DYNAMIC_SIDE:
            raise OptionError(
                f"--height and --width must be at most {MAX_DYNAMIC_SIDE}, got {size}"
            )
    if not args.int8 and (args.calib_dir or args.keep_fp32):
        raise OptionError("--calib-dir and --keep-fp32 are for --int8 exports only")
    if args.int8 and (args.fp16 or not args.calib_dir):
        raise OptionError("--int8 needs --calib-dir and an fp32 model (no --fp16)")
    if args.int8 and args.dynamic and args.calib_method != "minmax":
        raise OptionError(
            f"--calib-method {args.calib_method} needs frames of one shape (ONNX Runtime's "
            "histogram calibrator); with --dynamic use minmax"
        )
    for flag, folder in [("--calib-dir", d) for d in args.calib_dir or ()] + [
        ("--check-images", args.check_images)
    ]:
        if folder is not None:
            try:
                image_paths(folder, 1)
            except ImageError as exc:
                raise DataError(f"{flag}: {exc}") from None
    return check_target(output, what, folder=False, inputs=[args.checkpoint])


def export(args: argparse.Namespace) -> tuple[Path, Parity | None]:
    """Export, check and write the model and its sidecar atomically.

    Returns the path and the check's result.
    """
    output = check_args(args)
    model, meta = read_checkpoint(args.checkpoint)
    default = working_size_of(meta) or DEFAULT_SIZE
    args.height = default[0] if args.height is None else args.height
    args.width = default[1] if args.width is None else args.width
    size = (args.height, args.width)
    result = None
    with atomic_path(output) as tmp:
        temperature = float(meta.get("temperature", 1.0))
        if args.int8:
            write_int8(model, tmp, args, size, temperature, meta)
        else:
            export_onnx(
                model, tmp, size, args.dynamic, args.fp16, args.opset, args.exporter, temperature
            )
        if args.check:
            images = (
                read_rgb_folder(args.check_images, args.check_frames)
                if args.check_images
                else random_images(size, args.check_frames)
            )
            source = "real" if args.check_images else "random"
            result = parity(tmp, model, images, source, temperature, meta)
            print(result.report())
            check_parity(result, precision_of(args))
        write_sidecar(output, metadata(args, model, result, meta, sha256_file(tmp)))
    return output, result


def main(argv: Sequence[str] | None = None) -> int:
    """``fcn-road-export CHECKPOINT [-o OUT.onnx]``: returns the exit status."""
    return run_cli(_export, get_args_parser().parse_args(argv))


def _export(args: argparse.Namespace) -> None:
    """``fcn-road-export``'s body: export, then say what was written."""
    output, result = export(args)
    shape = "1 x H x W x 3 (dynamic)" if args.dynamic else f"1 x {args.height} x {args.width} x 3"
    print(
        f"wrote {output} (uint8 '{INPUT}' {shape} -> float32 '{OUTPUT}', opset {args.opset}, "
        f"{precision_of(args)}, {args.exporter}){'' if result else ' WITHOUT parity check'}"
    )


if __name__ == "__main__":
    sys.exit(main())
