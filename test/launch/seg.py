"""launch_testing: seg.launch.py starts the node on a small model; a KITTI frame in, its mask out.

Skipped where launch_testing (ROS 2) cannot be imported. ``test_launch_tests.py`` runs it in a
process of its own under ``colcon test``; alone, in a sourced workspace where fcn_road_seg is
installed: ``python -m pytest test/launch/seg.py``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("launch_testing")

import unittest  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import launch  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fcn_road_seg import image  # noqa: E402
from fcn_road_seg.backends import load_backend  # noqa: E402
from fcn_road_seg.ros.node import make_image  # noqa: E402
from fcn_road_seg.segmenter import Segmenter  # noqa: E402

from conftest import (  # noqa: E402
    ROOT,
    close_probe,
    open_probe,
    seg_launch_test,
    spin_until,
)

KITTI_DIRS = [
    ROOT / "data" / "kitti" / "image_2",
    ROOT.parent / "shared" / "data" / "kitti_road_samples" / "testing" / "image_2",
]
KITTI_FRAME = "um_000005.png"
NAMESPACE = "seg_launch_test"
IMAGE_TOPIC = f"/{NAMESPACE}/camera/image_raw"
MASK_TOPIC = f"/{NAMESPACE}/road_seg/mask"
THRESHOLD = (
    0.45  # differs from the default: the mask proves the params file reached the namespaced node
)
FRAME_ID = "camera_color_left"
TIMEOUT_S = 120.0


def kitti_frame() -> np.ndarray:
    """A real 1242x375 KITTI Road frame (BGR); the tests skip without one."""
    path = next((d / KITTI_FRAME for d in KITTI_DIRS if (d / KITTI_FRAME).is_file()), None)
    if path is None:
        raise unittest.SkipTest(
            f"KITTI sample {KITTI_FRAME} not found in {' or '.join(map(str, KITTI_DIRS))}"
        )
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


@pytest.mark.launch_test
def generate_test_description() -> tuple[launch.LaunchDescription, dict[str, Any]]:
    """seg.launch.py in a namespace with a tiny model and a derived params file.

    The params file is derived from the installed one.
    """
    params = {
        "device": "cpu",
        "threshold": THRESHOLD,
        "warmup_size": [96, 320],
        "qos_overrides": {IMAGE_TOPIC: {"subscription": {"reliability": "reliable"}}},
    }
    return seg_launch_test(NAMESPACE, IMAGE_TOPIC, params)


def image_msg(pixels: np.ndarray, encoding: str, sec: int) -> Image:
    """An rclpy Image over ``pixels`` stamped ``sec``.123456789 in FRAME_ID."""
    return make_image(
        Header(stamp=Time(sec=sec, nanosec=123_456_789), frame_id=FRAME_ID),
        image.to_fields(pixels, encoding),
    )


class TestSegmentation(unittest.TestCase):
    """Talks to the launched node: publishes frames, checks the masks."""

    @classmethod
    def setUpClass(cls) -> None:
        open_probe(cls, "seg_launch_probe", IMAGE_TOPIC, MASK_TOPIC)
        cls.frame = kitti_frame()

    @classmethod
    def tearDownClass(cls) -> None:
        close_probe(cls)

    def mask_for(self, msg: Image, timeout: float = TIMEOUT_S) -> Image:
        """Publish ``msg`` about once a second until the mask with its stamp arrives."""

        def found() -> Image | None:
            return next((m for m in self.masks if m.header.stamp == msg.header.stamp), None)

        spin_until(self.executor, found, timeout, lambda: self.publisher.publish(msg))
        mask = found()
        self.assertIsNotNone(
            mask, f"no mask for stamp {msg.header.stamp.sec} on {MASK_TOPIC} within {timeout} s"
        )
        return mask

    def test_a_kitti_frame_gets_its_mask_with_the_header(self, model: Path) -> None:
        msg = image_msg(self.frame, "bgr8", 1_000)
        expected, _ = Segmenter(load_backend(model, "torch", "cpu"), threshold=THRESHOLD).process(
            msg, make_image
        )
        mask = self.mask_for(msg)
        self.assertEqual(
            (mask.header.stamp.sec, mask.header.stamp.nanosec, mask.header.frame_id),
            (1_000, 123_456_789, FRAME_ID),
        )
        self.assertEqual(
            (mask.encoding, mask.height, mask.width, mask.step, mask.is_bigendian),
            ("mono8", 375, 1242, 1242, 0),
        )
        pixels = np.frombuffer(mask.data, np.uint8).reshape(375, 1242)
        self.assertTrue(0 < pixels.mean() < 255, "the mask should hold road and non-road pixels")
        np.testing.assert_array_equal(pixels, expected.mask)

    def test_a_malformed_message_leaves_the_node_alive(self, proc_output: Any) -> None:
        bad = image_msg(self.frame, "bgr8", 2_000)
        bad.step = 1242 * 3 + 1  # data no longer matches step * height
        spin_until(self.executor, lambda: False, 2.0, lambda: self.publisher.publish(bad))
        proc_output.assertWaitFor(
            "data length 1397250 does not match step*height = 3727*375", timeout=TIMEOUT_S
        )
        good = image_msg(cv2.flip(self.frame, 1), "bgr8", 2_001)
        mask = self.mask_for(good)
        self.assertEqual((mask.height, mask.width, mask.header.stamp.sec), (375, 1242, 2_001))
        self.assertFalse(any(m.header.stamp.sec == 2_000 for m in self.masks))

    def test_a_bayer_frame_gets_the_mask_of_the_core(self, model: Path) -> None:
        """A raw Bayer mosaic of the KITTI frame, as a machine-vision driver publishes it."""
        rggb = np.empty(self.frame.shape[:2], np.uint8)
        for dy, dx, channel in ((0, 0, 2), (0, 1, 1), (1, 0, 1), (1, 1, 0)):
            rggb[dy::2, dx::2] = self.frame[dy::2, dx::2, channel]
        msg = image_msg(rggb, "bayer_rggb8", 3_000)
        expected, _ = Segmenter(load_backend(model, "torch", "cpu"), threshold=THRESHOLD).process(
            msg, make_image
        )
        mask = self.mask_for(msg)
        pixels = np.frombuffer(mask.data, np.uint8).reshape(375, 1242)
        np.testing.assert_array_equal(pixels, expected.mask)

    def test_each_kind_of_bad_message_gets_its_own_error_line(self, proc_output: Any) -> None:
        """Three different faults within one throttle period: three ERROR lines, not one."""
        header = Header(stamp=Time(sec=4_000, nanosec=0), frame_id=FRAME_ID)
        faults = {
            "yuv420": "unsupported encoding 'yuv420'",
            "yuyv": "yuyv needs an even width, got 5x2",
            "32FC1": "encoding '32FC1' is a depth or plain OpenCV image",
        }
        for encoding, text in faults.items():
            fields = image.to_fields(np.zeros((2, 10), np.uint8), "mono8")
            bad = make_image(header, {**fields, "encoding": encoding, "width": 5})
            # the node keeps only the newest frame: on a busy machine one publish may be replaced
            # by the next before the worker takes it, so each fault is sent until it is logged
            for _ in range(int(TIMEOUT_S)):
                self.publisher.publish(bad)
                try:
                    proc_output.assertWaitFor(text, timeout=1.0)
                    break
                except AssertionError:
                    continue
            proc_output.assertWaitFor(text, timeout=1.0)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """After the launch is shut down."""

    def test_clean_exit_codes(self, proc_info: Any) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
