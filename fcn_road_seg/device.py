"""Which torch device to run on: ``auto`` means the first GPU when there is one."""

from __future__ import annotations

import torch

from .errors import ModelError


DEVICES = "auto, cpu, cuda or cuda:N"


def device_problem(device: str) -> str | None:
    """Why ``device`` is no device name this package runs on, None when it is one.

    Only the spelling: whether that GPU is there is ``resolve_device``'s question.
    """
    if device == "auto":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        return f"must be {DEVICES}, got {device!r} ({exc})"
    if dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index not in (None, 0)):
        return f"must be {DEVICES}, got {device!r}"
    return None


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else CPU.

    Otherwise a checked torch device: ModelError for another kind of device (xpu, mps, meta)
    or a GPU that is not there.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if reason := device_problem(device):
        raise ModelError(f"device {reason}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(
            f"device '{device}' requested but there are {torch.cuda.device_count()} CUDA devices"
        )
    return dev
