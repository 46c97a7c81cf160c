"""INT8 against fp32 on this CPU: the share of each frame's mask pixels where they disagree.

Runs the checkpoint in fp32 torch and each INT8 ONNX model on ONNX Runtime and OpenVINO, every
frame at the working scale as the runtime runs it, and prints a Markdown table of the mask pixels
(P >= 0.5) that differ, per frame and the worst. On an x86 CPU without VNNI a full-range int8
model saturates (see ``training/quantize.py``); a 7-bit one computes what a VNNI CPU computes.

    .venv/bin/python benchmarks/int8_agreement.py --int8 old.int8.onnx --int8 new.int8.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import machine  # noqa: E402

from fcn_road_seg.backends import load_backend  # noqa: E402
from fcn_road_seg.image import Frame, image_paths, read_rgb_folder  # noqa: E402
from fcn_road_seg.model import default_model_path  # noqa: E402

BACKENDS = ("onnxruntime", "openvino")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="INT8 mask agreement with fp32 torch, per frame")
    p.add_argument("--model", default=str(default_model_path()), help="fp32 checkpoint")
    p.add_argument(
        "--int8",
        action="append",
        help="INT8 ONNX model, repeatable (default: the checkpoint's companion)",
    )
    p.add_argument("--images", default=str(ROOT / "data" / "kitti" / "image_2"))
    p.add_argument("--frames", type=int, default=5)
    return p


def disagreement(reference: Sequence, probabilities: Sequence) -> list[float]:
    """Per frame, the fraction of pixels where the two masks at 0.5 differ."""
    return [
        float(((a >= 0.5) != (b >= 0.5)).float().mean()) for a, b in zip(reference, probabilities)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    int8 = args.int8 or [str(Path(args.model).with_suffix(".int8.onnx"))]
    names = [p.name for p in image_paths(args.images, args.frames)]
    frames = [Frame(rgb, "rgb8") for rgb in read_rgb_folder(args.images, args.frames)]
    reference = load_backend(args.model, "torch", "cpu")
    want = [reference.probability(f) for f in frames]
    print(f"machine: {machine()}")
    print(f"reference: {args.model}, torch fp32, working scale; frames of {args.images}")
    print(f"| INT8 model | backend | {' | '.join(names)} | worst |")
    print(f"|---|---|{'---|' * len(names)}---|")
    for path in int8:
        for name in BACKENDS:
            backend = load_backend(path, name, "cpu")
            shares = disagreement(want, [backend.probability(f) for f in frames])
            cells = " | ".join(f"{100 * s:.2f} %" for s in shares)
            print(f"| {path} | {name} | {cells} | {100 * max(shares):.2f} % |")
            backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
