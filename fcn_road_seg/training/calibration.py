"""Calibration of P(road): ECE / MCE / Brier, reliability diagrams, and temperature scaling.

Temperature scaling (Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
2017) fits one scalar T > 0 by minimising the NLL of P = sigmoid((l1 - l0) / T) on the validation
split, exactly as the runtime computes P: the frame fitted to the working size, the network, and P
resized back to the frame's size (bilinear). T leaves the 0.5 mask, and so MaxF's ranking of
pixels, unchanged. ``fcn-road-calibrate`` fits T for an existing checkpoint and writes it into a
copy.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..atomic import atomic_path, check_target, write_json
from ..backends import Fit, fit, parse_network_size, unfit
from ..bounds import VAL_FRACTION
from ..errors import DataError, ModelError, OptionError, run_cli
from ..model import FCN8s, read_checkpoint, scaled_size, working_height_of

from . import data

NUM_BINS = 15
LOG_T_RANGE = (-3.0, 3.0)  # T in [0.05, 20]


class CalibrationMeter:
    """Equal-width bins of P(road) over valid pixels: counts, summed P and road counts.

    Plus the Brier sum.
    """

    def __init__(self, bins: int = NUM_BINS) -> None:
        self.bins = bins
        self.count = np.zeros(bins, np.int64)
        self.sum_p = np.zeros(bins, np.float64)
        self.road = np.zeros(bins, np.int64)
        self.brier = 0.0

    def update(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        """Add one image: P(road) and labels (0, 1, 255 = ignored) of the same shape."""
        valid = target != data.IGNORE_INDEX
        p = prob[valid].double().cpu().numpy()
        y = (target[valid] == 1).cpu().numpy()
        index = np.minimum((p * self.bins).astype(np.int64), self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.sum_p += np.bincount(index, weights=p, minlength=self.bins)
        self.road += np.bincount(index, weights=y, minlength=self.bins).astype(np.int64)
        self.brier += float(((p - y) ** 2).sum())

    def compute(self) -> dict[str, Any]:
        """ECE, MCE, Brier, and the per-bin numbers.

        ECE is the count-weighted mean |frequency - mean P|, MCE the largest gap.
        """
        n = int(self.count.sum())
        if n == 0:
            return {"ECE": math.nan, "MCE": math.nan, "Brier": math.nan, "pixels": 0, "bins": []}
        used = self.count > 0
        mean_p = np.divide(self.sum_p, self.count, out=np.zeros(self.bins), where=used)
        freq = np.divide(self.road, self.count, out=np.zeros(self.bins), where=used)
        gap = np.abs(freq - mean_p)
        bins = [
            {
                "low": i / self.bins,
                "high": (i + 1) / self.bins,
                "count": int(self.count[i]),
                "mean_p": float(mean_p[i]),
                "road_frequency": float(freq[i]),
            }
            for i in range(self.bins)
        ]
        return {
            "ECE": float((self.count * gap).sum() / n),
            "MCE": float(gap[used].max()),
            "Brier": self.brier / n,
            "pixels": n,
            "bins": bins,
        }


def reliability_diagram(stats: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """PNG: observed road frequency against mean P(road) per bin, with the bin counts below.

    Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in stats["bins"] if b["count"]]
    width = 1.0 / max(1, len(stats["bins"]))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.bar(
        [b["low"] for b in bins],
        [b["road_frequency"] for b in bins],
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.6,
        label="observed road frequency",
    )
    top.plot(
        [b["mean_p"] for b in bins],
        [b["road_frequency"] for b in bins],
        "o-",
        color="C3",
        label="(mean P, frequency)",
    )
    top.set(
        ylabel="fraction of pixels that are road",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"{title}  ECE {100 * stats['ECE']:.2f} %, Brier {stats['Brier']:.4f}".strip(),
    )
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(
        [b["low"] for b in bins],
        [b["count"] for b in bins],
        width=width,
        align="edge",
        edgecolor="black",
    )
    bottom.set(xlabel="P(road)", ylabel="pixels", yscale="log")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _nll(pairs: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], log_t: float) -> float:
    """Mean NLL over valid pixels of P = resize_back(sigmoid(z / T)).

    For (z, target, valid) triples.
    """
    inv = math.exp(-log_t)
    total, count = 0.0, 0
    for z, target, valid in pairs:
        p = torch.sigmoid(z * inv)
        if p.shape != target.shape:
            p = F.interpolate(
                p[None, None], size=target.shape, mode="bilinear", align_corners=False
            )[0, 0]
        p = p[valid].clamp(1e-7, 1 - 1e-7).double()
        y = target[valid] == 1
        total -= float(torch.where(y, p.log(), (1 - p).log()).sum())
        count += int(valid.sum())
    return total / max(count, 1)


def fit_temperature(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], tol: float = 1e-4
) -> float:
    """T minimising the NLL of (logit difference map, labels) pairs: golden-section on log T.

    Each z map is at the network's size; it is resized back to its labels' size after the sigmoid,
    as the runtime does. The NLL is unimodal in log T for practical purposes.
    """
    triples = [(z.float(), t, t != data.IGNORE_INDEX) for z, t in pairs]
    if not any(bool(v.any()) for _, _, v in triples):
        raise DataError("no valid (road or non-road) ground-truth pixels to fit a temperature on")
    lo, hi = LOG_T_RANGE
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _nll(triples, a), _nll(triples, b)
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _nll(triples, a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _nll(triples, b)
    return math.exp((lo + hi) / 2)


def edge_warning(temperature: float, margin: float = 0.01) -> str | None:
    """Why a fitted T within ``margin`` (in log T) of ``LOG_T_RANGE``'s ends cannot be trusted."""
    lo, hi = LOG_T_RANGE
    if lo + margin < math.log(temperature) < hi - margin:
        return None
    return (
        f"the fitted temperature T = {temperature:.3g} is at the end of its search range "
        f"[{math.exp(lo):.3g}, {math.exp(hi):.3g}]: the NLL's minimum lies beyond it, so the "
        "calibration is only partly corrected (are the labels or the model what they should be?)"
    )


@torch.inference_mode()
def logit_maps(
    model: FCN8s,
    samples: Sequence[data.Sample],
    network_size: tuple[int, int] | int | None,
    progress: bool = True,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(l1 - l0 at the network's size, labels at the frame's size) per sample.

    Each frame is fitted as the runtime fits it: to ``network_size`` (H, W), or for an int to
    that working height with its own aspect ratio, or (None) at its own size.
    """
    model.eval()
    pairs = []
    for sample in tqdm(samples, desc="logits", disable=not progress, leave=False):
        image, target = data.load_sample(sample)
        size = (
            scaled_size(*image.shape[:2], network_size)
            if isinstance(network_size, int)
            else network_size
        )
        fitted, how = fit(torch.from_numpy(image)[None], size, "stretch")
        logits = model(fitted.permute(0, 3, 1, 2).float() / 255.0)[0]
        z = (logits[1] - logits[0])[: how.valid[0], : how.valid[1]]
        pairs.append((z, torch.from_numpy(target)))
    return pairs


def calibration_of(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], temperature: float
) -> dict[str, Any]:
    """ECE/MCE/Brier of the runtime's P with ``temperature`` on the (z, labels) pairs."""
    meter = CalibrationMeter()
    for z, target in pairs:
        p = torch.sigmoid(z / temperature)
        meter.update(unfit(p[None], Fit(tuple(target.shape), tuple(p.shape))), target)
    return meter.compute()


def calibrate(
    model: FCN8s,
    samples: Sequence[data.Sample],
    network_size: tuple[int, int] | int | None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit T on ``samples``; returns T and the calibration (with bins) before (T = 1) and after,
    over all samples and, in ``datasets``, per dataset."""
    pairs = logit_maps(model, samples, network_size, progress)
    temperature = fit_temperature(pairs)
    if warning := edge_warning(temperature):
        print(f"warning: {warning}", file=sys.stderr)
    groups: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for sample, pair in zip(samples, pairs):
        groups.setdefault(sample.dataset, []).append(pair)
    return {
        "temperature": temperature,
        "frames": len(samples),
        "before": calibration_of(pairs, 1.0),
        "after": calibration_of(pairs, temperature),
        "datasets": {
            name: {
                "frames": len(group),
                "before": calibration_of(group, 1.0),
                "after": calibration_of(group, temperature),
            }
            for name, group in groups.items()
        },
    }


def ece_per_dataset(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Frames and ECE before and after T, per dataset of a ``calibrate`` result."""
    return {
        name: {
            "frames": r["frames"],
            "ECE_before": r["before"]["ECE"],
            "ECE_after": r["after"]["ECE"],
        }
        for name, r in result.get("datasets", {}).items()
    }


def write_calibrated(checkpoint: str | Path, output: str | Path, result: dict[str, Any]) -> Path:
    """A copy of ``checkpoint`` with ``temperature`` and the ``calibration`` numbers.

    Written atomically.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["temperature"] = float(result["temperature"])
    ckpt["calibration"] = {k: result[k] for k in ("temperature", "frames", "before", "after")}
    ckpt["calibration"]["datasets"] = ece_per_dataset(result)
    with atomic_path(output) as tmp:
        torch.save(ckpt, tmp)
    return Path(output)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-road-calibrate",
        description="Fit the temperature T of a checkpoint "
        "on a validation split (NLL, Guo et al. 2017) and write a calibrated copy",
    )
    p.add_argument("checkpoint", help="checkpoint (.pt) written by fcn-road-train")
    p.add_argument(
        "--data-path",
        required=True,
        action="append",
        help="folder in the KITTI Road layout; give it once per dataset",
    )
    p.add_argument(
        "--split",
        default=None,
        help="stems file of the validation images (one --data-path only; default: the "
        "dataset's val.txt, else a seeded split)",
    )
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--val-fraction", type=VAL_FRACTION.parse, default=0.2)
    p.add_argument(
        "--network-size",
        default="auto",
        help="auto (the checkpoint's working scale, each frame's aspect ratio kept), native "
        "or HxW",
    )
    p.add_argument(
        "-o", "--output", help="calibrated checkpoint (default: overwrite the input, atomically)"
    )
    p.add_argument(
        "--diagram-dir", help="write reliability diagrams (before/after) and calibration.json here"
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def write_calibration_json(result: dict[str, Any], path: Path) -> None:
    """T, the calibration before and after, and ECE per dataset, as JSON (atomically)."""
    report = {k: result[k] for k in ("temperature", "frames", "before", "after")}
    write_json(path, {**report, "datasets": ece_per_dataset(result)})


def validation_samples(args: argparse.Namespace) -> list[data.Sample]:
    """The validation frames of every --data-path, each split non-empty; odd colours warned of."""
    if args.split and len(args.data_path) > 1:
        raise OptionError("--split needs exactly one --data-path")
    samples = []
    for path in args.data_path:
        part = data.split(path, "val", args.split, args.val_fraction, args.split_seed)
        if not part:
            raise DataError(
                f"--data-path {path}: empty validation split "
                f"({args.split or 'its val.txt or --val-fraction'} selects no frame)"
            )
        samples += part
    for warning in data.check_samples(samples):
        print(f"warning: {warning}", file=sys.stderr)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    """``fcn-road-calibrate CHECKPOINT --data-path DIR``: returns the exit status."""
    return run_cli(_calibrate, get_args_parser().parse_args(argv))


def _calibrate(args: argparse.Namespace) -> None:
    """Check the outputs, fit T, write the diagrams, then the calibrated checkpoint."""
    what = "-o" if args.output else "the output (the default -o, the checkpoint itself)"
    output = check_target(args.output or args.checkpoint, what, folder=False)
    diagrams = args.diagram_dir and check_target(args.diagram_dir, "--diagram-dir", folder=True)
    try:
        given = None if args.network_size == "auto" else parse_network_size(args.network_size)
    except ModelError as exc:
        raise OptionError(f"--network-size: {exc}") from None
    if not Path(args.checkpoint).is_file():
        raise ModelError(f"model file not found: {args.checkpoint}")
    samples = validation_samples(args)
    model, meta = read_checkpoint(args.checkpoint)
    size = working_height_of(meta) if given is None else given
    result = calibrate(model, samples, None if size == "native" else size, not args.no_progress)
    if diagrams:
        for key in ("before", "after"):
            reliability_diagram(
                result[key],
                diagrams / f"reliability_{key}.png",
                f"{key} (T = {1.0 if key == 'before' else result['temperature']:.3f})",
            )
        write_calibration_json(result, diagrams / "calibration.json")
    write_calibrated(args.checkpoint, output, result)
    b, a = result["before"], result["after"]
    print(
        f"T = {result['temperature']:.4f} on {result['frames']} frames: "
        f"ECE {100 * b['ECE']:.2f} % -> "
        f"{100 * a['ECE']:.2f} %, Brier {b['Brier']:.4f} -> {a['Brier']:.4f}; wrote {output}"
    )


if __name__ == "__main__":
    sys.exit(main())
