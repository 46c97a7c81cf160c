"""``kitti2bag``: a KITTI Road folder or raw drive (see ``kitti.py``) -> a rosbag2 bag.

The bag has the left colour camera's ``sensor_msgs/Image`` (bgr8) and, when calibration is there,
``sensor_msgs/CameraInfo``; see ``bags.py`` for the bag format.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from .. import image
from .bags import (
    BAG_VERSION,
    CAMERA_INFO,
    IMAGE,
    IMAGE_TOPIC,
    INFO_TOPIC,
    STORAGES,
    bag_writer,
    camera_info,
    header,
    make_image,
    refuse_existing,
    typestore,
)
from ..bounds import FPS, int_at_least
from ..errors import DataError, ImageError, run_cli
from .kitti import LAYOUTS, KittiFrame, camera_model, check_stamp, kitti_frames, parse_stamp

DEFAULT_START = (
    "2011-09-26 00:00:00"  # road layout: stamps start on the first KITTI recording day (UTC)
)


def frame_messages(frame: KittiFrame, layout: str) -> tuple[Any, Any | None]:
    """The Image (bgr8) and CameraInfo (None without calibration) of one KITTI frame.

    DataError naming the file.
    """
    try:
        pixels = image.read_image(frame.image)
    except ImageError as exc:
        raise DataError(str(exc)) from exc
    hdr = header(frame.stamp_ns)
    height, width = pixels.shape[:2]
    info = (
        camera_info(hdr, camera_model(layout, frame.calib, width, height), width, height)
        if frame.calib
        else None
    )
    return make_image(hdr, image.to_fields(pixels, "bgr8")), info


def kitti2bag(
    source: str | os.PathLike,
    output: str | os.PathLike,
    layout: str | None = None,
    storage: str = "sqlite3",
    rate_hz: float | None = None,
    start_ns: int = parse_stamp(DEFAULT_START),
    limit: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    calib: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Convert a KITTI folder into a new rosbag2 bag; returns a summary.

    The summary gives the frames, skipped files and stamps. Road folders get stamps at ``rate_hz``
    (default 10 Hz) from ``start_ns``; raw drives keep theirs. ``calib`` is one KITTI Road
    calibration file for every frame of a road folder (for folders without ``calib/``).
    Unreadable frames (image or calibration) fail the run, listing every one, unless ``skip_bad``
    is set, in which case they are left out and listed in the summary.
    """
    source, output = Path(source), Path(output)
    refuse_existing(output)
    calib = Path(calib) if calib is not None else None
    layout, frames = kitti_frames(source, layout, start_ns, rate_hz or 10.0, calib)
    if rate_hz is not None and layout == "raw":
        raise DataError(
            "--rate only applies to the road layout; "
            "KITTI raw drives keep their recorded timestamps"
        )
    frames = frames[:limit] if limit is not None else frames
    ts, bad, stamps = typestore(), [], []
    with bag_writer(output, storage) as writer:
        image_conn = writer.add_connection(IMAGE_TOPIC, IMAGE, typestore=ts)
        calibrated = any(f.calib for f in frames)
        info_conn = (
            writer.add_connection(INFO_TOPIC, CAMERA_INFO, typestore=ts) if calibrated else None
        )
        for frame in tqdm(frames, desc="kitti2bag", unit="frame", disable=not progress):
            try:
                img, info = frame_messages(frame, layout)
            except DataError as exc:
                bad.append(str(exc))
                continue
            writer.write(image_conn, frame.stamp_ns, ts.serialize_cdr(img, IMAGE))
            if info_conn is not None:
                writer.write(info_conn, frame.stamp_ns, ts.serialize_cdr(info, CAMERA_INFO))
            stamps.append(frame.stamp_ns)
        if bad and (not skip_bad or not stamps):
            hint = "" if skip_bad else "; pass --skip-bad to convert the others"
            raise DataError(
                f"{len(bad)} of {len(frames)} frames in {source} could not be read (no bag written"
                f"{hint}):\n  " + "\n  ".join(bad)
            )
    return {
        "bag": output,
        "layout": layout,
        "storage": storage,
        "frames": len(stamps),
        "skipped": bad,
        "camera_info": info_conn is not None,
        "stamps_ns": stamps,
    }


def start_time(text: str) -> int:
    """argparse type: integer ns since the epoch, or a UTC 'YYYY-MM-DD HH:MM:SS[.ns]' timestamp."""
    try:
        return check_stamp(int(text), f"{text} ns") if text.isdigit() else parse_stamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _kitti2bag(args: argparse.Namespace) -> None:
    """kitti2bag's body: convert and print the summary."""
    summary = kitti2bag(
        args.source,
        args.output,
        args.layout,
        args.storage,
        args.rate,
        args.start,
        args.limit,
        args.skip_bad,
        not args.no_progress,
        args.calib,
    )
    info = f" and {INFO_TOPIC}" if summary["camera_info"] else " (no calibration: no camera_info)"
    print(
        f"wrote {summary['bag']} ({summary['storage']}, rosbag2 version {BAG_VERSION}): "
        f"{summary['frames']} "
        f"frames of the KITTI {summary['layout']} layout on {IMAGE_TOPIC}{info}"
    )
    for reason in summary["skipped"]:
        print(f"skipped: {reason}")


def main(argv: Sequence[str] | None = None) -> int:
    """``kitti2bag SOURCE OUTPUT``: a KITTI Road or raw folder -> a rosbag2 bag."""
    p = argparse.ArgumentParser(
        prog="kitti2bag",
        description="Convert a KITTI Road folder (image_2/, calib/) or "
        "a KITTI raw drive (image_02/, timestamps.txt, calib_cam_to_cam.txt) to a rosbag2 "
        "bag, without ROS.",
    )
    p.add_argument(
        "source",
        help="KITTI Road folder (e.g. data_road/testing), raw drive folder or its date folder",
    )
    p.add_argument("output", help="output bag folder (must not exist)")
    p.add_argument("--layout", choices=LAYOUTS, help="source layout (default: detected)")
    p.add_argument(
        "--storage",
        choices=sorted(STORAGES),
        default="sqlite3",
        help="storage plugin (default sqlite3)",
    )
    p.add_argument(
        "--rate", type=FPS.parse, metavar="HZ", help="road layout: stamp rate (default 10 Hz)"
    )
    p.add_argument(
        "--start",
        type=start_time,
        default=DEFAULT_START,
        help=f"road layout: first stamp, 'YYYY-MM-DD HH:MM:SS[.ns]' UTC or integer ns "
        f"(default '{DEFAULT_START}')",
    )
    p.add_argument(
        "--limit", type=int_at_least(1), metavar="N", help="convert only the first N frames"
    )
    p.add_argument(
        "--calib",
        metavar="FILE",
        help="road layout: this KITTI Road calibration file (P2) for every frame, "
        "instead of calib/<stem>.txt",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable frames (listed) instead of failing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return run_cli(_kitti2bag, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
