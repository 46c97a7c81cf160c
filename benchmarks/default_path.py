"""Speed and accuracy of the default path: every way of running one model, side by side.

Each row runs real KITTI frames (1242x375 bgr8 messages) end to end through
``Segmenter.process``, as the node does, and the same backend over a KITTI Road validation split
through ``fcn-road-eval``'s runtime path for the devkit's MaxF (URBAN, camera view). The speed-up
is against the first row (fp32 torch with the network at the frame's native size), measured in
the same run. Every row is also scored against fp32 torch at the same network size on the timed
frames: the share of mask pixels (P >= 0.5) that differ, and the largest |dP|.

``--device cuda`` times torch CUDA fp32 (TF32 off: the reference) and fp16, and TensorRT FP16 and
INT8 engines built here (INT8 from ``quantize_int8(tensorrt=True)``'s symmetric Q/DQ, calibrated
on ``--calib-dir``), each at the working size and at 375x1242. Without a GPU it says so and runs
the CPU side: the INT8 model TensorRT would build, on ONNX Runtime.

    .venv/bin/python benchmarks/default_path.py --data-path data/data_road  # shipped default model
    .venv/bin/python benchmarks/default_path.py \\
        --model runs/kitti/model_best_fp16.pt --data-path data/data_road
    python3 benchmarks/default_path.py --device cuda --images data/kitti/image_2  # a GPU machine
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from latency import load_frames, machine, messages, time_core  # noqa: E402

from fcn_road_seg.backends import Backend, int8_companion, load_backend  # noqa: E402
from fcn_road_seg.backends.torch_backend import TorchBackend, cpu_has_bf16  # noqa: E402
from fcn_road_seg.errors import ModelError  # noqa: E402
from fcn_road_seg.image import Frame, read_rgb_folder  # noqa: E402
from fcn_road_seg.model import default_model_path, read_checkpoint, working_size_of  # noqa: E402
from fcn_road_seg.training import data  # noqa: E402
from fcn_road_seg.training.evaluate import evaluate_backend  # noqa: E402
from fcn_road_seg.training.export import export_onnx  # noqa: E402
from fcn_road_seg.training.quantize import fitted_frames, quantize_int8  # noqa: E402

KITTI = (1242, 375)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Speed and MaxF of the default path, per backend, on a CPU"
    )
    p.add_argument(
        "--model",
        default=str(default_model_path()),
        help="checkpoint (default: the shipped model)",
    )
    p.add_argument(
        "--data-path",
        help="KITTI data_road for MaxF on the seeded validation split (else speed only)",
    )
    p.add_argument("--images", help="frames to time (default: the shared KITTI samples)")
    p.add_argument("--frames", type=int, default=8, help="timed frames per row (default 8)")
    p.add_argument(
        "--val-frames",
        type=int,
        default=0,
        help="evaluate only this many validation frames (0 = all)",
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu: every CPU way (default); cuda: torch CUDA and TensorRT FP16 / INT8",
    )
    p.add_argument(
        "--calib-dir",
        default=str(ROOT / "data" / "kitti" / "image_2"),
        help="frames for the TensorRT INT8 Q/DQ calibration (default: the shipped KITTI frames)",
    )
    return p


def rows_for(model: Path, workdir: Path) -> list[tuple[str, Callable[[], Backend]]]:
    """(label, factory) of each way to run ``model`` on the CPU: baseline first; last the default,
    then the default with test-time flip."""
    net, meta = read_checkpoint(model)
    size = working_size_of(meta)
    if size is None:
        raise SystemExit(f"{model} records no working size")
    onnx32 = workdir / "fp32.onnx"
    with contextlib.redirect_stdout(sys.stderr):
        export_onnx(net, onnx32, size, temperature=float(meta.get("temperature", 1.0)))
    ws = f"{size[0]}x{size[1]}"
    rows = [
        (
            "torch fp32, native 375x1242",
            lambda: load_backend(model, "torch", "cpu", network_size="native"),
        ),
        (f"torch fp32, {ws}", lambda: load_backend(model, "torch", "cpu", precision="fp32")),
    ]
    if cpu_has_bf16():
        rows.append(
            (f"torch bf16, {ws}", lambda: load_backend(model, "torch", "cpu", precision="bf16"))
        )
    rows.append((f"onnxruntime fp32, {ws}", lambda: load_backend(onnx32, "onnxruntime", "cpu")))
    rows += openvino_rows(onnx32, ws)
    companion = int8_companion(model)
    if companion is not None:
        rows.append(
            (f"onnxruntime int8, {ws}", lambda: load_backend(companion, "onnxruntime", "cpu"))
        )
        if importlib.util.find_spec("openvino"):
            rows.append(
                (f"openvino int8, {ws}", lambda: load_backend(companion, "openvino", "cpu"))
            )
        rows.append((f"auto (default), {ws}", lambda: measured_auto(model, workdir)))
        rows.append(
            (f"auto + test_time_flip, {ws}", lambda: measured_auto(model, workdir, flip=True))
        )
    return rows


def exported(model: Path, workdir: Path, size: tuple[int, int], fp16: bool = False) -> Path:
    """``model`` exported at a fixed ``size`` into ``workdir`` (once)."""
    path = workdir / f"{'fp16' if fp16 else 'fp32'}_{size[0]}x{size[1]}.onnx"
    if not path.exists():
        net, meta = read_checkpoint(model)
        with contextlib.redirect_stdout(sys.stderr):
            export_onnx(net, path, size, fp16=fp16, temperature=float(meta.get("temperature", 1)))
    return path


def tensorrt_int8(model: Path, workdir: Path, size: tuple[int, int], calib_dir: Path) -> Path:
    """The symmetric int8 Q/DQ model that TensorRT builds, calibrated on ``calib_dir``."""
    path = workdir / f"int8_{size[0]}x{size[1]}.onnx"
    if not path.exists():
        frames = fitted_frames(read_rgb_folder(calib_dir, 16), size)
        quantize_int8(exported(model, workdir, size), path, frames, tensorrt=True)
        print(f"note: INT8 {size[0]}x{size[1]} calibrated on {len(frames)} frames of {calib_dir}")
    return path


def tensorrt_engine(
    model: Path, workdir: Path, size: tuple[int, int], precision: str, calib_dir: Path
) -> Backend:
    """A fixed-shape TensorRT engine of ``model`` at ``size``, built here and loaded.

    FP16 from the fp32 export (TensorRT 10's FP16 flag) or the fp16 export (TensorRT 11); INT8
    from ``tensorrt_int8``. The engines share one timing cache.
    """
    import tensorrt

    from fcn_road_seg.backends.tensorrt_build import build_engine
    from fcn_road_seg.backends.tensorrt_common import trt_features

    if precision == "int8":
        source = tensorrt_int8(model, workdir, size, calib_dir)
    else:
        source = exported(model, workdir, size, fp16=not trt_features(tensorrt).weak_typing)
    engine = source.with_suffix(".engine")
    start = time.perf_counter()
    build_engine(source, engine, torch.device("cuda"), precision, timing_cache=workdir / "tc")
    print(
        f"note: built the TensorRT {tensorrt.__version__} {precision} engine at "
        f"{size[0]}x{size[1]} from {source.name} in {time.perf_counter() - start:.0f} s"
    )
    return load_backend(engine, "tensorrt", "cuda", network_size=f"{size[0]}x{size[1]}")


def gpu_rows(
    model: Path, workdir: Path, calib_dir: Path
) -> list[tuple[str, Callable[[], Backend]]]:
    """(label, factory) of each way to run ``model`` on a CUDA GPU: baseline first.

    Without a GPU, the CPU side of the same: the INT8 model TensorRT would build, on ONNX Runtime.
    """
    from fcn_road_seg.backends.tensorrt_common import tensorrt_wheel

    size = working_size_of(read_checkpoint(model)[1])
    if size is None:
        raise SystemExit(f"{model} records no working size")
    ws = f"{size[0]}x{size[1]}"
    if not torch.cuda.is_available():
        print("no CUDA GPU: the torch CUDA and TensorRT rows are skipped; their CPU side runs")
        return [
            (f"torch fp32, {ws}", lambda: load_backend(model, "torch", "cpu", precision="fp32")),
            (
                f"onnxruntime int8 (TensorRT Q/DQ), {ws}",
                lambda: load_backend(
                    tensorrt_int8(model, workdir, size, calib_dir),
                    "onnxruntime",
                    "cpu",
                    network_size=ws,
                ),
            ),
        ]
    # fp32 rows are the reference: no TF32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    full = KITTI[::-1]
    rows = []
    for precision in ("fp32", "fp16"):
        default = " (auto = default)" if precision == "fp16" else ""
        rows += [
            (
                f"torch cuda {precision}, native 375x1242",
                lambda p=precision: load_backend(
                    model, "torch", "cuda", network_size="native", precision=p
                ),
            ),
            (
                f"torch cuda {precision}, {ws}{default}",
                lambda p=precision: load_backend(model, "torch", "cuda", precision=p),
            ),
        ]
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):  # not installed, or its libraries do not load
        print(
            f"TensorRT is not installed (pip install {tensorrt_wheel(torch.version.cuda)}): "
            "the TensorRT rows are skipped"
        )
        return rows
    for precision in ("fp16", "int8"):
        for shape, name in ((full, "375x1242"), (size, ws)):
            rows.append(
                (
                    f"tensorrt {precision}, {name}",
                    lambda s=shape, p=precision: tensorrt_engine(model, workdir, s, p, calib_dir),
                )
            )
    return rows


def probabilities(backend: Backend, frames: Sequence[Any]) -> list[torch.Tensor]:
    """P(road) of each BGR frame, on the CPU."""
    return [backend.probability(Frame(bgr, "bgr8")).float().cpu() for bgr in frames]


def versus(probs: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> str:
    """'masks differ on X % / max |dP| Y' of ``probs`` against ``reference``."""
    differ = sum(int(((p >= 0.5) != (r >= 0.5)).sum()) for p, r in zip(probs, reference))
    worst = max(float((p - r).abs().max()) for p, r in zip(probs, reference))
    return f"{100 * differ / sum(r.numel() for r in reference):.3f} % / {worst:.3f}"


def openvino_rows(onnx32: Path, ws: str) -> list[tuple[str, Callable[[], Backend]]]:
    """OpenVINO on the fp32 export, in fp32 and in each lower precision this CPU runs."""
    if not importlib.util.find_spec("openvino"):
        return []
    from fcn_road_seg.backends.openvino_backend import PRECISIONS, shared_core

    found = shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return [
        (
            f"openvino {precision}, {ws}",
            lambda p=precision: load_backend(onnx32, "openvino", "cpu", precision=p),
        )
        for precision, (_, capability) in PRECISIONS.items()
        if capability in found
    ]


def measured_auto(model: Path, workdir: Path, flip: bool = False) -> Backend:
    """``backend: auto``, its candidates measured afresh (a new cache folder); prints the times.

    ``flip``: with ``test_time_flip``."""
    os.environ["FCN_ROAD_SEG_CACHE"] = str(workdir / "cache")
    backend = load_backend(model, "auto", "cpu", flip=flip)
    print(f"note: {backend.selection}")
    return backend


def maxf(backend: Backend, samples: Sequence[data.Sample]) -> float:
    """URBAN MaxF of ``backend`` over ``samples`` (runtime path)."""
    return evaluate_backend(backend, samples, workers=1, progress=False).compute()["URBAN"]["MaxF"]


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    folder, frames = load_frames(args.images, args.frames)
    msgs = messages(frames, KITTI)
    samples = data.split(args.data_path, "val") if args.data_path else []
    samples = (
        samples[:: max(1, len(samples) // args.val_frames)][: args.val_frames]
        if args.val_frames
        else samples
    )
    timing = argparse.Namespace(warmup=args.warmup, repeat=1, replay=0)
    results: list[tuple[str, float, Any, str]] = []
    references: dict[tuple[int, int], list[torch.Tensor]] = {}  # fp32 torch, per network size
    with tempfile.TemporaryDirectory(prefix="fcn_default_path_") as tmp:
        model, workdir = Path(args.model), Path(tmp)
        rows = (
            rows_for(model, workdir)
            if args.device == "cpu"
            else gpu_rows(model, workdir, Path(args.calib_dir))
        )
        for label, factory in rows:
            print(f"{label} ...", file=sys.stderr)
            try:
                backend = factory()
                real, _, _ = time_core(backend, msgs, timing)
            except (ModelError, RuntimeError) as exc:  # one row that cannot run here
                print(f"note: {label} skipped: {exc}")
                continue
            probs = probabilities(backend, frames)
            size = tuple(backend.network_input(*frames[0].shape[:2])[0] or frames[0].shape[:2])
            fp32 = isinstance(backend, TorchBackend) and backend.precision == "fp32"
            reference = references.setdefault(size, probs) if fp32 else references.get(size)
            score = (
                "reference"
                if probs is reference
                else "-"
                if reference is None
                else versus(probs, reference)
            )
            results.append(
                (label, real.median("total"), maxf(backend, samples) if samples else None, score)
            )
            print(
                f"row: {label}: {results[-1][1]:.1f} ms / frame, vs fp32 {score}", file=sys.stderr
            )
    if not results:
        raise SystemExit("no row could run")
    base = results[0][1]
    print(f"machine: {machine()}")
    scored = (
        f"{len(samples)} frames of the seeded KITTI validation split of {args.data_path}"
        if samples
        else "-"
    )
    print(
        f"model: {args.model}; timed: {len(msgs)} frames of {folder} at 1242x375, end to end; "
        f"MaxF on: {scored}"
    )
    print(
        f"| backend, network size | ms / frame (median) | FPS | speed-up vs {results[0][0]} "
        "| MaxF (URBAN) | vs fp32 torch: masks differ / max abs dP |"
    )
    print("|---|---|---|---|---|---|")
    for label, ms, f, score in results:
        cell = "-" if f is None else f"{100 * f:.2f} %"
        print(f"| {label} | {ms:.1f} | {1e3 / ms:.1f} | {base / ms:.1f}x | {cell} | {score} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
