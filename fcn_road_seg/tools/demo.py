"""The main job, offline: KITTI frames -> rosbag2 bag -> segmented bag, overlay MP4, contact sheet.

``python -m fcn_road_seg.tools.demo [--out out/demo]`` converts the real KITTI Road frames
shipped in ``data/kitti/`` with ``kitti2bag`` (images and camera_info from their recording day's
calibration), segments the bag with ``segment_bag`` (the node's per-frame core) using the shipped
default model, with the drivable-area grid, and prints where everything is and the frame rate.
The contact sheet shows each overlay beside its grid seen from above. Without the default model it
says loudly that it uses an UNTRAINED network. Re-running replaces the demo's own outputs in the
out folder and touches nothing else there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from .. import geometry
from ..atomic import check_target
from .bags import BAG_VERSION, IMAGE_TOPIC, INFO_TOPIC, SEG_NAMESPACE
from ..errors import DataError, run_cli
from ..grid import MOUNT, TARGET_FRAME, GridSpec, GroundGrid
from .kitti2bag import kitti2bag
from ..model import default_model_path, save_model, untrained_model
from .segment_bag import BagGrid, print_segment_summary, segment_bag
from ..segmenter import make_segmenter

FRAMES = Path(__file__).resolve().parents[2] / "data" / "kitti"
#: KITTI Road's um_000000 calibration file; its P2 is that of 2011-09-26, the shipped frames' day
CALIB = FRAMES / "calib_2011_09_26.txt"
INPUT_BAG, OUTPUT_BAG, VIDEO, SHEET = (
    "kitti_bag",
    "segmented_bag",
    "overlay.mp4",
    "contact_sheet.png",
)
UNTRAINED = "untrained_fcn8s.pt"
NAMES = (INPUT_BAG, OUTPUT_BAG, VIDEO, SHEET, UNTRAINED)
SEED = 0


def clear_previous(out: Path, keep: Path | None = None) -> None:
    """Remove the demo's own earlier outputs in ``out`` but ``keep``, nothing else.

    Temporaries of an interrupted run are removed too.
    """
    for name in NAMES:
        for path in [out / name, *out.glob(f".{name}.*.partial*")]:
            if path == keep:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def untrained_checkpoint(path: Path, seed: int = SEED) -> Path:
    """Save a seeded, untrained FCN8s as a checkpoint at ``path``.

    It has the light head (fc 512, fc6 3x3). Its score layers get small random weights instead of
    the usual zeros, so that the maps vary over the image and the demo exercises every output; the
    segmentation itself is meaningless.
    """
    return save_model(untrained_model(seed, score_std=0.01, fc_channels=512, fc6_kernel=3), path)


def pick_model(out: Path, model: str | None) -> tuple[Path, bool]:
    """The model to use and whether it is untrained.

    ``model``, else the default, else a seeded untrained one.
    """
    if model:
        return Path(model), False
    if default_model_path().is_file():
        return default_model_path(), False
    print(
        f"WARNING: the default model {default_model_path()} does not exist: "
        "this demo uses an UNTRAINED "
        f"FCN-8s (seed {SEED}), so its road masks are MEANINGLESS. "
        "Train the model or pass --model.",
        flush=True,
    )
    return untrained_checkpoint(out / UNTRAINED), True


def run_demo(
    out: str | Path = "out/demo",
    frames: str | Path = FRAMES,
    model: str | None = None,
    device: str = "auto",
    progress: bool = True,
    calib: str | Path | None = None,
) -> dict[str, Any]:
    """Run the whole demo into ``out``.

    ``calib``: one KITTI Road calibration for every frame; by default the frames folder's own
    ``calib/``, else ``CALIB``. Returns segment_bag's summary plus the paths and model used.
    """
    out, frames = Path(out), Path(frames)
    if not (frames / "image_2").is_dir():
        raise DataError(
            f"KITTI sample frames not found: {frames / 'image_2'} "
            "(pass --frames with a KITTI Road folder)"
        )
    if calib is None and not (frames / "calib").is_dir():
        calib = CALIB
    if not Path(calib or frames / "calib").exists():
        raise DataError(f"calibration file not found: {calib}")
    check_target(out, "--out", folder=True)
    out.mkdir(parents=True, exist_ok=True)
    model_path, untrained = pick_model(out, model)
    segmenter = make_segmenter(model_path=model_path, device=device)  # before the old outputs go
    clear_previous(out, keep=out / UNTRAINED if untrained else None)
    converted = kitti2bag(frames, out / INPUT_BAG, progress=progress, calib=calib)
    print(
        f"wrote {converted['bag']}: {converted['frames']} KITTI frames "
        f"from {frames} on {IMAGE_TOPIC} and {INFO_TOPIC} "
        f"(calibration {calib or frames / 'calib'}; rosbag2 version {BAG_VERSION}, sqlite3)"
    )
    print(
        f"model {model_path}{' (UNTRAINED)' if untrained else ''}: {segmenter.backend.describe()}"
    )
    for warning in segmenter.warnings:
        print(f"WARNING: {warning}")
    grid = BagGrid(
        GroundGrid(GridSpec()), geometry.camera_from_mount(*MOUNT), TARGET_FRAME, INFO_TOPIC
    )
    summary = segment_bag(
        out / INPUT_BAG,
        out / OUTPUT_BAG,
        segmenter,
        video=out / VIDEO,
        sheet=out / SHEET,
        progress=progress,
        grid=grid,
    )
    return {**summary, "input_bag": out / INPUT_BAG, "model": model_path, "untrained": untrained}


def _demo(args: argparse.Namespace) -> None:
    """The demo's body: run it and print where everything is."""
    summary = run_demo(
        args.out, args.frames, args.model, args.device, not args.no_progress, args.calib
    )
    print(f"input bag: {summary['input_bag']}")
    print_segment_summary(summary)
    print(
        f"play it:  ros2 bag play {summary['output']}   "
        f"(topics {IMAGE_TOPIC}, {SEG_NAMESPACE}/mask, "
        f"{SEG_NAMESPACE}/confidence, {SEG_NAMESPACE}/overlay, {SEG_NAMESPACE}/grid)"
    )
    if summary["untrained"]:
        print(
            f"WARNING: these results come from an UNTRAINED model ({summary['model']}); "
            "they are not road segmentation."
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fcn_road_seg.tools.demo [--out DIR]``."""
    p = argparse.ArgumentParser(
        prog="python -m fcn_road_seg.tools.demo", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--out",
        default="out/demo",
        help="output folder (default out/demo); its earlier demo "
        f"outputs ({', '.join(NAMES)}) are replaced, nothing else is touched",
    )
    p.add_argument(
        "--frames",
        default=str(FRAMES),
        help="KITTI Road folder with image_2/ (default: the shipped samples)",
    )
    p.add_argument(
        "--calib",
        help="KITTI Road calibration file for every frame (default: the frames' calib/, else "
        f"{CALIB.name}, the shipped frames' recording day)",
    )
    p.add_argument("--model", help=f"model to use instead of the default {default_model_path()}")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return run_cli(_demo, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
