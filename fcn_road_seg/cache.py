"""The package's writable cache folder.

It holds converted encoder weights and TensorRT engines built at startup. Never beside a model,
which may sit in a read-only install: ``$FCN_ROAD_SEG_CACHE``, else ``$ROS_HOME/fcn_road_seg`` when
ROS_HOME is set, else ``$XDG_CACHE_HOME/fcn_road_seg`` (default ``~/.cache/fcn_road_seg``).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get("FCN_ROAD_SEG_CACHE"):
        return Path(os.environ["FCN_ROAD_SEG_CACHE"])
    if os.environ.get("ROS_HOME"):
        return Path(os.environ["ROS_HOME"]) / "fcn_road_seg"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fcn_road_seg"
