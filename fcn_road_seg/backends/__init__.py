"""Inference backends behind one interface (torch, ONNX Runtime, OpenVINO, TensorRT).

``base``: the ``Backend`` interface with the shared pre/post-processing; ``options``: names and
``BackendOptions``; ``size``: the ``network_size`` option; ``companion``: the backend for a file
and a checkpoint's INT8 companion; ``selection``: ``auto`` on a CPU, measured; ``loading``:
``load_backend``. This module only re-exports.
"""

from .base import Backend, Fit, PinnedBuffers, RoadMaps, fit, road_maps, unfit, upload
from .companion import (
    SUFFIXES,
    backend_for,
    check_companion,
    companion_warning,
    fastest_for,
    int8_companion,
)
from .loading import load_backend
from .options import BACKENDS, RESIZE_POLICIES, BackendOptions
from .size import parse_network_size

__all__ = [
    "BACKENDS",
    "RESIZE_POLICIES",
    "SUFFIXES",
    "Backend",
    "BackendOptions",
    "Fit",
    "PinnedBuffers",
    "RoadMaps",
    "backend_for",
    "check_companion",
    "companion_warning",
    "fastest_for",
    "fit",
    "int8_companion",
    "load_backend",
    "parse_network_size",
    "road_maps",
    "unfit",
    "upload",
]
