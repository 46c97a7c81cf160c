"""rosbag2 on the rosbags library (no ROS needed): what ``kitti2bag`` and ``segment_bag`` share.

The typestore, message builders (header, Image, CameraInfo, OccupancyGrid), bag reading and
writing helpers and the topic, type and storage constants. Bags are written in rosbag2 metadata
version 8 (sqlite3 by default), which Humble and newer play, and appear only when writing them
succeeds: each is written beside its final name and renamed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import apsw
import numpy as np
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_typestore
from rosbags.typesys.store import Typestore

from ..atomic import atomic_path, check_target
from ..errors import DataError
from .kitti import CameraModel

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
    """DataError naming every output path that exists already (nothing is ever overwritten).

    Each must also be writable (``atomic.check_target``), all checked before any work is done.
    """
    existing = [str(p) for p in paths if p is not None and (p.exists() or p.is_symlink())]
    if existing:
        raise DataError(f"refusing to overwrite existing output: {', '.join(existing)}")
    for path in paths:
        if path is not None:
            check_target(path)


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
