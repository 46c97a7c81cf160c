"""``segment_bag``: segment every image of a rosbag2 bag offline with the node's per-frame core.

``Segmenter.process`` runs on each image and a new bag is written: the input copied unchanged plus
mask, confidence and overlay topics with the same stamps, and with ``--grid`` the node's
drivable-area grid (from the bag's camera_info and a camera mount); overlays can also go to an
MP4, PNG frames and a contact sheet. Every output appears only when the run succeeds.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rosbags.rosbag2 import Reader
from tqdm import tqdm

from .bags import (
    CAMERA_INFO,
    COMPRESSED,
    IMAGE,
    IMAGE_TOPIC,
    OCCUPANCY_GRID,
    SEG_NAMESPACE,
    STORAGES,
    bag_messages,
    bag_writer,
    copy_connection,
    deserialize,
    header_ns,
    make_grid,
    make_image,
    open_bag,
    refuse_existing,
    typestore,
)
from ..bounds import FPS
from ..errors import DataError, ImageError, run_cli
from ..grid import Camera, GroundGrid, grid_from_args, picture
from ..model import default_model_path
from ..options import GRID, add_arguments
from ..segmenter import OUTPUTS, Segmenter, add_segmenter_arguments, segmenter_from_args
from .exports import SHEET_COLUMNS, SHEET_TILES, THUMB_WIDTH, OverlayExports, stamp_label, to_bgr


def check_input(
    reader: Reader, path: Path, topic: str, namespace: str
) -> tuple[set[int], bool, int]:
    """The image connection ids of ``topic``, whether they are compressed and their message count.

    DataError when the topic is missing, not an image, empty, or the output topics exist already.
    """
    conns = [c for c in reader.connections if c.topic == topic]
    types = {c.msgtype for c in conns}
    if not conns or not types <= {IMAGE, COMPRESSED} or len(types) > 1:
        found = sorted(
            f"{c.topic} ({c.msgtype})"
            for c in reader.connections
            if c.msgtype in (IMAGE, COMPRESSED)
        )
        what = f"has type {', '.join(sorted(types))}" if conns else "is not in it"
        raise DataError(
            f"bag {path}: topic {topic} {what}; "
            f"image topics in the bag: {', '.join(found) or 'none'}"
        )
    clash = sorted({c.topic for c in reader.connections if c.topic.startswith(namespace + "/")})
    if clash:
        raise DataError(f"bag {path} already has {', '.join(clash)}; choose another namespace")
    total = sum(c.msgcount for c in conns)
    if total == 0:
        raise DataError(f"bag {path}: topic {topic} has no messages")
    return {c.id for c in conns}, types == {COMPRESSED}, total


@dataclass
class BagGrid:
    """What ``segment_bag`` needs for the grid.

    The grid core, the camera mount, the grid's frame, the camera_info topic and whether the
    images are rectified (else raw, projected through camera_info's distortion). Each frame uses
    the camera_info with its header stamp, else the one nearest in time.
    """

    grid: GroundGrid
    cam_from_grid: np.ndarray
    frame_id: str
    info_topic: str
    rectified: bool = False

    def read_cameras(self, reader: Reader, path: Path) -> None:
        """Every usable camera_info of ``info_topic`` by header stamp (corrupt ones are left out).

        DataError when the bag has no CameraInfo topic of that name, or none of them is usable.
        """
        conns = [c for c in reader.connections if c.topic == self.info_topic]
        if not conns or any(c.msgtype != CAMERA_INFO for c in conns):
            found = sorted(c.topic for c in reader.connections if c.msgtype == CAMERA_INFO)
            raise DataError(
                f"bag {path}: --grid needs sensor_msgs/CameraInfo on {self.info_topic}; "
                f"camera_info topics in the bag: {', '.join(found) or 'none'}"
            )
        self.cameras: dict[int, Camera] = {}
        why = ""
        for _, stamp, raw in bag_messages(reader, path, conns):
            try:
                info = deserialize(raw, CAMERA_INFO, path, stamp)
                self.cameras[header_ns(info.header)] = Camera.from_info(info, self.rectified)
            except (DataError, ValueError) as exc:
                why = f" ({exc})"
        if not self.cameras:
            raise DataError(f"bag {path}: no usable camera_info on {self.info_topic}{why}")
        self._stamps = sorted(self.cameras)

    def camera_at(self, stamp_ns: int) -> Camera:
        """The camera_info stamped ``stamp_ns``, else the one nearest to it."""
        i = bisect.bisect_left(self._stamps, stamp_ns)
        near = self._stamps[max(0, i - 1) : i + 1]
        return self.cameras[min(near, key=lambda s: abs(s - stamp_ns))]

    def cells(self, msg: Any, result: Any) -> np.ndarray:
        """The frame's occupancy cells; ValueError saying why there are none."""
        self.grid.update(self.camera_at(header_ns(msg.header)), self.cam_from_grid)
        return self.grid.occupancy(result.mask, result.confidence)

    def message(self, msg: Any, cells: np.ndarray) -> Any:
        """The frame's OccupancyGrid of ``cells`` (the input's stamp, ``frame_id``)."""
        hdr = typestore().types["std_msgs/msg/Header"](
            stamp=msg.header.stamp, frame_id=self.frame_id
        )
        return make_grid(hdr, self.grid.fields(cells))


#: a ROS 2 topic namespace: "/"-separated tokens of letters, digits and "_", none starting with
#: a digit (rcl's topic name rules)
_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


def output_namespace(namespace: str) -> str:
    """``namespace`` as ``/a/b`` (outer slashes optional); DataError naming --ns when its topics
    would not be valid ROS 2 names (the bag could not be played)."""
    name = namespace.strip("/")
    if not _NAMESPACE.fullmatch(name):
        raise DataError(
            f"--ns {namespace!r} is not a ROS 2 namespace: give '/'-separated names of letters, "
            "digits and '_', none starting with a digit (e.g. /road_seg)"
        )
    return "/" + name


def refuse_inside(src: Path, *outputs: Path | None) -> None:
    """DataError for an output inside the input bag (it would become part of that bag), or two
    outputs that are the same path or one inside the other (one would destroy the other); then
    ``refuse_existing`` for them all."""
    given = [out for out in outputs if out is not None]
    for i, out in enumerate(given):
        if out.resolve().is_relative_to(src.resolve()):
            raise DataError(f"output {out} is inside the input bag {src}; write it elsewhere")
        for other in given[:i]:
            a, b = out.resolve(), other.resolve()
            if a.is_relative_to(b) or b.is_relative_to(a):
                raise DataError(
                    f"outputs {other} and {out} overlap (the same path, or one inside the other); "
                    "give each its own"
                )
    refuse_existing(*outputs)


def segment_bag(
    input_bag: str | os.PathLike,
    output_bag: str | os.PathLike,
    segmenter: Segmenter | Callable[[], Segmenter],
    topic: str = IMAGE_TOPIC,
    namespace: str = SEG_NAMESPACE,
    storage: str = "sqlite3",
    video: str | os.PathLike | None = None,
    frames_dir: str | os.PathLike | None = None,
    sheet: str | os.PathLike | None = None,
    fps: float = 10.0,
    progress: bool = True,
    strict: bool = False,
    grid: BagGrid | None = None,
) -> dict[str, Any]:
    """Segment every image of ``topic`` into a new bag.

    The new bag has the input copied plus ``<namespace>/{mask,confidence,overlay}``, and
    ``<namespace>/grid`` with ``grid`` (frames without a usable camera_info get none, listed;
    the contact sheet then shows each grid's bird's-eye picture beside its overlay).

    ``segmenter`` may be a function that loads one: it is called once the input, the outputs and
    the cameras are checked. A corrupt or unsegmentable image message is skipped and listed (the
    copy keeps it as it was), or, with ``strict``, stops the run with nothing written.

    Returns a summary: frames segmented, messages copied, skipped frames with their reasons,
    seconds, frames per second end to end and the core's mean milliseconds per frame.
    """
    src, dst = Path(input_bag), Path(output_bag)
    outputs = {
        name: Path(p) if p else None
        for name, p in (("video", video), ("frames_dir", frames_dir), ("contact_sheet", sheet))
    }
    refuse_inside(src, dst, *outputs.values())
    namespace = output_namespace(namespace)
    start, skipped, core_ms, frames, copied = time.perf_counter(), [], 0.0, 0, 0
    no_grid: list[dict[str, Any]] = []
    with open_bag(src) as reader, contextlib.ExitStack() as stack:
        image_ids, compressed, total = check_input(reader, src, topic, namespace)
        if grid:
            grid.read_cameras(reader, src)
        if not isinstance(segmenter, Segmenter):
            segmenter = segmenter()
        writer = stack.enter_context(bag_writer(dst, storage))
        copies = {c.id: copy_connection(writer, c) for c in reader.connections}
        seg_conns = {
            name: writer.add_connection(f"{namespace}/{name}", IMAGE, typestore=typestore())
            for name in OUTPUTS
        }
        if grid:
            grid_conn = writer.add_connection(
                f"{namespace}/grid", OCCUPANCY_GRID, typestore=typestore()
            )
        layout = (SHEET_COLUMNS // 2, 2 * THUMB_WIDTH) if grid else (SHEET_COLUMNS, THUMB_WIDTH)
        exports = OverlayExports(
            stack,
            total,
            outputs["video"],
            outputs["frames_dir"],
            outputs["contact_sheet"],
            fps,
            *layout,
        )
        index = -1
        for conn, stamp, raw in tqdm(
            bag_messages(reader, src),
            total=reader.message_count,
            desc="segment_bag",
            unit="msg",
            disable=not progress,
        ):
            writer.write(copies[conn.id], stamp, raw)
            copied += 1
            if conn.id not in image_ids:
                continue
            index += 1
            try:
                msg = deserialize(raw, conn.msgtype, src, stamp)
                result, messages = segmenter.process(
                    msg, make_image, OUTPUTS, compressed=compressed
                )
            except (ImageError, DataError) as exc:
                if strict:
                    raise DataError(
                        f"bag {src}: frame #{index} at {stamp} ns: {exc} (--strict)"
                    ) from exc
                skipped.append({"index": index, "stamp_ns": stamp, "reason": str(exc)})
                continue
            for name, out in messages.items():
                writer.write(seg_conns[name], stamp, typestore().serialize_cdr(out, IMAGE))
            bird = None
            if grid:
                try:
                    cells = grid.cells(msg, result)
                    out = typestore().serialize_cdr(grid.message(msg, cells), OCCUPANCY_GRID)
                    writer.write(grid_conn, stamp, out)
                    bird = picture(cells, grid.grid.spec)
                except ValueError as exc:
                    no_grid.append({"index": index, "stamp_ns": stamp, "reason": str(exc)})
            stamp_ns = header_ns(msg.header)
            exports.add(
                index,
                stamp_label(index, stamp_ns),
                f"{index:06d}_{stamp_ns}",
                to_bgr(result.overlay, messages["overlay"].encoding),
                bird,
            )
            core_ms += result.timings["total"]
            frames += 1
        if frames == 0:
            reasons = "; ".join(sorted({s["reason"] for s in skipped}))
            raise DataError(
                f"bag {src}: none of the {total} images on {topic} could be segmented: {reasons}"
            )
        exports.finish()
    seconds = time.perf_counter() - start
    return {
        "input": src,
        "output": dst,
        "topic": topic,
        "frames": frames,
        "copied": copied,
        "skipped": skipped,
        "no_grid": no_grid,
        "grids": frames - len(no_grid) if grid else 0,
        "seconds": seconds,
        "fps": frames / seconds,
        "core_ms": core_ms / frames,
        "outputs": {name: p for name, p in outputs.items() if p},
    }


def print_segment_summary(summary: dict[str, Any]) -> None:
    """Where everything went, the frame rate, and every skipped message with its reason."""
    print(
        f"wrote {summary['output']}: {summary['copied']} input messages copied, "
        f"{summary['frames']} frames "
        f"segmented in {summary['seconds']:.1f} s = {summary['fps']:.2f} FPS end to end "
        f"(core {summary['core_ms']:.0f} ms/frame)"
    )
    for name, path in summary["outputs"].items():
        print(f"{name}: {path}")
    for s in summary["skipped"]:
        print(f"skipped frame #{s['index']} at {s['stamp_ns']} ns: {s['reason']}")
    if summary["grids"] or summary["no_grid"]:
        print(f"grid: {summary['grids']} frames")
    for s in summary["no_grid"]:
        print(f"no grid for frame #{s['index']} at {s['stamp_ns']} ns: {s['reason']}")


def _segment_bag(args: argparse.Namespace) -> None:
    """segment_bag's body: segment (the model loaded once the input is checked), print the
    summary."""
    grid = None
    if args.grid:
        try:
            core, mount = grid_from_args(args)
        except ValueError as exc:
            raise DataError(f"--grid options: {exc}") from exc
        info_topic = args.camera_info_topic or f"{args.topic.rsplit('/', 1)[0]}/camera_info"
        grid = BagGrid(core, mount, args.target_frame, info_topic, args.image_rectified)

    def load() -> Segmenter:
        """The model of ``args``, described."""
        segmenter = segmenter_from_args(args)
        print(f"model {args.model_path or default_model_path()}: {segmenter.backend.describe()}")
        return segmenter

    print_segment_summary(
        segment_bag(
            args.input,
            args.output,
            load,
            args.topic,
            args.ns,
            args.storage,
            args.video,
            args.frames_dir,
            args.contact_sheet,
            args.video_fps,
            not args.no_progress,
            args.strict,
            grid,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``segment_bag INPUT OUTPUT``: segment a bag's images offline.

    It uses the node's per-frame core.
    """
    p = argparse.ArgumentParser(
        prog="segment_bag",
        description="Run road segmentation on every image of a rosbag2 "
        "bag and write a new bag with the input plus mask, confidence and overlay topics.",
    )
    p.add_argument("input", help="input bag folder (or .db3 / .mcap file)")
    p.add_argument("output", help="output bag folder (must not exist)")
    p.add_argument(
        "--topic",
        default=IMAGE_TOPIC,
        help=f"Image or CompressedImage topic (default {IMAGE_TOPIC})",
    )
    p.add_argument(
        "--ns",
        default=SEG_NAMESPACE,
        help=f"namespace of the output topics (default {SEG_NAMESPACE})",
    )
    add_segmenter_arguments(p)
    p.add_argument(
        "--storage",
        choices=sorted(STORAGES),
        default="sqlite3",
        help="output storage (default sqlite3)",
    )
    p.add_argument("--video", help="also write the overlays as an MP4 (mp4v)")
    p.add_argument(
        "--video-fps", type=FPS.parse, default=10.0, help="frame rate of --video (default 10)"
    )
    p.add_argument("--frames-dir", help="also write every overlay as a PNG into this new folder")
    p.add_argument(
        "--contact-sheet", help=f"also write a PNG grid of up to {SHEET_TILES} overlays"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first corrupt or unsegmentable image message "
        "instead of skipping and listing it",
    )
    p.add_argument(
        "--grid",
        action="store_true",
        help="also write <ns>/grid (nav_msgs/OccupancyGrid), the node's drivable-area grid, "
        "from the bag's camera_info and the camera mount below",
    )
    p.add_argument(
        "--camera-info-topic",
        help="CameraInfo topic for --grid (default: camera_info beside --topic)",
    )
    add_arguments(p, GRID)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return run_cli(_segment_bag, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
