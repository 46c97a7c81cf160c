"""INT8 at any frame shape: one dynamic-shape QDQ model against one fixed-shape model per shape.

Exports the checkpoint's INT8 model three ways with the same calibration frames (fixed at the
KITTI shape, fixed at a 4:3 frame's shape, dynamic), then times ONNX Runtime's network alone
(``Backend._forward`` on the fitted frame, median of ``--repeat``) on a KITTI and a 4:3 frame
at the working scale, in one run, and prints a Markdown table.

    .venv/bin/python benchmarks/int8_shapes.py --calib-dir data/kitti/image_2 \\
        --calib-dir ../shared/data/camvid_road/training/image_2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fcn_road_seg.backends import load_backend
from fcn_road_seg.image import Frame
from fcn_road_seg.model import default_model_path, read_checkpoint, scaled_size, working_height_of
from fcn_road_seg.training.export import main as export_main

SHAPES = {"KITTI 375x1242": (375, 1242), "4:3 360x480": (360, 480)}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(default_model_path()))
    p.add_argument("--calib-dir", action="append", required=True)
    p.add_argument("--calib-frames", type=int, default=8)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = default)")
    return p


def export(model: str, out: Path, args: argparse.Namespace, *flags: str) -> Path:
    calib = [a for d in args.calib_dir for a in ("--calib-dir", d)]
    argv = [model, "--int8", "-o", str(out), "--no-check", *calib, *flags]
    argv += ["--calib-frames", str(args.calib_frames)]
    with contextlib.redirect_stdout(sys.stderr):
        if export_main(argv) != 0:
            raise SystemExit(f"export failed: {' '.join(argv)}")
    return out


def network_ms(path: Path, shape: tuple[int, int], repeat: int, threads: int) -> tuple[float, str]:
    """Median ms of the network alone on a fitted ``shape`` frame, and the size it ran at."""
    backend = load_backend(path, "onnxruntime", "cpu", threads=threads)
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with torch.inference_mode():
        image, _ = backend._fit(Frame(rgb, "rgb8"))
        backend._forward(image)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            backend._forward(image)
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), "x".join(map(str, image.shape[1:3]))


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    height = working_height_of(read_checkpoint(args.model)[1])
    if height is None:
        raise SystemExit(f"{args.model} records no working scale")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {"dynamic": export(args.model, Path(tmp) / "d.onnx", args, "--dynamic")}
        for name, shape in SHAPES.items():
            h, w = scaled_size(*shape, height)
            models[f"fixed {h}x{w}"] = export(
                args.model,
                Path(tmp) / f"{h}x{w}.onnx",
                args,
                "--height",
                str(h),
                "--width",
                str(w),
            )
        for label, path in models.items():
            for name, shape in SHAPES.items():
                ms, ran = network_ms(path, shape, args.repeat, args.threads)
                rows.append((label, name, ran, ms))
    print("| INT8 model | frame | network input | ms (median, network only) |")
    print("|---|---|---|---|")
    for label, name, ran, ms in rows:
        print(f"| {label} | {name} | {ran} | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
