"""Where the CPU default path's time goes, and how much faster than fp32 this CPU lets it be.

The network's multiply-accumulates (MACs) are counted with forward hooks on every convolution, at
the native size of a KITTI frame and at the working scale. fp32 torch at the native size and the
default path (the INT8 companion on OpenVINO at the working scale) are timed on the same real
frame, round by round, and OpenVINO's per-layer profile (``PERF_COUNT``) says which kernels the
INT8 time went to. The speed-up then splits into two factors:

    speed-up = (MACs at native size / MACs at the working scale) x (INT8 MAC/s / fp32 MAC/s)

The first is fixed by the working scale, the second by the CPU's INT8 and fp32 units.

    .venv/bin/python benchmarks/roofline.py                  # the shipped model, a shipped frame
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import machine  # noqa: E402
from openvino_shapes import time_once  # noqa: E402

from fcn_road_seg.backends import Backend, load_backend  # noqa: E402
from fcn_road_seg.image import Frame, read_rgb_folder  # noqa: E402
from fcn_road_seg.model import default_model_path, read_checkpoint  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="MACs, MAC/s and per-layer time of the CPU default path"
    )
    p.add_argument(
        "--model", default=str(default_model_path()), help="checkpoint with an INT8 companion"
    )
    p.add_argument(
        "--images", default=str(ROOT / "data" / "kitti" / "image_2"), help="a frame folder"
    )
    p.add_argument("--rounds", type=int, default=5, help="timed rounds, each row once per round")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = the runtime's)")
    return p


def count_macs(net: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of every convolution for one height x width RGB image."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.weight.shape[2] * module.weight.shape[3]
        if isinstance(module, nn.ConvTranspose2d):  # each input value meets out_channels kernels
            total += inputs[0].numel() * module.out_channels // module.groups * kernel
        else:  # each output value sums in_channels kernels
            total += output.numel() * module.in_channels // module.groups * kernel

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    with torch.inference_mode():
        net(torch.zeros(1, 3, height, width))
    for h in handles:
        h.remove()
    return total


def layer_times(backend: Backend) -> list[tuple[str, float]]:
    """(OpenVINO layer type and kernel, ms) of the last inference, the slowest first."""
    request = next(iter(backend._requests.values()))  # the one shape this run compiled
    spent: collections.Counter = collections.Counter()
    for info in request.profiling_info:
        spent[f"{info.node_type} ({info.exec_type})"] += info.real_time.total_seconds() * 1e3
    return spent.most_common()


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pixels = read_rgb_folder(args.images, 1)[0]
    frame = Frame(pixels, "rgb8")
    height, width = pixels.shape[:2]
    net, _ = read_checkpoint(args.model)
    native = load_backend(args.model, "torch", "cpu", network_size="native")
    default = load_backend(args.model, "openvino", "cpu", threads=args.threads)
    default.config["PERF_COUNT"] = True  # read by the compile at the first frame
    rows = {"torch fp32, native": native, "openvino int8 (default path), working scale": default}
    sizes = {}
    for name, backend in rows.items():
        backend.infer(frame)  # compile / warm up; records the network input's size
        sizes[name] = backend.frame_sizes[(height, width)]
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, backend in rows.items():
            samples[name].append(time_once(backend, frame))
    print(f"# {machine()}; {args.rounds} rounds on {height}x{width}, {args.model}")
    print("| row | network input | GMAC | ms / frame (median) | GMAC/s |")
    print("|---|---|---|---|---|")
    macs, ms = {}, {}
    for name in rows:
        macs[name] = count_macs(net, *sizes[name]) / 1e9
        ms[name] = statistics.median(samples[name])
        (h, w), rate = sizes[name], macs[name] / ms[name] * 1e3
        print(f"| {name} | {h}x{w} | {macs[name]:.2f} | {ms[name]:.1f} | {rate:.0f} |")
    ref, fast = rows
    work = macs[ref] / macs[fast]
    rate = (macs[fast] / ms[fast]) / (macs[ref] / ms[ref])
    print(
        f"\nspeed-up {ms[ref] / ms[fast]:.1f}x = MAC ratio {work:.2f} (working scale) "
        f"x MAC/s ratio {rate:.2f} (INT8 on OpenVINO over fp32 torch)\n"
    )
    layers = layer_times(default)
    total = sum(t for _, t in layers)
    print("| OpenVINO layer (kernel), last frame | ms | share |")
    print("|---|---|---|")
    for kind, t in layers:
        if t >= 0.005 * total:
            print(f"| {kind} | {t:.1f} | {100 * t / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
