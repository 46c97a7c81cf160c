"""Per-stage latency of one frame through the per-frame core, for every backend available here.

Frames are real KITTI Road images (1242x375, and resized to 576x160) in rosbags
``sensor_msgs/Image`` bgr8 messages, run through ``Segmenter.process(..., profile=True)`` exactly
as the node and the bag tool do: message -> array, pre-processing, inference, post-processing,
overlay, array -> messages. Each cell is median / p99 in milliseconds. "CPU outside network" is
everything but ``inference``; the same run times a naive cv_bridge-style numpy pipeline doing the
same work around the network, for comparison. Because a CPU network takes seconds per frame,
"outside, replayed" also runs every frame ``--replay`` more times through the same
``Segmenter.process`` with the network's recorded output played back in place of the network: many
more samples of exactly the work around it (robust on a busy machine).

    .venv/bin/python benchmarks/latency.py    # small-head model, all 15 shared KITTI frames
    .venv/bin/python benchmarks/latency.py --model runs/best.pt --frames 5 --repeat 3
    .venv/bin/python benchmarks/latency.py --only-encodings    # the per-encoding table alone

A second table times every camera encoding the core reads (sensor_msgs/image_encodings: 8-bit
colour and mono, 16-bit, YUV 4:2:2, NV21, Bayer at 8 and 16 bits): the frames converted into each
by the tests' hand-written encoders (``test/conftest.py``) at 1242x374 (NV21 needs even sides),
with the default model's network output played back: what each encoding costs outside the network.

Without ``--model`` a small-head FCN-8s (fc6/fc7 with 32 channels, 3x3 fc6; full VGG16 encoder)
with random weights is used: latency does not depend on the weights, and the CPU runs stay short.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcn_road_seg.backends import Backend, load_backend  # noqa: E402
from fcn_road_seg.image import ENCODINGS, to_fields  # noqa: E402
from fcn_road_seg.model import IMAGENET_MEAN, IMAGENET_STD, STRIDE, save_model, untrained_model  # noqa: E402
from fcn_road_seg.segmenter import Segmenter  # noqa: E402
from fcn_road_seg.training.export import export_onnx  # noqa: E402

sys.path.insert(0, str(ROOT / "test"))
from conftest import CONVERTED, encoded_image  # noqa: E402

IMAGE_DIRS = (
    ROOT.parent / "shared" / "data" / "kitti_road_samples" / "testing" / "image_2",
    ROOT / "data" / "kitti" / "image_2",
)
SIZES = ((1242, 375), (576, 160))
STAGES = ("to_array", "preprocess", "inference", "postprocess", "overlay", "to_msg")
HEADINGS = ("msg->array", "preprocess", "inference", "postprocess", "overlay", "array->msg")
TARGET_MS = 3.0
CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")  # named in machine()
OVERLAY_COLOR, OVERLAY_ALPHA = (0, 255, 0), 0.5


def ros_types() -> dict[str, Any]:
    """rosbags' message classes (ROS 2 Humble definitions)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE).types


def get_args_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    p = argparse.ArgumentParser(
        description="Per-stage latency of the per-frame core on real KITTI frames."
    )
    p.add_argument(
        "--model", help="training checkpoint (default: a small-head FCN-8s with random weights)"
    )
    p.add_argument("--images", help="folder of frames (default: the shared KITTI Road samples)")
    p.add_argument("--frames", type=int, default=15, help="frames per size (default 15)")
    p.add_argument("--repeat", type=int, default=1, help="passes over the frames (default 1)")
    p.add_argument(
        "--warmup", type=int, default=2, help="warm-up frames per backend and size (default 2)"
    )
    p.add_argument(
        "--replay",
        type=int,
        default=20,
        help="passes with the network's output played back (default 20)",
    )
    p.add_argument("--only-encodings", action="store_true", help="only the per-encoding table")
    return p


@dataclass
class Row:
    """One backend's (or the naive pipeline's) timings at one size: per-stage samples in ms."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, timings: dict[str, float]) -> None:
        """Record one frame's stage timings, plus total and CPU-outside-network."""
        for stage in (*STAGES, "total"):
            self.samples.setdefault(stage, []).append(timings.get(stage, float("nan")))
        self.samples.setdefault("outside", []).append(
            timings["total"] - timings.get("inference", 0.0)
        )

    def cell(self, stage: str) -> str:
        """'median / p99' for a stage, '-' where it does not apply."""
        values = np.asarray(self.samples[stage])
        if np.isnan(values).all():
            return "-"
        return f"{np.median(values):.2f} / {np.percentile(values, 99):.2f}"

    def median(self, stage: str) -> float:
        """Median of a stage in ms."""
        return float(np.median(self.samples[stage]))


def small_checkpoint(path: Path) -> Path:
    """A small-head FCN-8s checkpoint with random weights.

    Non-trivial outputs: the score layers are perturbed.
    """
    return save_model(untrained_model(fc_channels=32, fc6_kernel=3), path)


def load_frames(folder: str | None, count: int) -> tuple[Path, list[np.ndarray]]:
    """The first ``count`` frames (BGR) of ``folder`` or of the first default folder with any."""
    candidates = [Path(folder)] if folder else IMAGE_DIRS
    for directory in candidates:
        paths = sorted(directory.glob("*.png"))[:count] if directory.is_dir() else []
        if paths:
            return directory, [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    raise SystemExit(f"no .png frames in {' or '.join(map(str, candidates))}")


def padded(size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a fixed network input for a W x H camera: rounded up to a multiple of 32."""
    w, h = size
    return -(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE


def backends(
    checkpoint: Path, size: tuple[int, int], workdir: Path
) -> list[tuple[str, Callable[[], Backend]]]:
    """(label, factory) for every backend this machine can run; fixed-shape models for ``size``."""
    from fcn_road_seg.model import load_checkpoint_model

    h, w = padded(size)
    model = load_checkpoint_model(checkpoint)
    onnx32 = workdir / f"fcn_{h}x{w}.onnx"
    # the exporter's progress lines stay out of the table
    with contextlib.redirect_stdout(sys.stderr):
        export_onnx(model, onnx32, (h, w))
    found = [
        ("torch cpu fp32", lambda: load_backend(checkpoint, "torch", "cpu")),
        (f"onnxruntime cpu ({h}x{w})", lambda: load_backend(onnx32, "onnxruntime", "cpu")),
    ]
    if not torch.cuda.is_available():
        return found
    found.append(
        ("torch cuda fp16", lambda: load_backend(checkpoint, "torch", "cuda", precision="fp16"))
    )
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return found
    onnx16 = workdir / f"fcn_{h}x{w}_fp16.onnx"
    # strongly typed FP16: what TensorRT 10 and 11 both build
    with contextlib.redirect_stdout(sys.stderr):
        export_onnx(model, onnx16, (h, w), fp16=True)
    found.append((f"tensorrt fp16 ({h}x{w})", lambda: load_backend(onnx16, "tensorrt", "cuda")))
    return found


def messages(frames: Sequence[np.ndarray], size: tuple[int, int]) -> list[Any]:
    """bgr8 Image messages of the frames at ``size`` (W, H)."""
    types = ros_types()
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="camera"
    )
    out = []
    for bgr in frames:
        if (bgr.shape[1], bgr.shape[0]) != size:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        out.append(types["sensor_msgs/msg/Image"](header=header, **to_fields(bgr, "bgr8")))
    return out


class Recorder(Backend):
    """Runs another backend's network and records its outputs; with ``replay``, plays them back."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend.device, backend.input_size, backend.resize_policy)
        self.network_size = backend.network_size
        self.name, self.backend = backend.name, backend
        self.outputs: list[torch.Tensor] = []
        self.replay = False
        self.played = 0

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """The wrapped network's P(road), or the next recorded one when replaying."""
        if self.replay:
            self.played += 1
            return self.outputs[(self.played - 1) % len(self.outputs)]
        prob = self.backend._forward(image)
        self.outputs.append(prob)
        return prob


def process_all(
    segmenter: Segmenter, msgs: Sequence[Any], passes: int, row: Row | None = None
) -> list[np.ndarray]:
    """``passes`` times every message through ``Segmenter.process``.

    Timings go into ``row``; the confidences come out.
    """
    image = ros_types()["sensor_msgs/msg/Image"]
    make = lambda header, fields: image(header=header, **fields)  # noqa: E731
    confidences = []
    for _ in range(passes):
        for msg in msgs:
            result, _ = segmenter.process(msg, make, profile=row is not None)
            if row is not None:
                row.add(result.timings)
            confidences.append(result.confidence)
    return confidences


def time_core(
    backend: Backend, msgs: Sequence[Any], args: argparse.Namespace
) -> tuple[Row, Row, list[np.ndarray]]:
    """(real runs, runs with the network played back) through the core, and each confidence map."""
    recorder = Recorder(backend)
    segmenter = Segmenter(recorder, overlay_color=OVERLAY_COLOR, overlay_alpha=OVERLAY_ALPHA)
    process_all(segmenter, msgs[: args.warmup], 1)
    recorder.outputs.clear()
    real, replayed = Row(), Row()
    confidences = process_all(segmenter, msgs, args.repeat, real)[: len(msgs)]
    recorder.outputs = recorder.outputs[: len(msgs)]
    recorder.replay = True
    process_all(segmenter, msgs, args.replay, replayed)
    return real, replayed, confidences


def naive_pipeline(msg: Any, logits: np.ndarray) -> dict[str, float]:
    """cv_bridge-style numpy around a network that returned ``logits``; ms per stage.

    ``logits`` is 1 x 2 x H x W float32.
    """
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    t = [time.perf_counter()]
    # imgmsg_to_cv2
    bgr = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3).copy()
    t.append(time.perf_counter())
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    # NCHW network input
    x = ((rgb.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)[None].copy()
    t.append(time.perf_counter())
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e[0, 1] / e[0].sum(axis=0)
    mask = np.where(p >= 0.5, 255, 0).astype(np.uint8)
    confidence = np.round(p * 255).astype(np.uint8)
    t.append(time.perf_counter())
    tint = (bgr * (1 - OVERLAY_ALPHA) + np.array(OVERLAY_COLOR[::-1]) * OVERLAY_ALPHA).astype(
        np.uint8
    )
    overlay = np.where(mask[..., None] > 0, tint, bgr)
    t.append(time.perf_counter())
    for out in (mask, confidence, overlay):
        out.tobytes()  # cv2_to_imgmsg
    t.append(time.perf_counter())
    del x
    ms = np.diff(t) * 1e3
    stages = dict(zip(("to_array", "preprocess", "postprocess", "overlay", "to_msg"), ms))
    return {**stages, "total": float(ms.sum())}


def time_naive(msgs: Sequence[Any], confidences: Sequence[np.ndarray], repeat: int) -> Row:
    """The naive pipeline on the same messages; logits rebuilt from the real network's P(road)."""
    row = Row()
    logits = []
    for conf in confidences:
        p = np.clip(conf.astype(np.float32) / 255.0, 1e-4, 1 - 1e-4)
        logits.append(np.stack([np.zeros_like(p), np.log(p / (1 - p))])[None])
    for _ in range(repeat):
        for msg, lg in zip(msgs, logits):
            row.add(naive_pipeline(msg, lg))
    return row


def encoding_messages(frames: Sequence[np.ndarray], encoding: str) -> list[Any]:
    """The frames (cut to even sides) as Image messages of ``encoding``."""
    to_8bit = {"rgb8": cv2.COLOR_BGR2RGB, "bgra8": cv2.COLOR_BGR2BGRA, "mono8": cv2.COLOR_BGR2GRAY}
    out = []
    for bgr in frames:
        bgr = bgr[: bgr.shape[0] // 2 * 2, : bgr.shape[1] // 2 * 2]
        if encoding not in ENCODINGS:
            out.append(encoded_image(bgr, encoding))
            continue
        pixels = cv2.cvtColor(bgr, to_8bit[encoding]) if encoding in to_8bit else bgr
        [msg] = messages([bgr], (bgr.shape[1], bgr.shape[0]))
        out.append(
            ros_types()["sensor_msgs/msg/Image"](header=msg.header, **to_fields(pixels, encoding))
        )
    return out


def time_encodings(
    backend: Backend, frames: Sequence[np.ndarray], passes: int
) -> list[tuple[str, Row]]:
    """(encoding, timings) through ``Segmenter.process`` with ``backend``'s output played back."""
    recorder = Recorder(backend)
    segmenter = Segmenter(recorder, overlay_color=OVERLAY_COLOR, overlay_alpha=OVERLAY_ALPHA)
    process_all(segmenter, encoding_messages(frames, "bgr8"), 1)
    recorder.replay = True
    rows = []
    for encoding in ("bgr8", "rgb8", "bgra8", "mono8", *CONVERTED):
        print(f"encoding {encoding} ...", file=sys.stderr)
        msgs = encoding_messages(frames, encoding)
        process_all(segmenter, msgs, 1)  # warm-up
        row = Row()
        process_all(segmenter, msgs, passes, row)
        rows.append((encoding, row))
    return rows


def encoding_table(rows: Sequence[tuple[str, Row]], size: str) -> str:
    """A Markdown table: encoding, the stages outside the network, and what its conversion
    (msg->array) adds to bgr8's zero-copy view."""
    head = (
        "encoding",
        *HEADINGS[:2],
        *HEADINGS[3:],
        "CPU outside network",
        "conversion over bgr8 (median)",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = rows[0][1].median("to_array")
    for encoding, row in rows:
        cells = (
            f"{encoding} ({size})" if encoding == "bgr8" else encoding,
            *(row.cell(s) for s in STAGES if s != "inference"),
            row.cell("outside"),
            f"{row.median('to_array') - base:+.2f} ms",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def encoding_backend(args: argparse.Namespace, workdir: Path) -> Backend:
    """The default model's CPU backend (its working size: the real pre-processing), else the
    small-head model's."""
    from fcn_road_seg.model import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    if not model.is_file():
        model = small_checkpoint(workdir / "small_head.pt")
    return load_backend(model, "auto", "cpu")


def machine() -> str:
    """One line: CPU, cores usable, OS, library versions, GPU."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    if Path("/proc/cpuinfo").is_file():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
        found = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        flags = [f for f in CPU_FLAGS if found and f in found.group(1).split()]
    import onnxruntime

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    openvino = importlib.util.find_spec("openvino") and importlib.metadata.version("openvino")
    return (
        f"{cpu} ({' '.join(flags) or 'no AVX-512 VNNI/BF16, no AMX'}), "
        f"{len(os.sched_getaffinity(0))} cores usable, "
        f"{platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__}, OpenVINO {openvino or 'not installed'}, "
        f"OpenCV {cv2.__version__}, {gpu}"
    )


def table(rows: Sequence[tuple[str, str, Row, Row]], replay: int) -> str:
    """A Markdown table: size, backend, stages, total, FPS and CPU work outside the network.

    The CPU work outside the network is given for real and for replayed runs.
    """
    head = (
        "size",
        "backend",
        *HEADINGS,
        "total",
        "FPS",
        "CPU outside network",
        f"outside, replayed x{replay}",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size, label, row, replayed in rows:
        fps = (
            "-" if np.isnan(row.samples["inference"]).all() else f"{1e3 / row.median('total'):.2f}"
        )
        cells = (
            size,
            label,
            *(row.cell(s) for s in STAGES),
            row.cell("total"),
            fps,
            row.cell("outside"),
            replayed.cell("outside"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str, Row, Row]]:
    """Time every backend and the naive pipeline at each size.

    Returns (size, label, real runs, replayed runs) rows.
    """
    checkpoint = Path(args.model) if args.model else small_checkpoint(workdir / "small_head.pt")
    folder, frames = load_frames(args.images, args.frames)
    print(
        f"frames: {len(frames)} from {folder}, {args.repeat} pass(es), "
        f"model: {args.model or 'small-head FCN-8s'}",
        file=sys.stderr,
    )
    rows = []
    for size in SIZES:
        msgs = messages(frames, size)
        confidences = None
        for label, factory in backends(checkpoint, size, workdir):
            print(f"{size[0]}x{size[1]}: {label} ...", file=sys.stderr)
            real, replayed, confidence = time_core(factory(), msgs, args)
            confidences = confidences or confidence
            rows.append((f"{size[0]}x{size[1]}", label, real, replayed))
        naive = (
            time_naive(msgs, confidences, args.repeat),
            time_naive(msgs, confidences, args.replay),
        )
        rows.append((f"{size[0]}x{size[1]}", "naive numpy (cv_bridge-style)", *naive))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the machine line, the table and the CPU target verdict."""
    args = get_args_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fcn_latency_") as tmp:
        rows = [] if args.only_encodings else run(args, Path(tmp))
        _, frames = load_frames(args.images, args.frames)
        backend = encoding_backend(args, Path(tmp))
        encodings = time_encodings(backend, frames, args.replay)
    print(f"machine: {machine()}")
    if rows:
        print(table(rows, args.replay))
    size = f"{frames[0].shape[1] // 2 * 2}x{frames[0].shape[0] // 2 * 2}"
    print(f"\nper encoding, {backend.describe()}, network output played back:")
    print(encoding_table(encodings, size))
    kitti = f"{SIZES[0][0]}x{SIZES[0][1]}"
    for size, label, row, replayed in rows:
        if size == kitti and "cpu" in label:
            median = replayed.median("outside")
            print(
                f"{label} at {kitti}: CPU work outside the network {median:.2f} ms median over "
                f"{len(replayed.samples['outside'])} replayed frames, "
                f"{row.median('outside'):.2f} ms over "
                f"{len(row.samples['outside'])} real ones (target <= {TARGET_MS:g} ms: "
                f"{'met' if median <= TARGET_MS else 'NOT met'})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
