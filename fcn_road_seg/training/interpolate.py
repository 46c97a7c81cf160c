"""Weight-space interpolation of two checkpoints of one model (``fcn-road-interpolate``).

``(1 - alpha) * A + alpha * B`` for every weight: with A a model and B the same model fine-tuned on
more data, this is WiSE-FT (Wortsman et al., *Robust fine-tuning of zero-shot models*, CVPR 2022),
which keeps much of A's accuracy on its own data while gaining B's on the new. The result takes
B's metadata (working scale, encoder, datasets) and records both sources and alpha; it has no
temperature (fit one with ``fcn-road-calibrate``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atomic import atomic_path, check_target
from ..errors import DataError, run_cli
from ..model import read_checkpoint


def interpolate(a: str | Path, b: str | Path, alpha: float) -> dict[str, Any]:
    """The slim checkpoint ``(1 - alpha) * a + alpha * b`` (fp16 weights, b's metadata)."""
    if not 0 <= alpha <= 1:
        raise DataError(f"--alpha must be in [0, 1], got {alpha}")
    model_a, _ = read_checkpoint(a)
    model_b, meta = read_checkpoint(b)
    if dict(model_a.config) != dict(model_b.config):
        raise DataError(
            f"{a} and {b} are different models ({dict(model_a.config)} vs {dict(model_b.config)})"
        )
    wa, wb = model_a.state_dict(), model_b.state_dict()
    weights = {k: ((1 - alpha) * wa[k] + alpha * wb[k]).half() for k in wb}
    meta = {k: v for k, v in meta.items() if k not in ("temperature", "calibration", "metrics")}
    return {
        "model": weights,
        "model_config": dict(model_b.config),
        **meta,
        "interpolated": {"a": Path(a).name, "b": Path(b).name, "alpha": alpha},
    }


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-road-interpolate",
        description="(1 - alpha) A + alpha B of two checkpoints of one model (WiSE-FT)",
    )
    p.add_argument("a", help="checkpoint A (e.g. the model before fine-tuning)")
    p.add_argument("b", help="checkpoint B (e.g. A fine-tuned on more datasets)")
    p.add_argument("--alpha", type=float, required=True, help="weight of B, in [0, 1]")
    p.add_argument("-o", "--output", required=True, help="the interpolated checkpoint (.pt)")
    return p


def _interpolate(args: argparse.Namespace) -> None:
    check_target(args.output, "-o", folder=False, inputs=(args.a, args.b))
    ckpt = interpolate(args.a, args.b, args.alpha)
    with atomic_path(args.output) as tmp:
        torch.save(ckpt, tmp)
    print(f"wrote {args.output}: {1 - args.alpha:g} x {args.a} + {args.alpha:g} x {args.b}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_interpolate, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
