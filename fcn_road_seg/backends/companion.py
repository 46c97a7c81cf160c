"""Which backend runs a model file: by its type, and a checkpoint's INT8 companion on a CPU.

A checkpoint ``<model>.pt`` may have ``<model>.int8.onnx`` beside it, tied to it both ways by
SHA-256 in its metadata; ``auto`` runs it on a CPU instead of the checkpoint.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..device import resolve_device
from ..errors import ModelError
from ..metadata import read_sidecar, sha256_file, sidecar_path
from .options import BACKENDS, BackendOptions

SUFFIXES = {
    ".pt": "torch",
    ".pth": "torch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}


def backend_for(model_path: str | Path, backend: str = "auto", device: str = "auto") -> str:
    """Which backend serves ``model_path``: by file type, or the one asked for if it reads it.

    ``auto`` runs an .onnx with TensorRT only where TensorRT can run: it is installed, there is a
    GPU, ``device`` is not the CPU, and the model is not quantized in a way TensorRT cannot build
    (ONNX Runtime's uint8 Q/DQ, such as a checkpoint's INT8 companion).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend '{backend}'; choose one of {BACKENDS}")
    suffix = Path(model_path).suffix.lower()
    kind = SUFFIXES.get(suffix)
    if kind is None:
        raise ModelError(
            f"cannot tell the model type of {model_path}: expected one of {sorted(SUFFIXES)}"
        )
    if backend == "auto":
        if kind == "onnxruntime" and not device.startswith("cpu") and _tensorrt_usable():
            from .tensorrt_common import tensorrt_ready

            return "tensorrt" if tensorrt_ready(model_path) else kind
        return kind
    if backend != kind and not (
        (backend == "tensorrt" and kind == "onnxruntime")
        or (backend == "openvino" and kind in ("onnxruntime", "torch"))  # .pt: its INT8 companion
    ):
        raise ModelError(
            f"backend '{backend}' cannot run {model_path} (a {suffix} file needs '{kind}')"
        )
    return backend


def _tensorrt_usable() -> bool:
    """TensorRT importable and a CUDA device present."""
    if not torch.cuda.is_available():
        return False
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def check_companion(model_path: str | Path) -> tuple[Path | None, str | None]:
    """Whether ``<model>.int8.onnx`` beside a checkpoint may stand in for it.

    ``(companion, None)`` when its metadata ties it to that very checkpoint and to its own bytes
    (the SHA-256 of both); ``(None, why not)`` when there is one that is not; ``(None, None)``
    when there is none. Its graph is checked against the metadata when it is opened.
    """
    path = Path(model_path)
    companion = path.with_name(path.stem + ".int8.onnx")
    if path.suffix.lower() not in (".pt", ".pth") or not companion.is_file():
        return None, None
    try:
        meta = read_sidecar(companion)
    except ModelError as exc:
        return None, str(exc)
    if meta is None:
        return None, f"it has no metadata {sidecar_path(companion).name}"
    if meta.get("checkpoint_sha256") != sha256_file(path):
        return (
            None,
            f"its metadata names another checkpoint (checkpoint_sha256 is not {path.name}'s)",
        )
    if "onnx_sha256" not in meta:
        return None, "its metadata lacks the file's own SHA-256 (onnx_sha256): export it again"
    if meta["onnx_sha256"] != sha256_file(companion):
        return None, (
            "its SHA-256 is not the one its metadata records (changed, truncated or replaced "
            "since it was exported)"
        )
    return companion, None


def int8_companion(model_path: str | Path) -> Path | None:
    """``<model>.int8.onnx`` beside a checkpoint when it may stand in for it (see
    ``check_companion``)."""
    return check_companion(model_path)[0]


def companion_warning(companion: Path, reason: str, checkpoint: str | Path) -> str:
    """The one line that says an INT8 companion is not used, and why."""
    return (
        f"INT8 companion {companion} not used: {' '.join(reason.split())}; running the "
        f"checkpoint {checkpoint} with torch instead"
    )


def fastest_for(
    model_path: str | Path, backend: str, device: str, options: BackendOptions = BackendOptions()
) -> tuple[Path, str, str | None]:
    """(model file, backend, warning) that ``auto`` runs.

    On a CPU, that is a checkpoint's INT8 ONNX companion when there is one; the warning says why
    one beside it is not used (None when there is nothing to say).

    The companion is the checkpoint quantized (``fcn-road-export --int8``) and checked against it
    on real frames; ONNX Runtime runs it several times faster on a CPU than torch runs fp32.
    """
    kind = backend_for(model_path, backend, device)
    torch_defaults = options.precision == "auto" and not options.compile
    if (
        backend != "auto"
        or kind != "torch"
        or not torch_defaults
        or resolve_device(device).type != "cpu"
        or importlib.util.find_spec("onnxruntime") is None
    ):
        return Path(model_path), kind, None
    companion, reason = check_companion(model_path)
    if companion is not None:
        return companion, "onnxruntime", None
    path = Path(model_path)
    unused = path.with_name(path.stem + ".int8.onnx")
    return path, kind, companion_warning(unused, reason, path) if reason else None
