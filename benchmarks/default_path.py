"""Speed and accuracy of the default path on a CPU: every way of running one model, side by side.

Each row runs real KITTI frames (1242x375 bgr8 messages) end to end through
``Segmenter.process``, as the node does, and the same backend over a KITTI Road validation split
through ``fcn-road-eval``'s runtime path for the devkit's MaxF (URBAN, camera view). The speed-up
is against fp32 torch with the network at the frame's native size, measured in the same run.

    .venv/bin/python benchmarks/default_path.py --data-path data/data_road  # shipped default model
    .venv/bin/python benchmarks/default_path.py \\
        --model runs/kitti/model_best_fp16.pt --data-path data/data_road
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import load_frames, machine, messages, time_core  # noqa: E402

from fcn_road_seg.backends import Backend, int8_companion, load_backend  # noqa: E402
from fcn_road_seg.backends.torch_backend import cpu_has_bf16  # noqa: E402
from fcn_road_seg.model import default_model_path, read_checkpoint, working_size_of  # noqa: E402
from training import data  # noqa: E402
from training.evaluate import evaluate_backend  # noqa: E402
from training.export import export_onnx  # noqa: E402

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
    return p


def rows_for(model: Path, workdir: Path) -> list[tuple[str, Callable[[], Backend]]]:
    """(label, factory) of each way to run ``model`` on the CPU: baseline first, default last."""
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
    return rows


def openvino_rows(onnx32: Path, ws: str) -> list[tuple[str, Callable[[], Backend]]]:
    """OpenVINO on the fp32 export, in fp32 and in each lower precision this CPU runs."""
    if not importlib.util.find_spec("openvino"):
        return []
    from fcn_road_seg.backends.openvino_backend import PRECISIONS, import_openvino

    found = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return [
        (
            f"openvino {precision}, {ws}",
            lambda p=precision: load_backend(onnx32, "openvino", "cpu", precision=p),
        )
        for precision, (_, capability) in PRECISIONS.items()
        if capability in found
    ]


def measured_auto(model: Path, workdir: Path) -> Backend:
    """``backend: auto``, its candidates measured afresh (a new cache folder); prints the times."""
    os.environ["FCN_ROAD_SEG_CACHE"] = str(workdir / "cache")
    backend = load_backend(model, "auto", "cpu")
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
    results: list[tuple[str, float, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fcn_default_path_") as tmp:
        for label, factory in rows_for(Path(args.model), Path(tmp)):
            print(f"{label} ...", file=sys.stderr)
            backend = factory()
            real, _, _ = time_core(backend, msgs, timing)
            results.append(
                (label, real.median("total"), maxf(backend, samples) if samples else None)
            )
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
        "| backend, network size | ms / frame (median) | FPS | speed-up vs fp32 torch native "
        "| MaxF (URBAN) |"
    )
    print("|---|---|---|---|---|")
    for label, ms, f in results:
        cell = "-" if f is None else f"{100 * f:.2f} %"
        print(f"| {label} | {ms:.0f} | {1e3 / ms:.2f} | {base / ms:.1f}x | {cell} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
