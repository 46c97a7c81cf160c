"""Shared fixtures: the real data in ../shared/data (skipped with a reason when this checkout has none)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """``SHARED/parts...``, or skip the calling test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (the real-data tests need ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (../shared/data from the repository root)."""
    return shared_path()


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    """CamVid road labels in KITTI Road ``data_road`` layout (``training/image_2``, ``gt_image_2``, splits)."""
    return shared_path("camvid_road")


@pytest.fixture(scope="session")
def kitti_samples_dir() -> Path:
    """Real KITTI Road test frames (1242x375, no labels): ``.../kitti_road_samples/testing/image_2``."""
    return shared_path("kitti_road_samples", "testing", "image_2")


@pytest.fixture(scope="session")
def kitti_road_root() -> Path:
    """The real KITTI Road training set (231 frames) that ``../shared/data/kitti_road/build.py`` writes.

    Looked for in ``$FCN_ROAD_SEG_KITTI`` or ``data/data_road``; skipped with a reason when absent.
    """
    import os

    path = Path(os.environ.get("FCN_ROAD_SEG_KITTI", ROOT / "data" / "data_road"))
    if not (path / "training" / "gt_image_2").is_dir():
        pytest.skip(f"real KITTI Road set not found at {path}: build it with "
                    "../shared/data/kitti_road/build.py (see its README)")
    return path
