"""``backend: auto`` on a CPU: time every backend that can run the model here, keep the fastest.

A checkpoint with an INT8 companion can run as OpenVINO INT8, ONNX Runtime INT8 or torch (bf16
where the CPU has it, else fp32); an ONNX model on OpenVINO or ONNX Runtime. Which is fastest
depends on the CPU (AMX, VNNI, BF16), the runtimes' versions and the threads, so it is measured:
each candidate runs a few frames of the working size and the lowest median wins. The choice is
cached per model files (SHA-256), CPU (model name and flags), runtime versions and settings, in
``cache.py``'s folder, so the next start opens only the winner. An explicit backend, precision or
``torch_compile`` is never second-guessed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..atomic import atomic_path
from ..cache import cache_dir
from ..device import resolve_device
from ..errors import ModelError
from ..image import Frame
from ..metadata import read_sidecar, sha256_file
from ..model import REFERENCE_FRAME
from .base import Backend
from .companion import fastest_for
from .options import BackendOptions

log = logging.getLogger(__name__)

CHOICE_FORMAT = "fcn_road_seg.backend_choice/1"
#: the package whose version each backend kind runs on (several names for ONNX Runtime's builds)
_PACKAGES = {
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "openvino": ("openvino",),
}


@dataclass(frozen=True)
class Candidate:
    """One way ``auto`` may run the model: a label for logs, the file, the backend and options."""

    label: str
    model: Path
    kind: str
    options: BackendOptions


def cpu_candidates(
    model_path: str | Path, backend: str, device: str, options: BackendOptions
) -> list[Candidate]:
    """What ``auto`` measures for ``model_path`` on a CPU; empty when there is nothing to choose.

    Where ``fastest_for`` runs an ONNX model with ONNX Runtime on a CPU (a checkpoint's INT8
    companion, or an .onnx itself), OpenVINO can run that file too, and torch the checkpoint. Only
    for ``backend: auto`` with the default precision, and only the runtimes that are installed.
    """
    if backend != "auto" or options.precision != "auto" or options.compile:
        return []
    if not Path(model_path).is_file():
        return []  # opening it says why
    onnx, kind, _ = fastest_for(model_path, backend, device, options)
    if kind != "onnxruntime" or resolve_device(device).type != "cpu":
        return []
    precision = (read_sidecar(onnx) or {}).get("precision", "onnx")
    found = [
        Candidate(f"{name} {precision}", onnx, name, options)
        for name in ("openvino", "onnxruntime")
    ]
    if onnx != Path(model_path):  # a checkpoint's companion: torch runs the checkpoint itself
        from .torch_backend import cpu_has_bf16

        torch_precision = "bf16" if cpu_has_bf16() else "fp32"
        found.append(
            Candidate(
                f"torch {torch_precision}",
                Path(model_path),
                "torch",
                replace(options, precision=torch_precision),
            )
        )
    found = [c for c in found if importlib.util.find_spec(c.kind) is not None]
    return found if len(found) > 1 else []


def median_ms(backend: Backend, warmup: int = 2, runs: int = 5) -> float:
    """Median ms of ``backend.infer`` on a seeded frame of the working size, after a warm-up."""
    h, w = backend.working_size or REFERENCE_FRAME
    frame = Frame(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8), "rgb8")
    for _ in range(warmup):
        backend.infer(frame)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.infer(frame)
        times.append(1e3 * (time.perf_counter() - start))
    return float(np.median(times))


def cpu_model() -> dict[str, Any]:
    """This CPU: its model name, a digest of its flags, and the cores this process may use."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for key, value in re.findall(r"^(model name|flags)\s*:\s*(.*)$", text, re.M):
        if key == "model name":
            name = value.strip()
        else:
            flags = " ".join(sorted(value.split()))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": name,
        "flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "cores": cores,
    }


def _version(kind: str) -> str | None:
    """The installed version of the runtime behind backend ``kind``."""
    for package in _PACKAGES.get(kind, ()):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def choice_key(
    candidates: Sequence[Candidate], cpu: Mapping[str, Any], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything a measured choice depends on: files, CPU, runtime versions and settings."""
    return {
        "format": CHOICE_FORMAT,
        "cpu": dict(cpu),
        "settings": dict(settings),
        "candidates": [
            {
                "label": c.label,
                "kind": c.kind,
                "sha256": sha256_file(c.model),
                "metadata": read_sidecar(c.model) if c.kind != "torch" else None,
                "version": _version(c.kind),
                "threads": c.options.threads,
            }
            for c in candidates
        ],
    }


def choice_path(key: Mapping[str, Any], stem: str, folder: Path) -> Path:
    """The cache file of ``key``: ``<folder>/<model stem>-<CPU>-<digest of the key>.json``."""
    cpu = re.sub(r"[^A-Za-z0-9.]+", "-", str(key["cpu"]["model"])).strip("-")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"{stem}-{cpu}-{digest}.json"


def _read_choice(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cached choice for ``key`` at ``path``; None (and a warning if unreadable) otherwise."""
    if not path.is_file():
        return None
    try:
        choice = json.loads(path.read_text())
        if choice["key"] != key:
            return None
        summary(choice["times_ms"], choice["errors"])  # what the log line will show
        if isinstance(choice["chosen"], str) and isinstance(choice["measured"], str):
            return choice
        raise TypeError("'chosen' and 'measured' must be strings")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the unreadable backend choice %s (%s): measuring again", path, exc)
    return None


def _write_choice(path: Path, choice: Mapping[str, Any]) -> None:
    """Cache ``choice`` atomically; a read-only cache only costs a new measurement next time."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(choice, indent=2) + "\n")  # candidates in their order
    except OSError as exc:
        log.warning("cannot cache the backend choice in %s: %s", path, exc)


def summary(times: Mapping[str, float | None], errors: Mapping[str, str]) -> str:
    """``openvino int8 65.1 ms, onnxruntime int8 214.0 ms, torch bf16 failed (reason)``."""
    return ", ".join(
        f"{label} {ms:.1f} ms" if ms is not None else f"{label} failed ({errors[label]})"
        for label, ms in times.items()
    )


def select(
    candidates: Sequence[Candidate],
    open_candidate: Callable[[Candidate], Backend],
    settings: Mapping[str, Any] | None = None,
    time_ms: Callable[[Backend], float] = median_ms,
    folder: Path | None = None,
    cpu: Mapping[str, Any] | None = None,
) -> Backend:
    """The fastest of ``candidates`` (``time_ms`` each), or the cached choice for the same key.

    ``settings`` (network size, resize policy) are part of the key. The returned backend's
    ``selection`` says which candidate won and every candidate's time. A ModelError when none
    can run.
    """
    key = choice_key(candidates, cpu or cpu_model(), settings or {})
    path = choice_path(key, candidates[0].model.stem, folder or cache_dir() / "backends")
    by_label = {c.label: c for c in candidates}
    cached = _read_choice(path, key)
    if cached is not None and cached["chosen"] in by_label:
        backend = open_candidate(by_label[cached["chosen"]])
        backend.selection = (
            f"auto chose {cached['chosen']} (measured {cached['measured']}: "
            f"{summary(cached['times_ms'], cached['errors'])}; cached in {path})"
        )
        log.info("%s", backend.selection)
        return backend
    times: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    best: tuple[float, Candidate, Backend] | None = None
    for candidate in candidates:
        try:
            backend = open_candidate(candidate)
            ms = time_ms(backend)
        except ModelError as exc:
            times[candidate.label], errors[candidate.label] = None, str(exc)
            continue
        times[candidate.label] = ms
        if best is None or ms < best[0]:
            best = (ms, candidate, backend)
        del backend  # only the fastest so far stays in memory
    if best is None:
        raise ModelError(
            f"backend auto: no backend can run the model here: {summary(times, errors)}"
        )
    measured = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_choice(
        path,
        {
            "key": key,
            "chosen": best[1].label,
            "times_ms": times,
            "errors": errors,
            "measured": measured,
        },
    )
    best[2].selection = f"auto chose {best[1].label} (measured now: {summary(times, errors)})"
    log.info("%s", best[2].selection)
    return best[2]
