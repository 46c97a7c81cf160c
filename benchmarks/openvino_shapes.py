"""OpenVINO on a dynamic-shape model: one compiled model per input shape, or one dynamic compile?

Frames of different aspect ratios reach the network at different sizes (the working scale keeps
the aspect ratio: 188x624 for KITTI, 188x248 for CamVid's 360x480). This times the OpenVINO
backend both ways on the same dynamic ONNX model, shapes interleaved round by round so that a
busy machine slows every row alike, with ONNX Runtime on the same file for reference.

    .venv/bin/python benchmarks/openvino_shapes.py --model model_dynamic.int8.onnx
    .venv/bin/python benchmarks/openvino_shapes.py --checkpoint fcn_road_seg/data/fcn8s_kitti.pt \\
        --calib-dir ../shared/data/kitti_road_samples/testing/image_2   # builds a dynamic INT8 one
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import machine  # noqa: E402

from fcn_road_seg.backends import Backend, load_backend  # noqa: E402
from fcn_road_seg.backends.openvino_backend import OpenVinoBackend  # noqa: E402
from fcn_road_seg.image import Frame, read_rgb_folder  # noqa: E402
from fcn_road_seg.model import read_checkpoint, working_size_of  # noqa: E402
from fcn_road_seg.training.export import export_onnx  # noqa: E402
from fcn_road_seg.training.quantize import fitted_frames, quantize_int8  # noqa: E402

SHAPES = ((188, 624), (188, 248), (188, 336))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="OpenVINO: per-shape compiles vs one dynamic compile")
    p.add_argument("--model", help="an ONNX model with dynamic height and width")
    p.add_argument("--checkpoint", help="or build a dynamic INT8 model from this checkpoint")
    p.add_argument("--calib-dir", help="calibration frames for --checkpoint")
    p.add_argument("--calib-frames", type=int, default=16)
    p.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = the runtime's)")
    return p


def dynamic_int8(checkpoint: str, calib_dir: str, count: int, folder: Path) -> Path:
    """``checkpoint`` exported with dynamic height/width, quantized on frames at its working size.

    The TorchScript exporter is used: the dynamo one rejects symbolic sides at 188 rows.
    """
    net, meta = read_checkpoint(checkpoint)
    size = working_size_of(meta) or SHAPES[0]
    fp32, int8 = folder / "dynamic.onnx", folder / "dynamic.int8.onnx"
    with contextlib.redirect_stdout(sys.stderr):
        export_onnx(
            net, fp32, size, True, exporter="torchscript", temperature=meta.get("temperature", 1)
        )
    quantize_int8(fp32, int8, fitted_frames(read_rgb_folder(calib_dir, count), size))
    return int8


def time_once(backend: Backend, frame: Frame) -> float:
    """ms of one ``infer``."""
    start = time.perf_counter()
    backend.infer(frame)
    return 1e3 * (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fcn_ov_shapes_") as tmp:
        if args.model:
            model = Path(args.model)
        elif args.checkpoint and args.calib_dir:
            model = dynamic_int8(args.checkpoint, args.calib_dir, args.calib_frames, Path(tmp))
        else:
            raise SystemExit("give --model, or --checkpoint and --calib-dir")
        cpu = torch.device("cpu")
        rows: dict[str, Backend] = {
            "OpenVINO, one compile per shape": OpenVinoBackend(model, cpu, threads=args.threads),
            "OpenVINO, one dynamic compile": OpenVinoBackend(
                model, cpu, threads=args.threads, static_shapes=0
            ),
            "ONNX Runtime (reference)": load_backend(
                model, "onnxruntime", "cpu", network_size="native", threads=args.threads
            ),
        }
        frames = {
            s: Frame(np.random.default_rng(0).integers(0, 256, (*s, 3), dtype=np.uint8), "rgb8")
            for s in SHAPES
        }
        times: dict[tuple[str, tuple[int, int]], list[float]] = {}
        for backend in rows.values():
            for frame in frames.values():  # compiles, first-run allocations
                backend.infer(frame)
        for _ in range(args.rounds):
            for shape, frame in frames.items():
                for label, backend in rows.items():
                    times.setdefault((label, shape), []).append(time_once(backend, frame))
        print(f"machine: {machine()}")
        print(f"model: {model}; {args.rounds} rounds, shapes interleaved; median ms per frame")
        print("| runtime | " + " | ".join(f"{h}x{w}" for h, w in SHAPES) + " | compile (s) |")
        print("|---|" + "---|" * (len(SHAPES) + 1))
        for label, backend in rows.items():
            cells = " | ".join(f"{np.median(times[label, s]):.1f}" for s in SHAPES)
            compiled = getattr(backend, "compile_s", {})
            compile_text = ", ".join(f"{k} {v:.2f}" for k, v in compiled.items()) or "-"
            print(f"| {label} | {cells} | {compile_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
