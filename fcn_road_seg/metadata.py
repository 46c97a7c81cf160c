"""The JSON metadata beside an exported model or engine (``<model>.json``), and file hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import atomic_path
from .errors import ModelError


def sidecar_path(model_path: str | Path) -> Path:
    """The JSON metadata file that goes with an exported model or engine: ``<model>.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def read_sidecar(model_path: str | Path) -> dict | None:
    """The metadata beside ``model_path``, None when there is none.

    A ModelError when it is unreadable.
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model metadata {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"model metadata {path} is not a JSON object")
    return meta


def write_sidecar(model_path: str | Path, meta: dict) -> Path:
    """Write ``meta`` atomically as the metadata beside ``model_path``; returns its path."""
    path = sidecar_path(model_path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
