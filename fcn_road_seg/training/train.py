"""Train FCN-8s on KITTI Road (``fcn-road-train``); the same script runs under ``torchrun`` (DDP).

Each epoch trains, validates with the KITTI devkit metrics and, on rank 0, writes ``log.csv``,
TensorBoard logs, ``curves.png`` and the checkpoints ``checkpoint_last.pt``, ``checkpoint_best.pt``
and ``model_best_fp16.pt`` (slim, for deployment) into ``--output-dir``.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ..atomic import atomic_path, check_target
from ..bounds import (
    DROPOUT,
    EMA_EPOCHS,
    HUE_JITTER,
    JITTER,
    LEARNING_RATE,
    PROBABILITY,
    SCALE_FACTOR,
    VAL_FRACTION,
    WARMUP_EPOCHS,
    WARMUP_FACTOR,
    WEIGHT_DECAY,
    check_range,
    int_at_least,
)
from ..errors import DataError, OptionError, RoadSegError, one_line
from ..model import FCN8s, read_checkpoint

from . import data
from .calibration import calibrate, write_calibrated, write_calibration_json
from .checkpoint import (
    TrainState,
    all_rng_states,
    config_mismatch,
    link_checkpoint,
    resume,
    save_checkpoint,
    slim_checkpoint,
    training_checkpoint,
    working_size,
)
from .distributed import Dist, init_distributed, launcher_rank, mean_over_processes
from .ema import make_ema
from .evaluate import eval_loader, evaluate
from .metrics import URBAN
from .sampling import make_train_loader, seed_everything
from .transforms import train_transforms
from .weights import build_model

LOG_FIELDS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_MaxF",
    "val_AP",
    "val_IoU",
    "val_PRE",
    "val_REC",
    "val_F50",
    "images_per_s",
    "seconds",
)
#: what a run writes in --output-dir (a new run refuses, or with --overwrite deletes, them)
RUN_FILES = (
    "checkpoint_last.pt",
    "checkpoint_best.pt",
    "model_best_fp16.pt",
    "log.csv",
    "curves.png",
    "calibration.json",
    "tensorboard",
)
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train VGG16 FCN-8s road segmentation on KITTI Road", add_help=add_help
    )
    p.add_argument(
        "--data-path",
        required=True,
        action="append",
        help="a folder in the KITTI Road layout (holding training/); give it once per dataset "
        "(e.g. KITTI data_road and camvid_road) to train on all of them in one run",
    )
    p.add_argument(
        "--train-split",
        default=None,
        help="stems file of the training images (one --data-path only; default: the dataset's "
        "train.txt, else a seeded split)",
    )
    p.add_argument(
        "--val-split",
        default=None,
        help="stems file of the validation images (one --data-path only; default: the "
        "dataset's val.txt, else a seeded split)",
    )
    p.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with several datasets, draw each epoch's samples so that every dataset is seen "
        "equally often (weighted, with replacement)",
    )
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the per-category train/val split"
    )
    p.add_argument(
        "--val-fraction",
        type=VAL_FRACTION.parse,
        default=0.2,
        help="validation fraction of the seeded split",
    )
    p.add_argument(
        "--size",
        type=int_at_least(32),
        nargs=2,
        default=(320, 960),
        metavar=("H", "W"),
        help="training crop size",
    )
    p.add_argument(
        "--base-size",
        type=int_at_least(32),
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="resize training images to this size before scaling and cropping (default: keep)",
    )
    p.add_argument(
        "--working-height",
        type=int_at_least(32),
        default=None,
        metavar="H",
        help="the working scale: resize every frame to H rows with its own aspect ratio before "
        "scaling and cropping, and validate there (the runtime's network_size auto); "
        "overrides --base-size and --val-size",
    )
    p.add_argument(
        "--scale-range",
        type=SCALE_FACTOR.parse,
        nargs=2,
        default=(0.75, 1.25),
        metavar=("MIN", "MAX"),
        help="random scale range (1 1 disables)",
    )
    p.add_argument(
        "--aspect-range",
        type=SCALE_FACTOR.parse,
        nargs=2,
        default=(1.0, 1.0),
        metavar=("MIN", "MAX"),
        help="random width/height factor range, drawn log-uniformly (1 1 disables)",
    )
    p.add_argument(
        "--hflip-prob", type=PROBABILITY.parse, default=0.5, help="horizontal flip probability"
    )
    p.add_argument(
        "--camera-jitter",
        type=PROBABILITY.parse,
        default=0.0,
        metavar="P",
        help="probability of each of gamma, blur, sensor noise and JPEG re-encoding (0 disables)",
    )
    p.add_argument(
        "--color-jitter",
        type=JITTER.parse,
        nargs=4,
        default=(0.3, 0.3, 0.3, 0.02),
        metavar=("B", "C", "S", "H"),
        help="brightness, contrast, saturation, hue jitter (0s disable)",
    )
    p.add_argument(
        "--val-size",
        type=int_at_least(32),
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="run validation at this size, P upsampled back to the ground truth (default: native)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="encoder init: none (default), 'imagenet' (torchvision download), "
        "'hed' (offline, see fcn-road-weights) or a local VGG16 state dict / HED .weights.h5",
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="start from this fcn_road_seg checkpoint's weights (e.g. the shipped KITTI model), "
        "with its model config; --weights is then only recorded",
    )
    p.add_argument(
        "--fc-channels", type=int_at_least(1), default=4096, help="fc6/fc7 width (4096 = original)"
    )
    p.add_argument(
        "--fc6-kernel", type=int_at_least(1), default=7, help="fc6 kernel size (7 = original)"
    )
    p.add_argument("--dropout", type=DROPOUT.parse, default=0.5)
    p.add_argument(
        "--opt",
        choices=("adam", "adamw"),
        default="adamw",
        help="adam: L2 weight decay (as KittiSeg); adamw: decoupled weight decay",
    )
    p.add_argument("--lr", type=LEARNING_RATE.parse, default=1e-4)
    p.add_argument(
        "--wd", "--weight-decay", type=WEIGHT_DECAY.parse, default=1e-4, dest="weight_decay"
    )
    p.add_argument(
        "--lr-scheduler",
        choices=("poly", "cosine", "constant"),
        default="poly",
        help="decay after warmup, stepped every iteration over epochs x steps-per-epoch",
    )
    p.add_argument(
        "--lr-warmup-epochs",
        type=WARMUP_EPOCHS.parse,
        default=1.0,
        help="linear warmup length in epochs",
    )
    p.add_argument(
        "--lr-warmup-factor",
        type=WARMUP_FACTOR.parse,
        default=0.01,
        help="warmup start lr = factor x lr",
    )
    p.add_argument(
        "--ema-epochs",
        type=EMA_EPOCHS.parse,
        default=0.0,
        help="validate, keep and export an exponential moving average of the weights over about "
        "this many epochs instead of the last step's weights (0 = off)",
    )
    p.add_argument("--epochs", type=int_at_least(1), default=60)
    p.add_argument(
        "--max-steps",
        type=int_at_least(1),
        default=None,
        help="stop after this many steps in total (the LR schedule still spans "
        "--epochs); a stop inside an epoch writes checkpoint_last.pt there, "
        "unvalidated, for --resume to finish the epoch",
    )
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=8, help="images per process and step"
    )
    p.add_argument("--val-batch-size", type=int_at_least(1), default=4)
    p.add_argument(
        "--workers",
        type=int_at_least(0),
        default=4,
        help="data loader processes per training process",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    p.add_argument(
        "--amp",
        choices=("auto", *AMP_DTYPES),
        default="auto",
        help="autocast dtype: auto = bf16 on CUDA, fp32 on a CPU; bf16 on a CPU with native bf16 "
        "(AVX-512 BF16 or AMX) trains about 2x faster; fp16 (CUDA only) adds a GradScaler",
    )
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        default=None,
        help="torch CPU threads (default: torch's choice)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="out/train")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an earlier run's checkpoints, logs, curves and TensorBoard events in "
        "--output-dir before training (without it, a folder holding a run is refused unless "
        "--resume continues it)",
    )
    p.add_argument(
        "--resume",
        default=None,
        help="checkpoint_last.pt to continue from, at the batch where it stopped. With "
        "the same arguments and number of processes, weights, optimizer, LR, "
        "GradScaler, RNG streams, sample order and augmentations go on as in "
        "an uninterrupted run: bitwise on CPU (same --threads); on CUDA only as "
        "close as two uninterrupted runs are (cuDNN, atomics: non-deterministic)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tqdm progress bars",
    )
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="at the end, fit the temperature T of the best model on the validation split",
    )
    return p


def make_datasets(
    args: argparse.Namespace,
) -> tuple[data.KittiRoad, dict[str, list[data.Sample]]]:
    """Training dataset (augmented, every --data-path) and the validation samples per dataset."""
    if (args.train_split or args.val_split) and len(args.data_path) > 1:
        raise DataError("--train-split and --val-split need exactly one --data-path")
    train, val, evaluated = [], {}, {}
    for path in args.data_path:
        part = {
            which: data.split(path, which, stems, args.val_fraction, args.split_seed)
            for which, stems in (("train", args.train_split), ("val", args.val_split))
        }
        if not part["train"] or not part["val"]:
            raise DataError(
                f"{path}: empty split ({len(part['train'])} training, {len(part['val'])} "
                "validation images)"
            )
        both = sorted({s.stem for s in part["train"]} & {s.stem for s in part["val"]})
        if both:
            print(
                f"warning: {path}: {len(both)} frames are in both the training and the "
                f"validation split (e.g. {both[0]}); validation will not show generalisation",
                file=sys.stderr,
            )
        name = data.dataset_name(path)
        if name in val:
            raise DataError(f"--data-path {path}: a dataset named {name!r} was already given")
        train += part["train"]
        val[name] = part["val"]
        for which, group in (("training", part["train"]), ("validation", part["val"])):
            evaluated[f"--data-path {path}'s {which} split"] = group
    start = time.perf_counter()
    every = [*train, *(s for group in val.values() for s in group)]
    for warning in data.check_samples(every, evaluated=evaluated):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"checked {len(every)} frames and their ground truth in "
        f"{time.perf_counter() - start:.1f} s",
        flush=True,
    )
    transforms = train_transforms(
        args.size,
        args.base_size,
        args.scale_range,
        args.hflip_prob,
        args.color_jitter,
        working_height=args.working_height,
        aspect_range=args.aspect_range,
        camera_prob=args.camera_jitter,
    )
    return data.KittiRoad(train, transforms), val


def make_model(weights: str | None, device: torch.device, **config: Any) -> FCN8s:
    """``build_model`` on ``device``, channels_last on CUDA."""
    model = build_model(weights, **config).to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def init_from(model: FCN8s, path: str) -> None:
    """Load the weights of the fcn_road_seg checkpoint ``path`` into ``model`` (same config)."""
    try:
        source, _ = read_checkpoint(path)
    except RoadSegError as exc:
        raise DataError(f"--init-from: {one_line(exc)}") from exc
    if mismatch := config_mismatch(source.config, model):
        raise DataError(f"--init-from {path}: {mismatch}")
    model.load_state_dict(source.state_dict())


def to_device(
    images: torch.Tensor, targets: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on ``device`` (images channels_last on CUDA)."""
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets.to(device, non_blocking=True)


def make_optimizer(
    model: nn.Module, opt: str = "adamw", lr: float = 1e-4, weight_decay: float = 1e-4
) -> torch.optim.Optimizer:
    """Adam(W) with weight decay on weights only (not on biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return (torch.optim.AdamW if opt == "adamw" else torch.optim.Adam)(groups, lr=lr)


def lr_factor(step: int, total: int, warmup: int, kind: str, warmup_factor: float) -> float:
    """LR multiplier at ``step``: linear warmup from ``warmup_factor`` to 1, then ``kind``.

    ``kind`` is poly(0.9)/cosine/constant.
    """
    if step < warmup:
        return warmup_factor + (1 - warmup_factor) * step / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return {"poly": (1 - t) ** 0.9, "cosine": 0.5 * (1 + math.cos(math.pi * t)), "constant": 1.0}[
        kind
    ]


def make_scheduler(
    args: argparse.Namespace, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = args.epochs * steps_per_epoch
    warmup = min(total, round(args.lr_warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, args.lr_scheduler, args.lr_warmup_factor)
    )


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over valid pixels (ignore_index 255); 0 for a batch without any."""
    loss = F.cross_entropy(logits.float(), target, ignore_index=data.IGNORE_INDEX, reduction="sum")
    return loss / (target != data.IGNORE_INDEX).sum().clamp(min=1)


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One forward + backward + optimizer step; returns the detached loss."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(images)
    loss = segmentation_loss(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def amp_for(name: str, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """Autocast dtype for ``--amp`` on ``device``, and a GradScaler enabled for fp16 only."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "none"
    dtype = AMP_DTYPES[name]
    if device.type == "cpu" and dtype == torch.float16:
        raise OptionError("--amp fp16 needs CUDA; on a CPU use --amp bf16 or none")
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_bf16():
        raise OptionError(
            "--amp bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX), where it would be "
            "slower than fp32; use --amp none"
        )
    return dtype, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), as torch.cpu reports it."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    state: TrainState,
    run: Dist,
    amp_dtype: torch.dtype | None,
    max_steps: int | None,
    writer: Any,
    progress: bool,
    ema: AveragedModel | None = None,
) -> tuple[float, float]:
    """Train until the loader ends or ``max_steps``, counting into ``state`` and ``ema``;
    returns (images/s over all ranks, seconds)."""
    model.train()
    loss_sum, images_seen, start = 0.0, 0, time.perf_counter()
    bar = tqdm(
        loader, desc=f"epoch {state.epoch + 1}", disable=not (progress and run.main), leave=False
    )
    for images, targets in bar:
        images, targets = to_device(images, targets, run.device)
        loss = train_step(model, images, targets, optimizer, scaler, amp_dtype)
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        state.step += 1
        state.epoch_batches += 1
        value = loss.item()
        loss_sum += value
        images_seen += len(images) * run.world
        rate = images_seen / (time.perf_counter() - start)
        bar.set_postfix(
            loss=f"{value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", img_s=f"{rate:.1f}"
        )
        if writer is not None:
            writer.add_scalar("train/loss", value, state.step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], state.step)
        if max_steps is not None and state.step >= max_steps:
            break
    state.epoch_loss_sum += mean_over_processes(loss_sum, run)
    seconds = time.perf_counter() - start
    return images_seen / max(seconds, 1e-9), seconds


VAL_KEYS = ("MaxF", "AP", "IoU", "PRE", "REC", "F50")


def validate(
    model: nn.Module,
    loaders: dict[str, torch.utils.data.DataLoader],
    samples: dict[str, Sequence[data.Sample]],
    run: Dist,
    size: Sequence[int] | int | None,
    amp_dtype: torch.dtype | None,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """Devkit metrics (URBAN, i.e. over all of a dataset's validation images) per dataset,
    summed over all ranks, and under ``mean`` their mean (the best checkpoint's criterion)."""
    per_dataset = {}
    for name, loader in loaders.items():
        evaluator = evaluate(
            model,
            loader,
            samples[name],
            run.device,
            size,
            amp_dtype,
            run.device.type == "cuda",
            progress=progress and run.main,
        )
        evaluator.reduce_from_all_processes()
        per_dataset[name] = evaluator.compute()[URBAN]
    if len(per_dataset) == 1:
        mean = next(iter(per_dataset.values()))  # one dataset: all of its metrics
    else:
        mean = {k: sum(m[k] for m in per_dataset.values()) / len(per_dataset) for k in VAL_KEYS}
    return {**per_dataset, "mean": mean}


def log_fields(datasets: Sequence[str]) -> list[str]:
    """``log.csv``'s columns: ``val_*`` are the means over datasets, ``val_<dataset>_*`` each."""
    per = [f"val_{name}_{k}" for name in datasets for k in VAL_KEYS] if len(datasets) > 1 else []
    return [*LOG_FIELDS[:-2], *per, *LOG_FIELDS[-2:]]


def write_log(history: list[dict[str, float]], out: Path, fields: Sequence[str]) -> None:
    with atomic_path(out / "log.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows({k: row[k] for k in fields} for row in history)


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """Training loss and validation MaxF/AP/IoU per epoch (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [r["train_loss"] for r in history], marker=".")
    a.set(xlabel="epoch", ylabel="training loss", title="loss")
    per = sorted(
        {k[4:-5] for k in history[0] if k.startswith("val_") and k.endswith("_MaxF")} - {""}
    )
    keys = [f"val_{name}_{m}" for name in per for m in ("MaxF", "F50")] or [
        "val_MaxF",
        "val_AP",
        "val_IoU",
    ]
    for key in keys:
        b.plot(epochs, [r[key] for r in history], marker=".", label=key[4:])
    b.set(xlabel="epoch", ylabel="validation", title="KITTI road metrics", ylim=(0, 1))
    b.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def summary_writer(out: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn(
            "tensorboard is not installed: no TensorBoard logs (pip install tensorboard)"
        )
        return None
    return SummaryWriter(str(out / "tensorboard"))


def check_output_dir(args: argparse.Namespace) -> Path:
    """``--output-dir``, writable and holding no earlier run unless --resume or --overwrite."""
    out = check_target(args.output_dir, "--output-dir", folder=True)
    earlier = [name for name in RUN_FILES if (out / name).exists()]
    if not earlier or args.resume:
        return out
    if not args.overwrite:
        raise OptionError(
            f"--output-dir {out} holds an earlier run ({', '.join(earlier)}): give --resume "
            f"{out / 'checkpoint_last.pt'} to continue it, --overwrite to replace it, or "
            "another --output-dir"
        )
    if launcher_rank() == 0:  # one process deletes, before any rendezvous
        for name in earlier:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        print(f"--overwrite: deleted the earlier run's {', '.join(earlier)} in {out}")
    return out


def train(args: argparse.Namespace) -> TrainState:
    """The whole run; returns the final counters and per-epoch history."""
    out = check_output_dir(args)
    run = init_distributed(args.device)
    amp_dtype, scaler = amp_for(args.amp, run.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed + run.rank)
    train_set, val_samples = make_datasets(args)
    val_size = args.working_height or args.val_size
    loader = make_train_loader(train_set, args, run)
    steps = len(loader)
    if steps == 0:
        raise DataError(
            f"{len(train_set)} training images are fewer than one batch of {args.batch_size} "
            f"per process x {run.world} processes"
        )
    val_loaders = {
        name: eval_loader(
            group,
            args.val_batch_size,
            min(args.workers, 2),
            range(run.rank, len(group), run.world),
        )
        for name, group in val_samples.items()
    }
    fields = log_fields(list(val_samples))
    model = make_model(
        None if args.init_from else args.weights,
        run.device,
        fc_channels=args.fc_channels,
        fc6_kernel=args.fc6_kernel,
        dropout=args.dropout,
    )
    if args.init_from and not args.resume:
        init_from(model, args.init_from)
    optimizer = make_optimizer(model, args.opt, args.lr, args.weight_decay)
    scheduler = make_scheduler(args, optimizer, steps)
    ema = make_ema(model, args.ema_epochs, steps)
    kept = model if ema is None else ema.module  # validated, saved as the best, exported
    state = TrainState()
    if args.resume:
        state = resume(args.resume, model, optimizer, scheduler, scaler, run, args.seed, ema, args)
    net = (
        nn.parallel.DistributedDataParallel(
            model, [run.device] if run.device.type == "cuda" else None
        )
        if run.world > 1
        else model
    )
    writer = summary_writer(out, args.tensorboard) if run.main else None
    if run.main:
        print(
            f"training on {run.device} x {run.world}: {len(train_set)} training / "
            f"{sum(map(len, val_samples.values()))} validation images "
            f"({', '.join(f'{k} {len(v)}' for k, v in val_samples.items())}), {steps} steps "
            f"per epoch, amp={amp_dtype}, at step {state.step}",
            flush=True,
        )

    for epoch in range(state.epoch + (1 if state.epoch_finished else 0), args.epochs):
        if args.max_steps is not None and state.step >= args.max_steps:
            break
        if epoch != state.epoch:  # a new epoch, not the rest of an unfinished one
            state.epoch, state.epoch_batches, state.epoch_loss_sum = epoch, 0, 0.0
        loader.sampler.set_epoch(epoch, state.epoch_batches)
        rate, seconds = train_one_epoch(
            net,
            loader,
            optimizer,
            scheduler,
            scaler,
            state,
            run,
            amp_dtype,
            args.max_steps,
            writer,
            args.progress,
            ema,
        )
        state.epoch_finished = state.epoch_batches >= steps
        if not state.epoch_finished:  # --max-steps inside the epoch: no validation
            rng = all_rng_states(run)
            if run.main:
                last = out / "checkpoint_last.pt"
                save_checkpoint(
                    training_checkpoint(
                        model, optimizer, scheduler, scaler, state, args, rng, None, ema
                    ),
                    last,
                )
                print(
                    f"stopped at step {state.step}, batch {state.epoch_batches}/{steps} of "
                    f"epoch {epoch + 1}: --resume {last} continues there",
                    flush=True,
                )
            break
        loss = state.epoch_loss_sum / state.epoch_batches
        results = validate(kept, val_loaders, val_samples, run, val_size, amp_dtype, args.progress)
        metrics = results["mean"]
        row = {
            "epoch": epoch,
            "step": state.step,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": loss,
            **{f"val_{k}": metrics[k] for k in VAL_KEYS},
            **{
                f"val_{name}_{k}": m[k]
                for name, m in results.items()
                if name != "mean"
                for k in VAL_KEYS
            },
            "images_per_s": rate,
            "seconds": seconds,
        }
        metrics = {**metrics, "datasets": {k: v for k, v in results.items() if k != "mean"}}
        state.history.append(row)
        best = metrics["MaxF"] > state.best_maxf
        state.best_maxf = max(state.best_maxf, metrics["MaxF"])
        rng = all_rng_states(run)
        if run.main:
            # the best files first: an interrupt before checkpoint_last.pt moves on leaves it at
            # the epoch before, which --resume redoes and so writes them again
            ckpt = training_checkpoint(
                model, optimizer, scheduler, scaler, state, args, rng, metrics, ema
            )
            if best:
                save_checkpoint(ckpt, out / "checkpoint_best.pt")
                save_checkpoint(slim_checkpoint(kept, metrics, args), out / "model_best_fp16.pt")
                link_checkpoint(out / "checkpoint_best.pt", out / "checkpoint_last.pt")
            else:
                save_checkpoint(ckpt, out / "checkpoint_last.pt")
            write_log(state.history, out, fields)
            plot_curves(state.history, out / "curves.png")
            if writer is not None:
                for k in VAL_KEYS:
                    writer.add_scalar(f"val/{k}", metrics[k], state.step)
                    for name, m in metrics["datasets"].items():
                        writer.add_scalar(f"val_{name}/{k}", m[k], state.step)
                writer.add_scalar("train/epoch_loss", loss, state.step)
                writer.add_scalar("train/images_per_s", rate, state.step)
                writer.flush()
            each = "".join(
                f", {name} MaxF {m['MaxF']:.4f} F@0.5 {m['F50']:.4f}"
                for name, m in metrics["datasets"].items()
            )
            print(
                f"epoch {epoch + 1}/{args.epochs} step {state.step}: loss {loss:.4f}, "
                f"val MaxF {metrics['MaxF']:.4f} AP {metrics['AP']:.4f} IoU {metrics['IoU']:.4f}"
                f"{each if len(metrics['datasets']) > 1 else ''}, "
                f"{rate:.1f} images/s, {seconds:.0f} s{' (best)' if best else ''}",
                flush=True,
            )
    if writer is not None:
        writer.close()
    if run.main and args.calibrate and (out / "model_best_fp16.pt").is_file():
        calibrate_best(
            out / "model_best_fp16.pt", [s for g in val_samples.values() for s in g], args
        )
    if run.world > 1:
        dist.destroy_process_group()
    return state


def calibrate_best(path: Path, samples: Sequence[data.Sample], args: argparse.Namespace) -> None:
    """Fit T of the slim best model on the validation samples and store it there.

    At the model's working size.
    """
    model, _ = read_checkpoint(path)
    result = calibrate(model, samples, args.working_height or working_size(args), args.progress)
    write_calibrated(path, path, result)
    write_calibration_json(result, Path(args.output_dir) / "calibration.json")
    print(
        f"calibrated {path}: T = {result['temperature']:.4f}, validation ECE "
        f"{100 * result['before']['ECE']:.2f} % -> {100 * result['after']['ECE']:.2f} %",
        flush=True,
    )


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` for what one flag's type cannot check: ranges, the hue, an even kernel."""
    check_range(parser, "--scale-range", args.scale_range)
    check_range(parser, "--aspect-range", args.aspect_range)
    if reason := HUE_JITTER.problem(args.color_jitter[3]):
        parser.error(f"argument --color-jitter: H {reason}")
    if args.fc6_kernel % 2 == 0:
        parser.error(f"argument --fc6-kernel: must be odd, got {args.fc6_kernel}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    try:
        train(args)
    except RoadSegError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if launcher_rank() == 0:
            last = Path(args.output_dir) / "checkpoint_last.pt"
            print(
                f"interrupted: {last} holds the last finished epoch (--resume {last} continues)"
                if last.is_file()
                else "interrupted: no epoch finished, no checkpoint written",
                file=sys.stderr,
            )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
