"""Which torch device to run on: ``auto`` means the first GPU when there is one."""

from __future__ import annotations

import torch

from .errors import ModelError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else CPU.

    Otherwise a checked torch device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"invalid device '{device}': {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' requested but CUDA is not available")
    return dev
