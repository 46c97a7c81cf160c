"""Training throughput (images/s of forward + backward + optimizer step) of train.py's FCN-8s step.

Runs on CPU (fp32, and bf16 autocast where the CPU has native bf16; small sizes to stay short)
and, when present, on CUDA (fp32, bf16 and fp16 autocast, channels_last) for the full head
(fc 4096, 7x7 fc6) and a light head (fc 512, 3x3 fc6).
Batches are random tensors: the data loader is not timed.

    .venv/bin/python benchmarks/train_throughput.py                 # CPU (+ CUDA if available)
    .venv/bin/python benchmarks/train_throughput.py --cpu-sizes 96x320 --cpu-batch 2 --steps 3
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fcn_road_seg.training.train import (  # noqa: E402
    amp_for,
    cpu_has_bf16,
    make_model,
    make_optimizer,
    to_device,
    train_step,
)

HEADS = {"full 4096/7": (4096, 7), "light 512/3": (512, 3)}


def size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-sizes", type=size, nargs="+", default=[(96, 320)], metavar="HxW")
    p.add_argument(
        "--cuda-sizes", type=size, nargs="+", default=[(160, 576), (375, 1242)], metavar="HxW"
    )
    p.add_argument("--cpu-batch", type=int, default=2)
    p.add_argument("--cuda-batch", type=int, default=8)
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed steps (CUDA adds 3 more for cuDNN autotuning)",
    )
    p.add_argument("--steps", type=int, default=3, help="timed steps per row")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU rows")
    return p


def measure(
    device: torch.device,
    hw: tuple[int, int],
    head: tuple[int, int],
    amp: str,
    batch: int,
    warmup: int,
    steps: int,
) -> float:
    """Images/s over ``steps`` timed train steps after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    model = make_model(None, device, fc_channels=head[0], fc6_kernel=head[1]).train()
    optimizer = make_optimizer(model)
    amp_dtype, scaler = amp_for(amp, device)
    images, targets = to_device(
        torch.rand(batch, 3, *hw), torch.randint(0, 2, (batch, *hw)), device
    )
    for _ in range(warmup + (3 if device.type == "cuda" else 0)):
        train_step(model, images, targets, optimizer, scaler, amp_dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(model, images, targets, optimizer, scaler, amp_dtype)
    loss.item()  # waits for the device
    return steps * batch / (time.perf_counter() - start)


def rows(args: argparse.Namespace) -> list[tuple[torch.device, tuple[int, int], str, str, int]]:
    plan = []
    if not args.no_cpu:
        plan += [
            (torch.device("cpu"), hw, head, amp, args.cpu_batch)
            for hw in args.cpu_sizes
            for head in HEADS
            for amp in ("none", "bf16")
            if amp == "none" or cpu_has_bf16()
        ]
    if torch.cuda.is_available():
        plan += [
            (torch.device("cuda"), hw, head, amp, args.cuda_batch)
            for hw in args.cuda_sizes
            for head in HEADS
            for amp in ("none", "bf16", "fp16")
        ]
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    print(f"# {' '.join(sys.argv)}")
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA")
    )
    print("| device | size (HxW) | head (fc/kernel) | precision | batch | images/s |")
    print("|---|---|---|---|---|---|")
    for device, hw, head, amp, batch in rows(args):
        rate = measure(device, hw, HEADS[head], amp, batch, args.warmup, args.steps)
        precision = {
            "none": "fp32",
            "bf16": "bf16 autocast",
            "fp16": "fp16 autocast + GradScaler",
        }[amp]
        print(
            f"| {device.type} | {hw[0]}x{hw[1]} | {head} | {precision} | {batch} | {rate:.2f} |",
            flush=True,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
