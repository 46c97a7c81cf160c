"""``load_backend``: open a model file with the backend asked for, or the fastest one for ``auto``.

Backend modules import lazily, so a missing TensorRT, ONNX Runtime or OpenVINO never breaks the
others.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..device import resolve_device
from ..errors import ModelError
from .base import Backend
from .companion import companion_warning, fastest_for
from .options import BackendOptions
from .size import parse_network_size


def load_backend(
    model_path: str | Path,
    backend: str = "auto",
    device: str = "auto",
    resize_policy: str = "letterbox",
    network_size: str = "auto",
    options: BackendOptions | None = None,
    **settings: Any,
) -> Backend:
    """Open ``model_path`` with the named backend (or the fastest that can run it, for ``auto``).

    ``network_size`` (``auto`` = the model's working size, ``native``, or ``HxW``): see
    ``Backend.set_network_size``.

    ``options`` (or the same fields as keywords, e.g. ``precision="fp16"``) are ``BackendOptions``;
    each backend takes its own (given an .onnx, TensorRT builds and caches an engine in
    ``cache.py``'s folder).
    """
    try:
        options = replace(options or BackendOptions(), **settings)
    except TypeError as exc:
        raise ModelError(f"unknown backend option: {exc}") from exc
    if network_size != "auto":
        parse_network_size(network_size)  # a bad value fails before the model is loaded
    from .selection import cpu_candidates, select

    candidates = cpu_candidates(model_path, backend, device, options)
    if not candidates:
        return _opened(model_path, backend, device, resize_policy, network_size, options)
    refused: list[str] = []  # why the INT8 companion could not be opened, once

    def open_candidate(c: Any) -> Backend:
        try:
            return _opened(c.model, c.kind, "cpu", resize_policy, network_size, c.options)
        except ModelError as exc:
            if Path(c.model) != Path(model_path) and not refused:
                refused.append(companion_warning(Path(c.model), str(exc), model_path))
            raise

    chosen = select(
        candidates, open_candidate, {"network_size": network_size, "resize_policy": resize_policy}
    )
    if chosen.name == "torch":  # the checkpoint itself: say why its companion is not used
        chosen.warnings.extend(refused)
    return chosen


def _opened(
    model_path: str | Path,
    backend: str,
    device: str,
    resize_policy: str,
    network_size: str,
    options: BackendOptions,
) -> Backend:
    """``_open_backend`` at ``network_size``."""
    backend_ = _open_backend(model_path, backend, device, resize_policy, options)
    backend_.set_network_size(network_size)
    backend_.flip = options.flip
    return backend_


def _open_backend(
    model_path: str | Path, backend: str, device: str, resize_policy: str, options: BackendOptions
) -> Backend:
    """The backend object for ``load_backend``, at the model's own input shape.

    An INT8 companion that cannot be opened (a truncated file, a graph its metadata does not
    describe) gives way to the checkpoint, with a warning in ``Backend.warnings``.
    """
    if Path(model_path).is_dir():
        raise ModelError(f"model {model_path} is a folder, not a model file")
    if not Path(model_path).is_file():
        raise ModelError(f"model file not found: {model_path}")
    chosen, kind, warning = fastest_for(model_path, backend, device, options)
    try:
        opened = _construct(chosen, kind, device, resize_policy, options)
    except ModelError as exc:
        if chosen == Path(model_path):
            raise
        warning = companion_warning(chosen, str(exc), model_path)
        opened = _construct(Path(model_path), "torch", device, resize_policy, options)
    if warning:
        opened.warnings.append(warning)
    return opened


def _construct(
    model_path: Path, kind: str, device: str, resize_policy: str, options: BackendOptions
) -> Backend:
    """Backend ``kind`` over ``model_path``."""
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(
            model_path,
            resolve_device(device),
            resize_policy=resize_policy,
            **options.for_backend(kind),
        )
    if kind == "onnxruntime":
        from .onnx_backend import OnnxBackend

        return OnnxBackend(
            model_path,
            resolve_device(device),
            resize_policy=resize_policy,
            **options.for_backend(kind),
        )
    if kind == "openvino":
        from .openvino_backend import OpenVinoBackend, onnx_for

        return OpenVinoBackend(
            onnx_for(model_path),
            resolve_device("cpu" if device == "auto" else device),
            resize_policy=resize_policy,
            **options.for_backend(kind),
        )
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(
        model_path,
        resolve_device("cuda" if device == "auto" else device),
        resize_policy=resize_policy,
        **options.for_backend(kind),
    )
