"""Running models over KITTI Road and the ``fcn-road-eval`` CLI.

Models run in training (``evaluate``, at a chosen size) or the way the node runs them
(``evaluate_backend``, any backend); the devkit metrics (``metrics``) are computed in the camera
view and, with ``--bev``, in the bird's-eye view the KITTI server ranks by (``bev``). Testing
images give KITTI submission files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..atomic import atomic_path, check_target, write_json
from ..backends import BACKENDS, Backend, load_backend
from ..bounds import VAL_FRACTION, int_at_least
from ..errors import DataError, run_cli
from ..image import Frame
from ..model import scaled_size

from . import data
from .bev import BevMeter
from .calibration import CalibrationMeter, reliability_diagram
from .metrics import RoadEvaluator, format_table
from .transforms import Compose, ToTensor


def collate_lists(batch: Sequence[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """Batches as lists: images and targets of different sizes stay separate."""
    return tuple(map(list, zip(*batch)))


class Indexed(torch.utils.data.Dataset):
    """(index, *dataset[index]), so predictions can be matched to samples."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (index, *self.dataset[index])


def eval_loader(
    samples: Sequence[data.Sample],
    batch_size: int = 1,
    workers: int = 0,
    indices: Sequence[int] | None = None,
) -> torch.utils.data.DataLoader:
    """(indices, images, targets) list batches of float [0, 1] images and int64 targets.

    At native size.
    """
    ds: torch.utils.data.Dataset = Indexed(data.KittiRoad(samples, Compose([ToTensor()])))
    if indices is not None:
        ds = torch.utils.data.Subset(ds, list(indices))
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_lists
    )


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    device: torch.device,
    size: Sequence[int] | int | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> list[torch.Tensor]:
    """P(road) (float32 H x W, at each image's own size) for float [0, 1] C x H x W images.

    With ``size`` the images are resized (bilinear, antialiased) for the model, to that (H, W)
    or, for an int, to that working height with their own aspect ratio; P is upsampled back
    bilinearly. Same-size images run as one batch.
    """
    sizes = [tuple(im.shape[-2:]) for im in images]
    x = [im.to(device, non_blocking=True)[None] for im in images]
    if size is not None:
        x = [
            F.interpolate(
                im,
                size=scaled_size(*s, size) if isinstance(size, int) else tuple(size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            for im, s in zip(x, sizes)
        ]
    groups = [torch.cat(x)] if len({im.shape for im in x}) == 1 else x
    probs = []
    for batch in groups:
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(batch).float()
        probs.extend(torch.softmax(logits, 1)[:, 1:2])
    return [
        p[None]
        if p.shape[-2:] == s
        else F.interpolate(p[None], size=s, mode="bilinear", align_corners=False)
        for p, s in zip(probs, sizes)
    ]  # type: ignore[misc]


def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    samples: Sequence[data.Sample],
    device: torch.device,
    size: Sequence[int] | int | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    on_prob: Callable[[data.Sample, torch.Tensor], None] | None = None,
    progress: bool = True,
) -> RoadEvaluator | None:
    """Run ``model`` over an ``eval_loader``; returns the (not yet all-reduced) evaluator.

    None if unlabelled.

    ``on_prob(sample, P)`` receives each float H x W P(road) (e.g. to write submission files).
    """
    model.eval()
    evaluator = RoadEvaluator(sorted({s.category for s in samples}), device)
    labelled = True
    for indices, images, targets in tqdm(loader, desc="eval", disable=not progress, leave=False):
        probs = predict(model, images, device, size, amp_dtype, channels_last)
        for i, p, t in zip(indices, probs, targets):
            p = p[0, 0]
            if t is None:
                labelled = False
            else:
                evaluator.update(p, t.to(device, non_blocking=True), samples[i].category)
            if on_prob is not None:
                on_prob(samples[i], p)
    return evaluator if labelled else None


def evaluate_backend(
    backend: Backend,
    samples: Sequence[data.Sample],
    workers: int = 2,
    on_prob: Callable[[data.Sample, torch.Tensor], None] | None = None,
    progress: bool = True,
    calibration: CalibrationMeter | None = None,
    bev: BevMeter | None = None,
) -> RoadEvaluator | None:
    """Evaluate the way the node runs: each uint8 frame through ``backend.probability``.

    That is: fit, network, unfit.

    ``calibration``, when given, also collects the calibration of P(road) over all labelled frames;
    ``bev`` the bird's-eye-view metrics.
    """
    loader = torch.utils.data.DataLoader(
        Indexed(data.KittiRoad(samples)),
        batch_size=1,
        num_workers=workers,
        collate_fn=collate_lists,
    )
    evaluator = RoadEvaluator(sorted({s.category for s in samples}), "cpu")
    labelled = True
    for (index,), (image,), (target,) in tqdm(
        loader, desc="eval", disable=not progress, leave=False
    ):
        p = backend.probability(Frame(image, "rgb8")).float().cpu()
        if target is None:
            labelled = False
        else:
            evaluator.update(p, torch.from_numpy(target), samples[index].category)
            if calibration is not None:
                calibration.update(p, torch.from_numpy(target))
            if bev is not None:
                bev.update(samples[index], p, target)
        if on_prob is not None:
            on_prob(samples[index], p)
    return evaluator if labelled else None


def write_confidence(path: Path, prob: torch.Tensor) -> None:
    """KITTI submission PNG: 8-bit P(road) * 255 rounded, written atomically."""
    png = (prob.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", png)
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {path}")
        tmp.write_bytes(buf.tobytes())


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="KITTI Road (camera view) pixel evaluation of a model, run the "
        "way the node runs it (same backend, working size and resizing)",
        add_help=add_help,
    )
    parser.add_argument(
        "--data-path",
        required=True,
        help="KITTI data_road folder (holding training/ and testing/)",
    )
    parser.add_argument(
        "--model", required=True, help="checkpoint (.pt), ONNX model or TensorRT engine"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="as the node's backend parameter"
    )
    parser.add_argument(
        "--split",
        default=None,
        help="stems file of the images to evaluate (default: seeded split)",
    )
    parser.add_argument(
        "--split-seed", type=int, default=0, help="seed of the per-category split without --split"
    )
    parser.add_argument(
        "--val-fraction",
        type=VAL_FRACTION.parse,
        default=0.2,
        help="validation fraction without --split",
    )
    parser.add_argument(
        "--testing",
        action="store_true",
        help="run on testing/image_2 (no metrics; use with --submission-dir)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument(
        "--network-size",
        default="auto",
        help="auto (the model's working size, as the node), native (each frame's own) or HxW",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="shorthand for --network-size HxW",
    )
    parser.add_argument(
        "--bev",
        action="store_true",
        help="also evaluate in the devkit's bird's-eye view (the KITTI server's ranking metric); "
        "needs each frame's calib/<stem>.txt",
    )
    parser.add_argument(
        "--calib",
        default=None,
        help="with --bev: calibration folder (default <data-path>/training/calib) or one file "
        "for every frame",
    )
    parser.add_argument(
        "--flip",
        action="store_true",
        help="test-time flip: also run each frame mirrored and average P(road)",
    )
    parser.add_argument("--workers", type=int_at_least(0), default=2)
    parser.add_argument("--output", default=None, help="folder for metrics.json")
    parser.add_argument(
        "--submission-dir",
        default=None,
        help="write KITTI submission PNGs <cat>_road_<id>.png (P(road) * 255) here",
    )
    return parser


def run(args: argparse.Namespace) -> dict[str, dict[str, float]] | None:
    """Evaluate (and/or write submission files) as ``args`` says; returns the metrics.

    None with --testing.
    """
    for name in ("output", "submission_dir"):
        if getattr(args, name):
            check_target(getattr(args, name), f"--{name.replace('_', '-')}", folder=True)
    if args.testing:
        samples = data.testing_samples(args.data_path)
    else:
        samples = data.split(args.data_path, "val", args.split, args.val_fraction, args.split_seed)
    what = args.split or f"the split of {args.data_path}"
    if not samples:
        raise DataError(f"no frames to evaluate: {what} selects none")
    evaluated = None if args.testing else {f"the frames to evaluate ({what})": samples}
    for warning in data.check_samples(samples, evaluated=evaluated):
        print(f"warning: {warning}", file=sys.stderr)
    network_size = f"{args.size[0]}x{args.size[1]}" if args.size else args.network_size
    backend = load_backend(
        args.model, args.backend, args.device, network_size=network_size, flip=args.flip
    )
    for warning in backend.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    bev = None
    if args.bev:
        bev = BevMeter(samples, args.calib or Path(args.data_path) / "training" / "calib")
    print(f"evaluating {len(samples)} frames with {backend.describe()}", flush=True)
    on_prob = None
    if args.submission_dir:
        out = Path(args.submission_dir)
        on_prob = lambda s, p: write_confidence(out / data.gt_name(s.stem), p)  # noqa: E731
    meter = CalibrationMeter()
    evaluator = evaluate_backend(
        backend, samples, args.workers, on_prob, calibration=meter, bev=bev
    )
    if evaluator is None:
        print(f"wrote {len(samples)} submission files to {args.submission_dir}")
        return None
    metrics = evaluator.compute()
    calibration = meter.compute()
    print(format_table(metrics))
    print(
        f"calibration (URBAN, {calibration['pixels']} valid pixels): "
        f"ECE {100 * calibration['ECE']:.2f} %, "
        f"MCE {100 * calibration['MCE']:.2f} %, Brier {calibration['Brier']:.4f}"
    )
    bev_metrics = None
    if bev is not None:
        bev_metrics = bev.evaluator.compute()
        print(f"{bev.describe()}:\n{format_table(bev_metrics)}")
    if args.output:
        target = Path(args.output) / "metrics.json"
        report = {
            "model": str(args.model),
            "data_path": str(args.data_path),
            "images": len(samples),
            "backend": backend.describe(),
            "network_size": backend.network_size_text(),
            "metrics": metrics,
            "calibration": calibration,
        }
        if bev is not None:
            report["bev"] = {"view": bev.describe(), "metrics": bev_metrics}
        write_json(target, report)
        diagram = reliability_diagram(
            calibration, Path(args.output) / "reliability.png", Path(args.model).name
        )
        print(f"wrote {target} and {diagram}")
        if bev is not None and (sheet := bev.write_pictures(Path(args.output) / "bev.png")):
            print(f"wrote {sheet}: the first {len(bev.pictures)} frames in bird's-eye view")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.testing and not args.submission_dir:
        print(
            "error: --testing needs --submission-dir (testing images have no ground truth)",
            file=sys.stderr,
        )
        return 2
    if args.testing and args.bev:
        print("error: --bev needs ground truth; --testing has none", file=sys.stderr)
        return 2
    return run_cli(run, args)


if __name__ == "__main__":
    sys.exit(main())
