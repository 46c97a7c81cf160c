"""Training checkpoints: writing them atomically, their contents and ``--resume`` from them.

``checkpoint_last.pt`` holds what resuming needs (weights, optimizer, LR schedule, GradScaler,
counters and every rank's RNG state); ``model_best_fp16.pt`` is the slim one for deployment.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel

from ..atomic import atomic_path
from ..errors import RoadSegError
from ..model import REFERENCE_FRAME, FCN8s, scaled_size

from .data import dataset_name

from .distributed import Dist
from .sampling import seed_everything


@dataclass
class TrainState:
    """Where training stands; a checkpoint stores these fields and ``--resume`` reads them back."""

    epoch: int = -1  # the epoch trained in last (-1: none yet)
    epoch_finished: bool = True  # False after a --max-steps stop inside it
    epoch_batches: int = 0  # batches of it done, per process
    epoch_loss_sum: float = 0.0  # their training losses (each the mean over processes) summed
    step: int = 0
    best_maxf: float = -1.0
    history: list[dict[str, float]] = field(default_factory=list)


def working_size(args: argparse.Namespace) -> list[int] | None:
    """The (H, W) the model was validated at, which the runtime runs it at.

    With ``--working-height``: a KITTI frame's size at that scale (what a fixed-shape export is
    made for; the runtime scales each frame by its own aspect ratio). None = each frame's size.
    """
    if getattr(args, "working_height", None):
        return list(scaled_size(*REFERENCE_FRAME, args.working_height))
    return list(args.val_size) if args.val_size else None


def model_metadata(args: argparse.Namespace) -> dict[str, Any]:
    """What a checkpoint records of its model: working size and scale, encoder, datasets."""
    paths = args.data_path if isinstance(args.data_path, list) else [args.data_path]
    meta = {
        "working_size": working_size(args),
        "working_height": getattr(args, "working_height", None),
        "encoder": args.weights or "scratch",
        "datasets": [dataset_name(p) for p in paths],
    }
    if getattr(args, "init_from", None):
        meta["init_from"] = Path(args.init_from).name
    return meta


def slim_checkpoint(
    model: FCN8s, metrics: dict[str, float], args: argparse.Namespace
) -> dict[str, Any]:
    """Deployable checkpoint: fp16 weights, config and the model's metadata.

    Plus the validation metrics and the training arguments.
    """
    return {
        "model": {k: v.half() for k, v in model.state_dict().items()},
        "model_config": dict(model.config),
        **model_metadata(args),
        "metrics": metrics,
        "train_args": vars(args),
    }


def training_checkpoint(
    model: FCN8s,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    state: TrainState,
    args: argparse.Namespace,
    rng: list[dict[str, Any]],
    metrics: dict[str, float] | None,
    ema: AveragedModel | None = None,
) -> dict[str, Any]:
    """``checkpoint_last.pt``: what ``--resume`` needs, the model's metadata and, at the end of an
    epoch, its validation metrics. With ``--ema-epochs`` its ``model`` is the average (what was
    validated, and what every reader of the file gets), the raw weights are ``raw_model``."""
    ckpt = {
        "model": (model if ema is None else ema.module).state_dict(),
        **({} if ema is None else {"raw_model": model.state_dict(), "ema": ema.state_dict()}),
        "model_config": dict(model.config),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "args": vars(args),
        **model_metadata(args),
        "rng": rng,
        **asdict(state),
    }
    return ckpt if metrics is None else {**ckpt, "metrics": metrics}


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """torch.save through a temporary sibling, renamed into place only when complete."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def link_checkpoint(source: Path, target: Path) -> None:
    """Atomically make ``target`` a copy of ``source`` (a hard link if the file system allows)."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_rng_states(run: Dist) -> list[dict[str, Any]]:
    """Every rank's ``rng_state()``, in rank order (a collective under DDP)."""
    if run.world == 1:
        return [rng_state()]
    states: list[Any] = [None] * run.world
    dist.all_gather_object(states, rng_state())
    return states


def config_mismatch(config: Mapping[str, Any], model: FCN8s) -> str | None:
    """What differs between a checkpoint's model ``config`` and ``model``'s, None when nothing."""
    if dict(config) == dict(model.config):
        return None
    return (
        f"its model config {dict(config)} differs from this run's {dict(model.config)} "
        "(set --fc-channels, --fc6-kernel, --dropout to match)"
    )


#: options the optimizer's restored state overrides: ``--resume`` refuses others than the run's
RESUMED_OPTIONS = {"opt": "--opt", "lr": "--lr", "weight_decay": "--wd"}


def resume(
    path: str,
    model: FCN8s,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    run: Dist,
    seed: int,
    ema: AveragedModel | None = None,
    args: argparse.Namespace | None = None,
) -> TrainState:
    """Model, optimizer, scheduler, scaler, counters, RNGs and the weight average (when
    ``ema`` is given) from ``checkpoint_last.pt``.

    Refused for another model config, and for ``args`` whose optimizer options differ from the
    checkpoint's (the restored optimizer and LR schedule would keep the checkpoint's silently).

    Exact (bitwise on CPU) for the same arguments and number of processes, any ``--workers``;
    not for another batch size or process count, nor on CUDA beyond its kernels' determinism.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if mismatch := config_mismatch(ckpt.get("model_config", {}), model):
            raise RoadSegError(mismatch)
        saved = ckpt.get("args", {})
        for name, flag in RESUMED_OPTIONS.items():
            if args is not None and name in saved and saved[name] != getattr(args, name):
                raise RoadSegError(
                    f"it was trained with {flag} {saved[name]}, this run has "
                    f"{getattr(args, name)}: the optimizer resumes with its own (give the "
                    f"same {flag}, or start a new run from it with --init-from)"
                )
        model.load_state_dict(ckpt.get("raw_model", ckpt["model"]))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is None and "ema" in ckpt:
            raise RoadSegError(
                "it holds a weight average: pass --ema-epochs as the run that wrote it did"
            )
        if ema is not None and "ema" not in ckpt:
            raise RoadSegError("it holds no weight average (trained without --ema-epochs)")
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        state = TrainState(**{f.name: ckpt[f.name] for f in fields(TrainState) if f.name in ckpt})
        rng = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]  # older: rank 0's
    except Exception as exc:
        raise RoadSegError(f"cannot resume from {path}: {exc}") from exc
    if len(rng) == run.world:
        set_rng_state(rng[run.rank])
    else:  # saved by another number of processes (not exact): give each rank its own stream
        seed_everything(seed + run.rank + 1000 * (state.epoch + 1))
    return state
