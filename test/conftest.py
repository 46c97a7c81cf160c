"""Shared fixtures: the real data in ../shared/data.

Skipped with a reason when this checkout has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import pytest

if TYPE_CHECKING:
    import numpy as np

    from fcn_road_seg.segmenter import Segmenter

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# five real 1242x375 KITTI Road frames shipped with the project
KITTI_FRAMES = ROOT / "data" / "kitti" / "image_2"


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


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The package's cache folder (engines, backend choices) in a fresh folder for the session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def int8_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small checkpoint (working size 64x96) beside its INT8 companion ``m.int8.onnx``.

    Quantized by ``fcn-road-export --int8`` on the shipped KITTI frames.
    """
    import torch

    from fcn_road_seg.model import untrained_model
    from fcn_road_seg.training.export import main as export_main

    pytest.importorskip("onnxruntime")
    if not any(KITTI_FRAMES.glob("*.png")):
        pytest.skip(f"no KITTI frames in {KITTI_FRAMES} to calibrate INT8 with")
    path = tmp_path_factory.mktemp("int8") / "m.pt"
    model = untrained_model(fc_channels=32, fc6_kernel=3)
    torch.save(
        {"model": model.state_dict(), "model_config": model.config, "working_size": [64, 96]}, path
    )
    args = [str(path), "--int8", "--calib-dir", str(KITTI_FRAMES), "--calib-frames", "3"]
    assert export_main([*args, "--no-check"]) == 0
    return path


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


def seg_launch_test(
    namespace: str, image_topic: str, params: dict[str, Any], **arguments: str
) -> tuple[Any, dict[str, Any]]:
    """A launch test's description: seg.launch.py in ``namespace`` on a tiny model.

    The params file is the installed one with ``params``; ``arguments`` are further launch
    arguments. Returns the LaunchDescription (ending in ReadyToTest) and the test's context:
    ``tmp`` (the folder of model and params, kept alive by being there) and ``model``.
    """
    import tempfile

    import launch
    import launch_testing.actions
    from ament_index_python.packages import get_package_share_directory
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    tmp = tempfile.TemporaryDirectory(prefix=f"fcn_road_seg_{namespace}_")
    model = write_tiny_model(Path(tmp.name) / "tiny.pt")
    params_file = write_launch_params(Path(tmp.name) / "params.yaml", **params)
    path = Path(get_package_share_directory("fcn_road_seg")) / "launch" / "seg.launch.py"
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(path)),
        launch_arguments={
            "model_path": str(model),
            "params_file": str(params_file),
            "image_topic": image_topic,
            "namespace": namespace,
            **arguments,
        }.items(),
    )
    description = launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])
    return description, {"tmp": tmp, "model": model}


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
    from fcn_road_seg.tools.kitti import parse_stamp
    from fcn_road_seg.tools.kitti2bag import kitti2bag

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
    """The core on ``tiny_model`` with default settings, built as the tools build it.

    Torch fp32 on the CPU, named rather than left to ``auto``: tests compare it with the network
    run by hand.
    """
    from fcn_road_seg.segmenter import make_segmenter

    return make_segmenter(model_path=tiny_model, backend="torch", device="cpu")


@pytest.fixture(scope="session")
def default_segmenter() -> Segmenter:
    """The core on the shipped default model, as the node runs it on a CPU; or a skip."""
    from fcn_road_seg.model import default_model_path
    from fcn_road_seg.segmenter import make_segmenter

    if not default_model_path().is_file():
        pytest.skip(f"no default model at {default_model_path()}")
    return make_segmenter(device="cpu")


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes, Any]]]:
    """topic -> [(bag timestamp, raw bytes, message)] in order."""
    from rosbags.rosbag2 import Reader

    from fcn_road_seg.tools.bags import typestore

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
    from fcn_road_seg.tools.bags import typestore

    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_color_left")


def rosbags_image(pixels: np.ndarray, encoding: str, pad: int = 0, **overrides: Any) -> Any:
    """A rosbags Image over H x W (x C) uint8 pixels, each row followed by ``pad`` junk bytes."""
    import numpy as np

    from fcn_road_seg.tools.bags import typestore

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


# --------------------------------------------------------------------------- encodings
# Every camera encoding of sensor_msgs/image_encodings, written by hand from its definition (not
# with the code under test): test_image.py, test_segmenter.py and test_segment_bag.py.

#: 16-bit encodings and how a bgr8 picture's channels are ordered in them
COLOR16 = {"rgb16": [2, 1, 0], "bgr16": [0, 1, 2], "rgba16": [2, 1, 0, 3], "bgra16": [0, 1, 2, 3]}
BAYER = ("rggb", "bggr", "gbrg", "grbg")
#: every encoding that is converted (not a view), mono16 last
CONVERTED = (
    *COLOR16,
    "uyvy",
    "yuv422",
    "yuyv",
    "yuv422_yuy2",
    "nv21",
    *(f"bayer_{p}{bits}" for bits in (8, 16) for p in BAYER),
    "mono16",
)


#: the least share of pixels whose mask agrees with the bgr8 frame's (mono has no colour to go by)
AGREEMENT, MONO_AGREEMENT = 0.97, 0.90


def yuv601(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U (Cb), V (Cr) float planes of bgr8 pixels: ITU-R BT.601, studio range (Y 16..235)."""
    import numpy as np

    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    return y, u, v


def to_u8(values: np.ndarray) -> np.ndarray:
    """Round and saturate to uint8."""
    import numpy as np

    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def to_16(pixels8: np.ndarray) -> np.ndarray:
    """8-bit values at full 16-bit scale (k * 257) plus a few counts of sensor noise (|n| <= 100,
    which the 16 -> 8 bit scaling round(v * 255 / 65535) maps back to k)."""
    import numpy as np

    noise = np.random.default_rng(0).integers(-100, 101, pixels8.shape)
    return np.clip(pixels8.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """The Bayer mosaic of ``pattern`` (e.g. ``rggb``: R at (0, 0), G at (0, 1) and (1, 0), B at
    (1, 1)) sampled from a bgr8 picture: one channel."""
    import numpy as np

    channel = {"b": 0, "g": 1, "r": 2}
    out = np.empty(bgr.shape[:2], bgr.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy::2, dx::2] = bgr[dy::2, dx::2, channel[pattern[2 * dy + dx]]]
    return out


def encode(bgr: np.ndarray, encoding: str, bigendian: bool = False) -> np.ndarray:
    """A bgr8 picture (even width and height) as the rows of ``encoding``: rows x row bytes
    uint8 (NV21: the Y rows, then the VU rows)."""
    import numpy as np

    h, w = bgr.shape[:2]
    if encoding in COLOR16 or encoding == "mono16" or encoding.startswith("bayer_"):
        if encoding in COLOR16:
            four = np.dstack([bgr, np.full((h, w), 255, np.uint8)])
            samples = to_16(four[..., COLOR16[encoding]])
        elif encoding == "mono16":
            samples = to_16(to_u8(0.299 * bgr[..., 2] + 0.587 * bgr[..., 1] + 0.114 * bgr[..., 0]))
        else:
            samples = mosaic(bgr, encoding[6:10])
            if encoding.endswith("8"):
                return samples
            samples = to_16(samples)
        samples = np.ascontiguousarray(samples, ">u2" if bigendian else "<u2")
        return samples.view(np.uint8).reshape(h, -1)
    y, u, v = yuv601(bgr)
    if encoding == "nv21":
        block = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
        vu = np.stack([block(v), block(u)], axis=-1).reshape(h // 2, w)
        return to_u8(np.vstack([y, vu]))
    pair = lambda c: c.reshape(h, w // 2, 2).mean(axis=2)  # noqa: E731
    y0, y1, u, v = y[:, 0::2], y[:, 1::2], pair(u), pair(v)
    order = (u, y0, v, y1) if encoding in ("uyvy", "yuv422") else (y0, u, y1, v)
    return to_u8(np.stack(order, axis=-1).reshape(h, 2 * w))


def encoded_image(bgr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Any:
    """A rosbags Image of a bgr8 picture in ``encoding`` (``encode``), each row followed by
    ``pad`` junk bytes."""
    import numpy as np

    from fcn_road_seg.tools.bags import typestore

    samples = encode(bgr, encoding, bigendian)
    rows = np.full((samples.shape[0], samples.shape[1] + pad), 0x5A, np.uint8)
    rows[:, : samples.shape[1]] = samples
    return typestore().types["sensor_msgs/msg/Image"](
        header=rosbags_header(),
        height=bgr.shape[0],
        width=bgr.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1],
        data=rows.reshape(-1),
    )


def distorted_pixel(
    model: str, d: Sequence[float], k: np.ndarray, X: np.ndarray, Y: np.ndarray, Z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Raw-image pixels (u, v) of camera-frame points through K and D: the published formulas of
    ``plumb_bob`` / ``rational_polynomial`` (OpenCV's camera model) and ``equidistant``
    (OpenCV's fisheye model), transcribed; not the code under test."""
    import numpy as np

    a, b = X / Z, Y / Z
    r2 = a * a + b * b
    if model == "equidistant":
        r = np.sqrt(r2)
        t = np.arctan(r)
        td = t * (1 + d[0] * t**2 + d[1] * t**4 + d[2] * t**6 + d[3] * t**8)
        xd, yd = a * td / r, b * td / r
    else:
        k1, k2, p1, p2, k3, *rest = d
        k4, k5, k6 = rest or (0.0, 0.0, 0.0)
        radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
        xd = a * radial + 2 * p1 * a * b + p2 * (r2 + 2 * a * a)
        yd = b * radial + p1 * (r2 + 2 * b * b) + 2 * p2 * a * b
    return k[0, 0] * xd + k[0, 2], k[1, 1] * yd + k[1, 2]
