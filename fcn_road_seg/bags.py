"""rosbag2 tools on the rosbags library (no ROS needed): ``kitti2bag`` and ``segment_bag``.

``kitti2bag`` turns a KITTI folder (see ``kitti.py``) into a bag with the left colour camera's
``sensor_msgs/Image`` (bgr8) and, when calibration is there, ``sensor_msgs/CameraInfo``.
``segment_bag`` runs the node's per-frame core (``Segmenter.process``) on every image of a bag and
writes a new bag: the input copied unchanged plus mask, confidence and overlay topics with the same
stamps, and with ``--grid`` the node's drivable-area grid (from the bag's camera_info and a camera
mount); overlays can also go to an MP4, PNG frames and a contact sheet.

Bags are written in rosbag2 metadata version 8 (sqlite3 by default), which Humble and newer play.
Every output appears only when the run succeeds: it is written beside its final name and renamed.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import sqlite3
import struct
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import apsw
import cv2
import numpy as np
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_typestore
from rosbags.typesys.store import Typestore
from tqdm import tqdm

from . import image
from .atomic import atomic_path
from .errors import DataError, ImageError, run_cli
from .exports import SHEET_TILES, OverlayExports, stamp_label, to_bgr
from .grid import Camera, GroundGrid, add_grid_arguments, grid_from_args
from .kitti import LAYOUTS, CameraModel, KittiFrame, camera_model, kitti_frames, parse_stamp
from .model import default_model_path
from .segmenter import (
    OUTPUTS,
    Segmenter,
    add_segmenter_arguments,
    check_setting,
    segmenter_from_args,
)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
OCCUPANCY_GRID = "nav_msgs/msg/OccupancyGrid"
IMAGE_TOPIC = "/kitti/camera_color_left/image_raw"
INFO_TOPIC = "/kitti/camera_color_left/camera_info"
FRAME_ID = "camera_color_left"
SEG_NAMESPACE = "/road_seg"
#: rosbag2 metadata version: rosbags writes 8 or 9; Humble reads 8 (QoS as a YAML string) but not 9
BAG_VERSION = 8
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
DEFAULT_START = (
    "2011-09-26 00:00:00"  # road layout: stamps start on the first KITTI recording day (UTC)
)
#: what rosbags and its storage back ends raise for a missing, truncated or corrupt bag
BAG_ERRORS = (ReaderError, OSError, apsw.Error, sqlite3.Error)
#: what decoding one message's CDR bytes raises when they are corrupt
#: (only around ``deserialize_cdr``)
CDR_ERRORS = (SerdeError, struct.error, IndexError, ValueError)


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The ROS 2 Humble message types.

    Image, CameraInfo and headers are the same in later distros.
    """
    return get_typestore(Stores.ROS2_HUMBLE)


def refuse_existing(*paths: Path | None) -> None:
    """DataError naming every output path that exists already (nothing is ever overwritten)."""
    existing = [str(p) for p in paths if p is not None and (p.exists() or p.is_symlink())]
    if existing:
        raise DataError(f"refusing to overwrite existing output: {', '.join(existing)}")


@contextlib.contextmanager
def bag_writer(path: Path, storage: str = "sqlite3") -> Iterator[Writer]:
    """An open rosbag2 Writer for a new bag at ``path``.

    The bag appears there only if the block succeeds. It is written as ``<tmp>/<name>`` and its
    files are then moved up into ``<tmp>``, so the storage file is ``<name>.db3`` (or ``.mcap``) as
    the metadata inside it says, before the rename.
    """
    if storage not in STORAGES:
        raise DataError(f"unknown storage '{storage}'; choose one of {sorted(STORAGES)}")
    with atomic_path(path, directory=True) as tmp:
        tmp.mkdir()
        inner = tmp / path.name
        with Writer(inner, version=BAG_VERSION, storage_plugin=STORAGES[storage]) as writer:
            yield writer
        for item in inner.iterdir():
            item.rename(tmp / item.name)
        inner.rmdir()


# --------------------------------------------------------------------------- kitti2bag


def header(stamp_ns: int, frame_id: str = FRAME_ID) -> Any:
    """A std_msgs/Header for ``stamp_ns``."""
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def header_ns(hdr: Any) -> int:
    """A header's stamp in ns."""
    return int(hdr.stamp.sec) * 10**9 + int(hdr.stamp.nanosec)


def make_image(hdr: Any, fields: dict) -> Any:
    """A rosbags sensor_msgs/Image from a header and ``image.to_fields`` output.

    This is the core's factory.
    """
    return typestore().types[IMAGE](header=hdr, **fields)


def make_grid(hdr: Any, fields: dict) -> Any:
    """A rosbags nav_msgs/OccupancyGrid from a header and ``GroundGrid.fields``."""
    types = typestore().types
    x, y = fields["origin_xy"]
    origin = types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=x, y=y, z=0.0),
        orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
    )
    info = types["nav_msgs/msg/MapMetaData"](
        map_load_time=hdr.stamp,
        resolution=fields["resolution"],
        width=fields["width"],
        height=fields["height"],
        origin=origin,
    )
    return types[OCCUPANCY_GRID](header=hdr, info=info, data=fields["data"])


def camera_info(hdr: Any, model: CameraModel, width: int, height: int) -> Any:
    """A rosbags sensor_msgs/CameraInfo for ``model`` at ``width`` x ``height``."""
    types = typestore().types
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return types[CAMERA_INFO](
        header=hdr,
        height=height,
        width=width,
        distortion_model=model.distortion_model,
        d=np.asarray(model.d, np.float64),
        k=np.asarray(model.k, np.float64),
        r=np.asarray(model.r, np.float64),
        p=np.asarray(model.p, np.float64),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def frame_messages(frame: KittiFrame, layout: str) -> tuple[Any, Any | None]:
    """The Image (bgr8) and CameraInfo (None without calibration) of one KITTI frame.

    DataError naming the file.
    """
    pixels = cv2.imread(str(frame.image), cv2.IMREAD_COLOR)
    if pixels is None:
        raise DataError(
            f"{frame.image}: cannot read the image (missing, truncated or not an image)"
        )
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
) -> dict[str, Any]:
    """Convert a KITTI folder into a new rosbag2 bag; returns a summary.

    The summary gives the frames, skipped files and stamps. Road folders get stamps at ``rate_hz``
    (default 10 Hz) from ``start_ns``; raw drives keep theirs. Unreadable frames (image or
    calibration) fail the run, listing every one, unless ``skip_bad`` is set, in which case they
    are left out and listed in the summary.
    """
    source, output = Path(source), Path(output)
    refuse_existing(output)
    layout, frames = kitti_frames(source, layout, start_ns, rate_hz or 10.0)
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


# --------------------------------------------------------------------------- segment_bag


@contextlib.contextmanager
def open_bag(path: Path) -> Iterator[Reader]:
    """An open rosbags Reader; DataError naming the bag if it is missing, truncated or corrupt."""
    if not path.exists():
        raise DataError(f"input bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except BAG_ERRORS as exc:
        raise DataError(f"cannot read bag {path}: {exc}") from exc
    try:
        yield reader
    finally:
        with contextlib.suppress(*BAG_ERRORS):
            reader.close()


def bag_messages(
    reader: Reader, path: Path, connections: Sequence[Connection] = ()
) -> Iterator[tuple[Connection, int, bytes]]:
    """The bag's messages (of ``connections``; all by default) in time order.

    Storage errors become a DataError naming the bag.
    """
    try:
        yield from reader.messages(connections=connections)
    except BAG_ERRORS as exc:
        raise DataError(f"cannot read bag {path} (truncated or corrupt?): {exc}") from exc


def copy_connection(writer: Writer, conn: Connection) -> Connection:
    """Add ``conn`` to ``writer`` as it is.

    Topic, type, QoS and (when the bag has them) definition and hash.
    """
    msgdef = conn.msgdef.data if conn.msgdef.format != MessageDefinitionFormat.NONE else None
    known = msgdef is not None and bool(conn.digest)
    try:
        return writer.add_connection(
            conn.topic,
            conn.msgtype,
            typestore=None if known else typestore(),
            msgdef=msgdef if known else None,
            rihs01=conn.digest if known else None,
            serialization_format=conn.ext.serialization_format,
            offered_qos_profiles=conn.ext.offered_qos_profiles,
        )
    except (TypesysError, WriterError) as exc:
        raise DataError(
            f"cannot copy topic {conn.topic}: the bag has no definition of {conn.msgtype} and "
            f"rosbags does not know the type ({exc})"
        ) from exc


def deserialize(raw: bytes, msgtype: str, path: Path, stamp_ns: int) -> Any:
    """A rosbags message from CDR bytes; DataError naming the bag for corrupt data."""
    try:
        return typestore().deserialize_cdr(raw, msgtype)
    except CDR_ERRORS as exc:
        raise DataError(f"bag {path}: corrupt {msgtype} message at {stamp_ns} ns: {exc}") from exc


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

    The grid core, the camera mount, the grid's frame and the camera_info topic. Each frame uses
    the camera_info with its header stamp, else the one nearest in time.
    """

    grid: GroundGrid
    cam_from_grid: np.ndarray
    frame_id: str
    info_topic: str

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
        for _, stamp, raw in bag_messages(reader, path, conns):
            try:
                info = deserialize(raw, CAMERA_INFO, path, stamp)
                self.cameras[header_ns(info.header)] = Camera.from_info(info)
            except (DataError, ValueError):
                continue
        if not self.cameras:
            raise DataError(f"bag {path}: no usable camera_info on {self.info_topic}")
        self._stamps = sorted(self.cameras)

    def camera_at(self, stamp_ns: int) -> Camera:
        """The camera_info stamped ``stamp_ns``, else the one nearest to it."""
        i = bisect.bisect_left(self._stamps, stamp_ns)
        near = self._stamps[max(0, i - 1) : i + 1]
        return self.cameras[min(near, key=lambda s: abs(s - stamp_ns))]

    def message(self, msg: Any, result: Any) -> Any:
        """The frame's OccupancyGrid (input stamp, ``frame_id``); ValueError saying why not."""
        self.grid.update(self.camera_at(header_ns(msg.header)), self.cam_from_grid)
        cells = self.grid.occupancy(result.mask, result.confidence)
        hdr = typestore().types["std_msgs/msg/Header"](
            stamp=msg.header.stamp, frame_id=self.frame_id
        )
        return make_grid(hdr, self.grid.fields(cells))


def segment_bag(
    input_bag: str | os.PathLike,
    output_bag: str | os.PathLike,
    segmenter: Segmenter,
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
    ``<namespace>/grid`` with ``grid`` (frames without a usable camera_info get none, listed).

    A corrupt or unsegmentable image message is skipped and listed (the copy keeps it as it was),
    or, with ``strict``, stops the run with nothing written.

    Returns a summary: frames segmented, messages copied, skipped frames with their reasons,
    seconds, frames per second end to end and the core's mean milliseconds per frame.
    """
    src, dst = Path(input_bag), Path(output_bag)
    outputs = {
        name: Path(p) if p else None
        for name, p in (("video", video), ("frames_dir", frames_dir), ("contact_sheet", sheet))
    }
    refuse_existing(dst, *outputs.values())
    namespace = "/" + namespace.strip("/")
    start, skipped, core_ms, frames, copied = time.perf_counter(), [], 0.0, 0, 0
    no_grid: list[dict[str, Any]] = []
    with open_bag(src) as reader, contextlib.ExitStack() as stack:
        image_ids, compressed, total = check_input(reader, src, topic, namespace)
        if grid:
            grid.read_cameras(reader, src)
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
        exports = OverlayExports(
            stack, total, outputs["video"], outputs["frames_dir"], outputs["contact_sheet"], fps
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
            if grid:
                try:
                    cells = grid.message(msg, result)
                    writer.write(
                        grid_conn, stamp, typestore().serialize_cdr(cells, OCCUPANCY_GRID)
                    )
                except ValueError as exc:
                    no_grid.append({"index": index, "stamp_ns": stamp, "reason": str(exc)})
            stamp_ns = header_ns(msg.header)
            exports.add(
                index,
                stamp_label(index, stamp_ns),
                f"{index:06d}_{stamp_ns}",
                to_bgr(result.overlay, messages["overlay"].encoding),
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


# --------------------------------------------------------------------------- command lines


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def start_time(text: str) -> int:
    """argparse type: integer ns since the epoch, or a UTC 'YYYY-MM-DD HH:MM:SS[.ns]' timestamp."""
    try:
        return int(text) if text.isdigit() else parse_stamp(text)
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
    )
    info = f" and {INFO_TOPIC}" if summary["camera_info"] else " (no calibration: no camera_info)"
    print(
        f"wrote {summary['bag']} ({summary['storage']}, rosbag2 version {BAG_VERSION}): "
        f"{summary['frames']} "
        f"frames of the KITTI {summary['layout']} layout on {IMAGE_TOPIC}{info}"
    )
    for reason in summary["skipped"]:
        print(f"skipped: {reason}")


def kitti2bag_main(argv: Sequence[str] | None = None) -> int:
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
        "--rate", type=positive_float, metavar="HZ", help="road layout: stamp rate (default 10 Hz)"
    )
    p.add_argument(
        "--start",
        type=start_time,
        default=DEFAULT_START,
        help=f"road layout: first stamp, 'YYYY-MM-DD HH:MM:SS[.ns]' UTC or integer ns "
        f"(default '{DEFAULT_START}')",
    )
    p.add_argument(
        "--limit", type=positive_int, metavar="N", help="convert only the first N frames"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable frames (listed) instead of failing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return run_cli(_kitti2bag, p.parse_args(argv))


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
    """segment_bag's body: load the model, segment, print the summary."""
    refuse_existing(
        *(Path(p) for p in (args.output, args.video, args.frames_dir, args.contact_sheet) if p)
    )
    segmenter = segmenter_from_args(args)
    grid = None
    if args.grid:
        try:
            core, mount = grid_from_args(args)
        except ValueError as exc:
            raise DataError(f"--grid options: {exc}") from exc
        info_topic = args.camera_info_topic or f"{args.topic.rsplit('/', 1)[0]}/camera_info"
        grid = BagGrid(core, mount, args.target_frame, info_topic)
    print(f"model {args.model or default_model_path()}: {segmenter.backend.describe()}")
    print_segment_summary(
        segment_bag(
            args.input,
            args.output,
            segmenter,
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


def segment_bag_main(argv: Sequence[str] | None = None) -> int:
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
        "--video-fps", type=positive_float, default=10.0, help="frame rate of --video (default 10)"
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
    add_grid_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("threshold", "overlay_color", "overlay_alpha"):
        reason = check_setting(name, getattr(args, name))
        if reason:
            p.error(reason)
    return run_cli(_segment_bag, args)
