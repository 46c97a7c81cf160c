"""The managed (lifecycle) variant of the road_segmentation node: same parameters, core and topics.

configure  -> load and warm up the model, create the (lifecycle) publishers
activate   -> subscribe, start the worker; outputs are published
deactivate -> unsubscribe, stop the worker; the model stays loaded, nothing is published
cleanup    -> destroy the publishers, release the model
shutdown   -> all of the above, from any state
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ..errors import RoadSegError
from .node import NODE_NAME, RoadSeg, declare_parameters, spin


class RoadSegLifecycleNode(RoadSeg, LifecycleNode):
    """``RoadSegNode`` as a lifecycle node; parameters are declared and checked at construction."""

    def __init__(self, **kwargs: Any) -> None:
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self._reset()
        self._params = declare_parameters(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and warm up the model and create the publishers.

        All or nothing: FAILURE (logged), with nothing kept, when the model cannot load or a
        parameter (grid, camera mount, QoS override) is bad.
        """
        try:
            loaded = self._load()
            self._open(self.create_lifecycle_publisher, self.destroy_lifecycle_publisher)
        except (RoadSegError, ValueError) as exc:
            self._release_all()
            self.get_logger().error(f"cannot configure: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: {loaded}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start segmenting; the lifecycle publishers are enabled.

        FAILURE on a bad QoS override.
        """
        try:
            self._start()
        except ValueError as exc:
            self.get_logger().error(f"cannot activate: {exc}")
            return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop segmenting and publishing; the model stays loaded."""
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers and release the model (and its GPU memory)."""
        self._release_all()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and release whatever the current state holds."""
        self._release_all()
        return TransitionCallbackReturn.SUCCESS

    def _release_all(self) -> None:
        """``_release`` with the lifecycle publisher's destructor (the model's memory too)."""
        self._release(self.destroy_lifecycle_publisher)

    def destroy_node(self) -> None:
        """Stop the worker if active, release everything, then destroy the node."""
        self._release_all()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the lifecycle node.

    It stays unconfigured until a manager or ``ros2 lifecycle set`` configures it.
    """
    return spin(RoadSegLifecycleNode, args)


if __name__ == "__main__":
    sys.exit(main())
