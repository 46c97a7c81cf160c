"""launch_testing: seg.launch.py lifecycle:=true brings the managed node to active.

Deactivated, it publishes nothing.

Skipped where launch_testing (ROS 2) cannot be imported. ``test_launch_tests.py`` runs it in a
process of its own under ``colcon test``; alone, in a sourced workspace where fcn_road_seg is
installed: ``python -m pytest test/launch/lifecycle.py``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("launch_testing")

import unittest  # noqa: E402
from typing import Any  # noqa: E402

import launch  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fcn_road_seg import image  # noqa: E402
from fcn_road_seg.ros.node import make_image  # noqa: E402

from conftest import (  # noqa: E402
    close_probe,
    open_probe,
    seg_launch_test,
    spin_until,
)

NAMESPACE = "lifecycle_launch_test"
NODE = f"/{NAMESPACE}/road_segmentation"
IMAGE_TOPIC = f"/{NAMESPACE}/camera/image_raw"
MASK_TOPIC = f"/{NAMESPACE}/road_seg/mask"
TIMEOUT_S = 120.0


@pytest.mark.launch_test
def generate_test_description() -> tuple[launch.LaunchDescription, dict[str, Any]]:
    """seg.launch.py lifecycle:=true (autostart) in a namespace with a tiny model on the CPU."""
    return seg_launch_test(
        NAMESPACE, IMAGE_TOPIC, {"device": "cpu", "warmup_size": [0, 0]}, lifecycle="true"
    )


class TestLifecycle(unittest.TestCase):
    """Drives the launched node's transitions through its lifecycle services.

    Also watches road_seg/mask.
    """

    @classmethod
    def setUpClass(cls) -> None:
        open_probe(cls, "lifecycle_launch_probe", IMAGE_TOPIC, MASK_TOPIC)
        cls.change = cls.node.create_client(ChangeState, f"{NODE}/change_state")
        cls.get = cls.node.create_client(GetState, f"{NODE}/get_state")
        pixels = np.zeros((96, 320, 3), np.uint8)
        pixels[48:] = 120  # a grey "road" under a black sky
        cls.msg = make_image(
            Header(stamp=Time(sec=7), frame_id="camera"), image.to_fields(pixels, "bgr8")
        )

    @classmethod
    def tearDownClass(cls) -> None:
        close_probe(cls)

    def call(self, client: Any, request: Any) -> Any:
        """Call a service and spin until its answer."""
        self.assertTrue(
            client.wait_for_service(timeout_sec=TIMEOUT_S), f"{client.srv_name} not available"
        )
        future = client.call_async(request)
        spin_until(self.executor, future.done, TIMEOUT_S)
        self.assertTrue(future.done(), f"no answer from {client.srv_name}")
        return future.result()

    def state(self) -> int:
        """The node's primary state id."""
        return self.call(self.get, GetState.Request()).current_state.id

    def transition(self, transition_id: int) -> None:
        """Take a transition and check it succeeded."""
        self.assertTrue(
            self.call(
                self.change, ChangeState.Request(transition=Transition(id=transition_id))
            ).success
        )

    def test_autostart_active_then_inactive_publishes_nothing_then_active_again(self) -> None:
        publish = lambda: self.publisher.publish(self.msg)  # noqa: E731
        spin_until(self.executor, lambda: self.state() == State.PRIMARY_STATE_ACTIVE, TIMEOUT_S)
        self.assertEqual(
            self.state(), State.PRIMARY_STATE_ACTIVE, "autostart should configure and activate"
        )
        self.assertTrue(
            spin_until(self.executor, lambda: self.masks, TIMEOUT_S, publish),
            "no mask while active",
        )
        self.transition(Transition.TRANSITION_DEACTIVATE)
        self.assertEqual(self.state(), State.PRIMARY_STATE_INACTIVE)
        spin_until(self.executor, lambda: False, 1.0)
        count = len(self.masks)
        spin_until(self.executor, lambda: False, 4.0, publish)
        self.assertEqual(len(self.masks), count, "a mask was published while inactive")
        self.transition(Transition.TRANSITION_ACTIVATE)
        self.assertTrue(
            spin_until(self.executor, lambda: len(self.masks) > count, TIMEOUT_S, publish)
        )
        self.transition(Transition.TRANSITION_DEACTIVATE)
        self.transition(Transition.TRANSITION_CLEANUP)
        self.assertEqual(self.state(), State.PRIMARY_STATE_UNCONFIGURED)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """After the launch is shut down."""

    def test_clean_exit_codes(self, proc_info: Any) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
