"""Road segmentation: the road_segmentation node, and optionally RViz and a looping bag.

    ros2 launch fcn_road_seg seg.launch.py [model_path:=...] [image_topic:=...] [params_file:=...]
        [use_rviz:=true] [bag:=/path/to/bag] [namespace:=...]
"""
from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fcn_road_seg"
DEFAULT_IMAGE_TOPIC = "/kitti/camera_color_left/image_raw"


def _road_seg_node(context: LaunchContext) -> list[Node]:
    """The node; the model_path argument overrides the params file only when it is given."""
    model_path = LaunchConfiguration("model_path").perform(context)
    image_topic = LaunchConfiguration("image_topic").perform(context)
    overrides = [{"model_path": model_path}] if model_path else []
    return [Node(package=PACKAGE, executable="road_seg_node", name="road_segmentation",
                 namespace=LaunchConfiguration("namespace"),
                 parameters=[LaunchConfiguration("params_file"), *overrides],
                 remappings=[("image", image_topic), ("image/compressed", f"{image_topic}/compressed")],
                 output="screen", emulate_tty=True)]


def generate_launch_description() -> LaunchDescription:
    """Arguments, the node, RViz when use_rviz is true, and `ros2 bag play --loop` when bag is set."""
    share = FindPackageShare(PACKAGE)
    bag = LaunchConfiguration("bag")
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value="",
                              description="Model file (.pt, .onnx, .engine); empty: params_file's model_path "
                                          "(empty there too: the model shipped in the package)"),
        DeclareLaunchArgument("image_topic", default_value=DEFAULT_IMAGE_TOPIC,
                              description="Camera topic remapped onto the node's 'image' (and "
                                          "'<image_topic>/compressed' onto 'image/compressed')"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "seg.yaml"]),
                              description="Node parameters (YAML)"),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="Start RViz with config/seg.rviz (input, mask and overlay)"),
        DeclareLaunchArgument("bag", default_value="",
                              description="rosbag2 to play in a loop (e.g. made by kitti2bag); empty: none"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
        OpaqueFunction(function=_road_seg_node),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", PathJoinSubstitution([share, "config", "seg.rviz"])],
             condition=IfCondition(LaunchConfiguration("use_rviz"))),
        ExecuteProcess(cmd=["ros2", "bag", "play", "--loop", bag], output="screen",
                       condition=IfCondition(PythonExpression(["'", bag, "' != ''"]))),
    ])
