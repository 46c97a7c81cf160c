"""The ROS 2 node end to end: image published -> road_seg/mask received, on a real rclpy.

A probe node publishes real 1242x375 KITTI frames (bgr8) to the node, one at a time, and waits
for the mask with the same stamp. The round trip (DDS both ways, the node's callback, its worker,
the backend and the publish) bounds the node's arrival-to-publish latency from above. Only the
mask is subscribed, so the node computes no overlay, confidence or grid (as a planner that uses
only the mask sees it). Needs a sourced ROS 2 (rclpy); the default model runs as ``auto`` picks.

    source /opt/ros/jazzy/setup.bash
    .venv/bin/python benchmarks/node_latency.py --frames 30
    .venv/bin/python benchmarks/node_latency.py --param backend:=onnxruntime
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from latency import load_frames, machine  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fcn_road_seg import image  # noqa: E402
from fcn_road_seg.ros.node import RoadSegNode, make_image  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The node's round trip on a real ROS 2")
    p.add_argument("--images", help="frames to send (default: the shared KITTI samples)")
    p.add_argument("--frames", type=int, default=30, help="timed frames (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first (default 5)")
    p.add_argument(
        "--param", action="append", default=[], help="a node parameter, NAME:=VALUE (repeatable)"
    )
    return p


def parameter(text: str) -> Parameter:
    """``name:=value`` as an rclpy Parameter (value parsed as YAML, as ros2 run does)."""
    import yaml

    name, _, value = text.partition(":=")
    return Parameter(name, value=yaml.safe_load(value))


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    folder, frames = load_frames(args.images, args.warmup + args.frames)
    rclpy.init()
    node = RoadSegNode(parameter_overrides=[parameter(t) for t in args.param])
    probe = rclpy.create_node("node_latency_probe")
    got: dict[tuple[int, int], float] = {}

    def on_mask(msg: Image) -> None:
        got[msg.header.stamp.sec, msg.header.stamp.nanosec] = time.perf_counter()

    probe.create_subscription(Image, "road_seg/mask", on_mask, QoSProfile(depth=5))
    publisher = probe.create_publisher(Image, "image", qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    deadline = time.monotonic() + 10.0
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    times = []
    described = node._backend_info
    try:
        for i in range(args.warmup + args.frames):
            bgr = frames[i % len(frames)]
            header = Header(stamp=Time(sec=i + 1), frame_id="camera")
            msg = make_image(header, image.to_fields(bgr, "bgr8"))
            sent = time.perf_counter()
            publisher.publish(msg)
            end = time.monotonic() + 30.0
            while (i + 1, 0) not in got and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.005)
            if (i + 1, 0) not in got:
                raise SystemExit(f"no mask for frame {i} within 30 s")
            if i >= args.warmup:
                times.append(1e3 * (got[i + 1, 0] - sent))
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()
        rclpy.try_shutdown()
    median = statistics.median(times)
    print(f"machine: {machine()}")
    print(
        f"backend: {described}; {len(times)} frames of {folder} (1242x375 bgr8), "
        "one in flight at a time, mask only subscribed"
    )
    print("| path | median ms | p90 ms | FPS (1 / median) |")
    print("|---|---|---|---|")
    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    print(
        f"| image published -> road_seg/mask received | {median:.1f} | {p90:.1f} | "
        f"{1e3 / median:.1f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
