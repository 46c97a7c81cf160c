"""Cityscapes ``gtFine`` -> the KITTI Road layout (``fcn-road-convert-cityscapes``).

The worked example of bringing another street dataset to ``fcn-road-train --data-path``. Reads
``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and the matching
``gtFine/<split>/<city>/..._gtFine_labelIds.png`` and writes, for each frame:

- ``training/image_2/<city>_<seq><frame>.png`` (the city is the category, like KITTI's um/uu);
- ``training/gt_image_2/<city>_road_<seq><frame>.png`` in KITTI's colours by the road rule:
  labelId 7 (``road``) -> magenta (255, 0, 255); labelIds 0-3 (unlabeled, ego vehicle,
  rectification border, out of roi: no image content to judge) -> black, outside the
  evaluation area; every other labelId -> red (255, 0, 0), valid non-road;
- ``train.txt`` / ``val.txt``: Cityscapes's own train and val splits, which the trainer uses.

``--scale`` shrinks frames (area) and labels (nearest) on the way, e.g. 0.5 for 1024x512.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path, check_target
from ..errors import DataError, run_cli

from .data import GT_DIR, IMAGE_DIR, gt_name

ROAD_ID = 7  # Cityscapes labelId of "road"
VOID_IDS = (0, 1, 2, 3)  # unlabeled, ego vehicle, rectification border, out of roi
SPLITS = {"train": "train.txt", "val": "val.txt"}
NAME = re.compile(r"^(?P<city>[a-z_]+)_(?P<seq>\d+)_(?P<frame>\d+)_leftImg8bit\.png$")
BGR = {"road": (255, 0, 255), "other": (0, 0, 255), "void": (0, 0, 0)}  # OpenCV's channel order


def kitti_colours(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds (H x W) -> KITTI ground truth (H x W x 3, BGR for OpenCV)."""
    out = np.empty((*label_ids.shape, 3), np.uint8)
    out[:] = BGR["other"]
    out[np.isin(label_ids, VOID_IDS)] = BGR["void"]
    out[label_ids == ROAD_ID] = BGR["road"]
    return out


def frames(root: Path, split: str) -> list[tuple[Path, Path, str]]:
    """(image, labelIds, stem) of every frame of ``split``; DataError for a missing label."""
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    out = []
    for image in images:
        match = NAME.match(image.name)
        if match is None:
            raise DataError(f"unexpected Cityscapes file name: {image}")
        labels = (
            root
            / "gtFine"
            / split
            / image.parent.name
            / image.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        )
        if not labels.is_file():
            raise DataError(f"{image} has no gtFine labelIds (expected {labels})")
        out.append((image, labels, f"{match['city']}_{match['seq']}{match['frame']}"))
    return out


def write_png(path: Path, pixels: np.ndarray) -> None:
    """A PNG (in a folder being built); DataError naming the file if OpenCV cannot encode it."""
    ok, buf = cv2.imencode(".png", pixels)
    if not ok:
        raise DataError(f"cannot encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())


def read_frame(image_path: Path, labels_path: Path, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The BGR frame and its labelIds, both resized by ``scale``; DataError naming the file."""
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    labels = cv2.imread(str(labels_path), cv2.IMREAD_UNCHANGED)
    if image is None or labels is None or labels.ndim != 2:
        raise DataError(f"cannot read {image_path} or its labels {labels_path}")
    if labels.shape != image.shape[:2]:
        raise DataError(f"{labels_path} is not the size of {image_path}")
    if scale == 1:
        return image, labels
    h, w = round(image.shape[0] * scale), round(image.shape[1] * scale)
    if min(h, w) < 1:
        raise DataError(f"--scale {scale:g} makes {image_path} {h}x{w} pixels")
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image, cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)


def convert(root: Path, out: Path, scale: float = 1.0, progress: bool = True) -> dict[str, int]:
    """Convert the train and val splits of ``root`` into the new folder ``out``.

    Returns frames per split. The folder is built beside ``out`` and renamed when complete, so a
    failed or interrupted run leaves nothing under its name.
    """
    if not 0 < scale <= 1:
        raise DataError(f"--scale must be in (0, 1], got {scale}")
    check_target(out, "output")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output {out} exists and is not an empty folder; give a new folder")
    todo = {split: frames(root, split) for split in SPLITS}
    if not any(todo.values()):
        raise DataError(f"no Cityscapes frames under {root}/leftImg8bit/{{train,val}}")
    # a link to an empty folder is followed: the dataset is built on the disk it points to
    with atomic_path(out.resolve() if out.is_symlink() else out, directory=True) as tmp:
        tmp.mkdir()
        for split, listing in SPLITS.items():
            for image_path, labels_path, stem in tqdm(
                todo[split], desc=split, disable=not progress
            ):
                image, labels = read_frame(image_path, labels_path, scale)
                write_png(tmp / "training" / IMAGE_DIR / f"{stem}.png", image)
                write_png(tmp / "training" / GT_DIR / gt_name(stem), kitti_colours(labels))
            (tmp / listing).write_text("".join(f"{stem}\n" for *_, stem in todo[split]))
    return {split: len(found) for split, found in todo.items()}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-road-convert-cityscapes",
        description="Cityscapes gtFine (road = labelId 7) -> KITTI Road layout for "
        "fcn-road-train --data-path",
    )
    p.add_argument("root", type=Path, help="Cityscapes folder holding leftImg8bit/ and gtFine/")
    p.add_argument("output", type=Path, help="new KITTI-layout folder (absent or empty)")
    p.add_argument("--scale", type=float, default=1.0, help="resize factor in (0, 1]")
    p.add_argument("--no-progress", action="store_true")
    return p


def _convert(args: argparse.Namespace) -> None:
    counts = convert(args.root, args.output, args.scale, not args.no_progress)
    print(f"wrote {counts['train']} train and {counts['val']} val frames to {args.output}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_convert, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
