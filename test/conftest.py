"""Shared fixtures: the real data in ../shared/data.

Skipped with a reason when this checkout has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    import numpy as np

    from fcn_road_seg.segmenter import Segmenter

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
KITTI_FRAMES = (
    ROOT / "data" / "kitti" / "image_2"
)  # five real 1242x375 KITTI Road frames shipped with the project


def shared_path(*parts: str) -> Path:
    """``SHARED/parts...``, or skip the calling test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"shared data not found: {path} "
            "(the real-data tests need ../shared/data beside the repo)"
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (../shared/data from the repository root)."""
    return shared_path()


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    """CamVid road labels in KITTI Road ``data_road`` layout.

    With ``training/image_2``, ``gt_image_2`` and the splits.
    """
    return shared_path("camvid_road")


@pytest.fixture(scope="session")
def kitti_samples_dir() -> Path:
    """Real KITTI Road test frames (1242x375, no labels).

    Read from ``.../kitti_road_samples/testing/image_2``.
    """
    return shared_path("kitti_road_samples", "testing", "image_2")


@pytest.fixture(scope="session")
def kitti_road_root() -> Path:
    """The real KITTI Road training set (231 frames).

    Written by ``../shared/data/kitti_road/build.py``. Looked for in ``$FCN_ROAD_SEG_KITTI`` or
    ``data/data_road``; skipped with a reason when absent.
    """
    import os

    path = Path(os.environ.get("FCN_ROAD_SEG_KITTI", ROOT / "data" / "data_road"))
    if not (path / "training" / "gt_image_2").is_dir():
        pytest.skip(
            f"real KITTI Road set not found at {path}: build it with "
            "../shared/data/kitti_road/build.py (see its README)"
        )
    return path


def write_tiny_model(path: Path) -> Path:
    """A small FCN8s checkpoint (fc 32 channels, 3x3 fc6).

    Its zero-initialised score layers are perturbed.
    """
    from fcn_road_seg.model import save_model, untrained_model

    return save_model(untrained_model(fc_channels=32, fc6_kernel=3), path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``write_tiny_model`` once per session."""
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


def kitti_frame(name: str = "um_000005.png"):
    """A shipped KITTI frame (BGR), or a skip naming the file when the checkout lacks it."""
    import cv2

    path = KITTI_FRAMES / name
    if not path.is_file():
        pytest.skip(f"KITTI sample {path} not found")
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of signature, IHDR and IEND only (no pixels) whose header claims width x height."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def video_frames(path: Path) -> int:
    """How many frames cv2.VideoCapture decodes from ``path``."""
    import cv2

    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def level_road_calib(
    f: float = 700.0, cx: float = 600.0, cy: float = 180.0, h: float = 1.6
) -> dict:
    """A KITTI Road calibration of a level camera h m over the road.

    P2 = [K | 0], R0 = I, road y = camera y - h.
    """
    import numpy as np

    tr = np.hstack([np.eye(3), [[0.0], [-h], [0.0]]])
    return {
        "P2": np.array([[f, 0, cx, 0], [0, f, cy, 0], [0, 0, 1, 0]], float).ravel(),
        "R0_rect": np.eye(3).ravel(),
        "Tr_cam_to_road": tr.ravel(),
    }


def write_calib(path: Path, calib: dict) -> Path:
    """``calib`` as a KITTI calibration file (``key: v1 v2 ...`` lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            f"{key}: {' '.join(f'{v:.12e}' for v in values)}\n" for key, values in calib.items()
        )
    )
    return path


def spin_until(
    executor: Any, done: Callable[[], Any], timeout: float, every: Callable[[], Any] = lambda: None
) -> bool:
    """Spin an rclpy executor until ``done()`` or ``timeout`` s.

    Calls ``every()`` (e.g. publish) each second.
    """
    import time

    deadline, next_call = time.monotonic() + timeout, 0.0
    while not done() and time.monotonic() < deadline:
        if time.monotonic() >= next_call:
            every()
            next_call = time.monotonic() + 1.0
        executor.spin_once(timeout_sec=0.05)
    return bool(done())


def write_launch_params(path: Path, **updates: Any) -> Path:
    """The installed config/seg.yaml with ``updates`` to node parameters, written to ``path``."""
    import yaml
    from ament_index_python.packages import get_package_share_directory

    params = yaml.safe_load(
        (Path(get_package_share_directory("fcn_road_seg")) / "config" / "seg.yaml").read_text()
    )
    [node_params] = [entry["ros__parameters"] for entry in params.values()]
    node_params.update(updates)
    path.write_text(yaml.safe_dump(params))
    return path


# --------------------------------------------------------------------------- bags
# Shared by test_bags.py, test_kitti2bag.py and test_segment_bag.py.

#: the real KITTI Road frames that ``road_dir`` holds at quarter size
ROAD_NAMES = ["um_000005.png", "umm_000015.png", "uu_000002.png"]


def p2_for(i: int) -> np.ndarray:
    """A distinct P2 per frame, like KITTI Road's per-frame calibration files."""
    import numpy as np

    return np.array([700.0 + i, 0, 600.5, 45.25, 0, 701.0 + i, 170.25, -0.5, 0, 0, 1, 0.003])


@pytest.fixture(scope="module")
def road_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KITTI Road folder with quarter-size copies of real frames and a calib file each."""
    import cv2

    root = tmp_path_factory.mktemp("kitti")
    (root / "image_2").mkdir()
    (root / "calib").mkdir()
    for i, name in enumerate(ROAD_NAMES):
        pixels = cv2.imread(str(KITTI_FRAMES / name))
        small = cv2.resize(
            pixels, (pixels.shape[1] // 4, pixels.shape[0] // 4), interpolation=cv2.INTER_AREA
        )
        cv2.imwrite(str(root / "image_2" / name), small)
        (root / "calib" / name.replace(".png", ".txt")).write_text(
            "P0: "
            + " ".join(["0"] * 12)
            + "\nP2: "
            + " ".join(f"{v:.12e}" for v in p2_for(i))
            + "\n"
        )
    return root


@pytest.fixture(scope="module")
def converted(road_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """kitti2bag's summary for ``road_dir``."""
    from fcn_road_seg.kitti import parse_stamp
    from fcn_road_seg.kitti2bag import kitti2bag

    out = tmp_path_factory.mktemp("bags") / "kitti"
    return kitti2bag(
        road_dir,
        out,
        rate_hz=4.0,
        start_ns=parse_stamp("2011-09-26 13:02:25.964389445"),
        progress=False,
    )


@pytest.fixture(scope="module")
def segmenter(tiny_model: Path) -> Segmenter:
    """The core on ``tiny_model``, on the CPU."""
    from fcn_road_seg.segmenter import make_segmenter

    return make_segmenter(tiny_model, device="cpu")


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes, Any]]]:
    """topic -> [(bag timestamp, raw bytes, message)] in order."""
    from rosbags.rosbag2 import Reader

    from fcn_road_seg.bags import typestore

    topics: dict[str, list[tuple[int, bytes, Any]]] = {}
    with Reader(path) as reader:
        for conn, stamp, raw in reader.messages():
            msg = typestore().deserialize_cdr(raw, conn.msgtype)
            topics.setdefault(conn.topic, []).append((stamp, bytes(raw), msg))
    return topics


def leftovers(folder: Path) -> list[str]:
    """Temporary names an aborted atomic write would leave."""
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


def devkit_bev_labels(labels: np.ndarray, calib: dict) -> np.ndarray:
    """The devkit's BEV of a label map, cell by cell in plain numpy.

    255 where the devkit keeps no pixel.
    """
    import numpy as np

    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"].reshape(3, 3)
    tr = np.vstack([calib["Tr_cam_to_road"].reshape(3, 4), [0, 0, 0, 1]])
    tr33 = (calib["P2"].reshape(3, 4) @ r0 @ np.linalg.inv(tr))[:, [0, 2, 3]]
    x = np.arange(-10 + 0.025, 10, 0.05).astype(np.float32)
    z = np.arange(46 - 0.025, 6, -0.05).astype(np.float32)
    xx, zz = np.meshgrid(x, z)
    u, v, w = np.tensordot(tr33, np.stack([xx, zz, np.ones_like(xx)]).astype(float), axes=1)
    u, v = u / w, v / w
    h, wd = labels.shape
    keep = (u >= 1) & (v >= 1) & (u <= wd) & (v <= h)
    out = np.full(xx.shape, 255, np.uint8)
    out[keep] = labels[np.floor(v[keep]).astype(int) - 1, np.floor(u[keep]).astype(int) - 1]
    return out


def rosbags_header(sec: int = 1_700_000_000, nanosec: int = 987_654_321) -> Any:
    """A rosbags std_msgs/Header with a non-trivial stamp, in camera_color_left."""
    from fcn_road_seg.bags import typestore

    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_color_left")


def rosbags_image(pixels: np.ndarray, encoding: str, pad: int = 0, **overrides: Any) -> Any:
    """A rosbags Image over H x W (x C) uint8 pixels, each row followed by ``pad`` junk bytes."""
    import numpy as np

    from fcn_road_seg.bags import typestore

    h, w = pixels.shape[:2]
    rows = np.full((h, pixels[0].size + pad), 0x5A, np.uint8)
    rows[:, : pixels[0].size] = pixels.reshape(h, -1)
    fields = dict(
        header=rosbags_header(),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=rows.shape[1],
        data=rows.reshape(-1),
    )
    return typestore().types["sensor_msgs/msg/Image"](**{**fields, **overrides})


def open_probe(case: Any, name: str, image_topic: str, mask_topic: str) -> None:
    """Give a launch test's class a probe node: ``context``, ``node``, ``executor``, ``masks``
    (collected from ``mask_topic``) and ``publisher`` (on ``image_topic``)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    case.context = Context()
    rclpy.init(context=case.context)
    case.node = rclpy.create_node(name, context=case.context)
    case.executor = SingleThreadedExecutor(context=case.context)
    case.executor.add_node(case.node)
    case.masks = []
    case.node.create_subscription(Image, mask_topic, case.masks.append, QoSProfile(depth=10))
    case.publisher = case.node.create_publisher(Image, image_topic, QoSProfile(depth=1))


def close_probe(case: Any) -> None:
    """Undo ``open_probe``."""
    import rclpy

    case.executor.shutdown()
    case.node.destroy_node()
    rclpy.try_shutdown(context=case.context)
