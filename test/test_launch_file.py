"""seg.launch.py's own logic, without launching: the RViz topics follow the arguments.

Skipped without launch_ros.
"""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("launch_ros")

from conftest import ROOT  # noqa: E402


def load_launch_file():
    """launch/seg.launch.py as a module."""
    spec = importlib.util.spec_from_file_location("seg_launch", ROOT / "launch" / "seg.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rviz_topics_follow_the_namespace_and_the_image_topic() -> None:
    text = (ROOT / "config" / "seg.rviz").read_text()
    config = load_launch_file().rviz_config(text, "/cam/front/image_rect", "/car1/")
    for topic in (
        "/cam/front/image_rect",
        "/car1/road_seg/mask",
        "/car1/road_seg/overlay",
        "/car1/road_seg/grid",
    ):
        assert f"Value: {topic}\n" in config, topic
    assert "/kitti/" not in config and "Value: /road_seg/" not in config
    assert load_launch_file().rviz_config(text, "/kitti/camera_color_left/image_raw", "") == text


def test_the_launch_description_declares_the_lifecycle_arguments() -> None:
    names = {
        a.name for a in load_launch_file().generate_launch_description().get_launch_arguments()
    }
    assert {
        "lifecycle",
        "autostart",
        "camera_info_topic",
        "namespace",
        "image_topic",
        "use_rviz",
    } <= names
