"""Launch the road_segmentation node (plain or lifecycle), and optionally RViz and a looping bag.

ros2 launch fcn_road_seg seg.launch.py [model_path:=...] [image_topic:=...]
    [camera_info_topic:=...] [params_file:=...] [namespace:=...]
    [lifecycle:=true [autostart:=false]] [use_rviz:=true] [bag:=/path/to/bag]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.conditions import IfCondition, evaluate_condition_expression
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

PACKAGE = "fcn_road_seg"
NODE_NAME = "road_segmentation"
DEFAULT_IMAGE_TOPIC = "/kitti/camera_color_left/image_raw"
RVIZ_TOPICS = {"/kitti/camera_color_left/image_raw": "{image}", "/road_seg/": "{ns}/road_seg/"}


def _arg(context: LaunchContext, name: str) -> str:
    """The value of launch argument ``name``."""
    return LaunchConfiguration(name).perform(context)


def _is_true(context: LaunchContext, name: str) -> bool:
    """Launch argument ``name`` as a condition (true/false/1/0), as IfCondition reads it."""
    return evaluate_condition_expression(context, [LaunchConfiguration(name)])


def _transition(node: LifecycleNode, transition_id: int) -> EmitEvent:
    """An event asking ``node`` to take a lifecycle transition."""
    return EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id)
    )


def _road_seg_node(context: LaunchContext) -> list:
    """The node; model_path overrides the params file only when given.

    Lifecycle: configured and activated at start when autostart is true (else left to a lifecycle
    manager).
    """
    model_path, image_topic = _arg(context, "model_path"), _arg(context, "image_topic")
    info_topic = (
        _arg(context, "camera_info_topic") or f"{image_topic.rsplit('/', 1)[0]}/camera_info"
    )
    overrides = [{"model_path": model_path}] if model_path else []
    common = dict(
        package=PACKAGE,
        name=NODE_NAME,
        namespace=_arg(context, "namespace"),
        parameters=[_arg(context, "params_file"), *overrides],
        remappings=[
            ("image", image_topic),
            ("image/compressed", f"{image_topic}/compressed"),
            ("camera_info", info_topic),
        ],
        output="screen",
        emulate_tty=True,
    )
    if not _is_true(context, "lifecycle"):
        return [Node(executable="road_seg_node", **common)]
    node = LifecycleNode(executable="road_seg_lifecycle_node", **common)
    if not _is_true(context, "autostart"):
        return [node]
    activate = OnStateTransition(
        target_lifecycle_node=node,
        start_state="configuring",
        goal_state="inactive",
        entities=[_transition(node, Transition.TRANSITION_ACTIVATE)],
    )
    return [
        node,
        RegisterEventHandler(activate),
        _transition(node, Transition.TRANSITION_CONFIGURE),
    ]


def rviz_config(text: str, image_topic: str, namespace: str) -> str:
    """config/seg.rviz with the camera display on ``image_topic``, outputs under ``namespace``."""
    namespace = namespace.strip("/")
    for old, new in RVIZ_TOPICS.items():
        text = text.replace(
            old, new.format(image=image_topic, ns=f"/{namespace}" if namespace else "")
        )
    return text


def _rviz(context: LaunchContext) -> list[Node]:
    """RViz with config/seg.rviz, its topics moved to the image topic and the node's namespace."""
    source = Path(FindPackageShare(PACKAGE).perform(context)) / "config" / "seg.rviz"
    text = rviz_config(
        source.read_text(), _arg(context, "image_topic"), _arg(context, "namespace")
    )
    with tempfile.NamedTemporaryFile(
        "w", prefix="fcn_road_seg_", suffix=".rviz", delete=False
    ) as config:
        config.write(text)
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            output="screen",
            arguments=["-d", config.name],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """Arguments, the node, RViz if use_rviz is true, and `ros2 bag play --loop` if bag is set."""
    share = FindPackageShare(PACKAGE)
    bag = LaunchConfiguration("bag")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "model_path",
                default_value="",
                description="Model file (.pt, .onnx, .engine); empty: params_file's model_path "
                "(empty there too: the model shipped in the package)",
            ),
            DeclareLaunchArgument(
                "image_topic",
                default_value=DEFAULT_IMAGE_TOPIC,
                description="Camera topic remapped onto the node's 'image' (and "
                "'<image_topic>/compressed' onto 'image/compressed')",
            ),
            DeclareLaunchArgument(
                "camera_info_topic",
                default_value="",
                description="CameraInfo topic for road_seg/grid; empty: camera_info next to "
                "image_topic",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "seg.yaml"]),
                description="Node parameters (YAML)",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of the node and its topics"
            ),
            DeclareLaunchArgument(
                "lifecycle",
                default_value="false",
                description="Start the managed (lifecycle) node instead of the plain one",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="With lifecycle: configure and activate it at start; false leaves "
                "that to a lifecycle manager",
            ),
            DeclareLaunchArgument(
                "use_rviz",
                default_value="false",
                description="Start RViz with config/seg.rviz (input, mask, overlay and grid)",
            ),
            DeclareLaunchArgument(
                "bag",
                default_value="",
                description="rosbag2 to play in a loop (e.g. made by kitti2bag); empty: none",
            ),
            OpaqueFunction(function=_road_seg_node),
            OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("use_rviz"))),
            ExecuteProcess(
                cmd=["ros2", "bag", "play", "--loop", bag],
                output="screen",
                condition=IfCondition(PythonExpression(["'", bag, "' != ''"])),
            ),
        ]
    )
