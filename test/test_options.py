"""options.py: the one declaration of every option, and what is built from it."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from fcn_road_seg.backends import BackendOptions
from fcn_road_seg.options import (
    GRID,
    OPTIONS,
    RUNTIME,
    SEGMENTER,
    add_arguments,
    backend_options,
    check_setting,
    defaults,
    problems,
)

SEG_YAML = Path(__file__).resolve().parent.parent / "config" / "seg.yaml"


def test_seg_yaml_lists_exactly_the_node_parameters_with_their_defaults() -> None:
    """config/seg.yaml, what users copy, is the node's parameter set, value for value."""
    doc = yaml.safe_load(SEG_YAML.read_text())
    listed = doc["/**/road_segmentation"]["ros__parameters"]
    assert set(listed) == set(OPTIONS)
    for name, value in listed.items():
        assert value == defaults()[name], name
        assert type(value) is type(OPTIONS[name].default), name  # 0.5, not 1; [0, 0], not 0.0


def test_the_run_time_settings_are_the_three_documented_ones() -> None:
    assert RUNTIME == ("threshold", "overlay_alpha", "overlay_color")


@pytest.mark.parametrize(
    "name, value",
    [
        ("threshold", 0.0),
        ("threshold", 1.0),
        ("threshold", 1),
        ("threshold", np.float64(0.3)),
        ("overlay_alpha", 0.5),
        ("overlay_color", [0, 255, 0]),
        ("overlay_color", (1, 2, 3)),
        ("overlay_color", np.array([255, 0, 7])),
    ],
)
def test_check_setting_accepts(name: str, value: object) -> None:
    assert check_setting(name, value) is None


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("threshold", 1.5, "threshold must be a finite number in [0, 1], got 1.5"),
        ("threshold", -0.1, "threshold must be a finite number in [0, 1], got -0.1"),
        ("threshold", math.nan, "threshold must be a finite number in [0, 1], got nan"),
        ("threshold", "0.5", "threshold must be a finite number in [0, 1], got '0.5'"),
        ("threshold", True, "threshold must be a finite number in [0, 1], got True"),
        ("overlay_alpha", 2, "overlay_alpha must be a finite number in [0, 1], got 2"),
        (
            "overlay_color",
            [0, 255],
            "overlay_color must be 3 integers, each in [0, 255], got [0, 255]",
        ),
        (
            "overlay_color",
            [0, 256, 0],
            "overlay_color must be 3 integers, each in [0, 255], got [0, 256, 0]",
        ),
        (
            "overlay_color",
            [0.0, 1.0, 2.0],
            "overlay_color must be 3 integers, each in [0, 255], got [0.0, 1.0, 2.0]",
        ),
        ("overlay_color", "red", "overlay_color must be 3 integers, each in [0, 255], got 'red'"),
        (
            "model_path",
            "x.pt",
            "'model_path' is not a run-time setting "
            "(those are threshold, overlay_alpha, overlay_color)",
        ),
    ],
)
def test_check_setting_rejects_with_the_reason(name: str, value: object, reason: str) -> None:
    assert check_setting(name, value) == reason


@pytest.mark.parametrize(
    "values, reason",
    [
        (
            {"backend": "tensorflow"},
            "backend must be one of auto, tensorrt, torch, onnxruntime, openvino, "
            "got 'tensorflow'",
        ),
        (
            {"precision": "int4"},
            "precision must be one of auto, fp32, fp16, bf16, int8, got 'int4'",
        ),
        (
            {"network_size": "188x"},
            "network_size is not auto, native or HxW (e.g. 188x624)",
        ),
        # int() alone would read these as 1880x624 and 188x624
        (
            {"network_size": "188_0x624"},
            "network_size is not auto, native or HxW (e.g. 188x624)",
        ),
        (
            {"network_size": "188 x 624"},
            "network_size is not auto, native or HxW (e.g. 188x624)",
        ),
        (
            {"network_size": "16x16"},
            "network_size each side must be in [32, 8192]",
        ),
        ({"cpu_threads": True}, "cpu_threads must be an integer in [0, 256], got True"),
        ({"cpu_threads": 1.5}, "cpu_threads must be an integer in [0, 256], got 1.5"),
        (
            {"warmup_size": [375]},
            "warmup_size must be 2 integers, each in [0, 8192], got [375]",
        ),
        (
            {"camera_height": math.inf},
            "camera_height must be a finite number in [0.01, 100] m, got inf",
        ),
        (
            {"grid_x_range": [0.0, 2000.0]},
            "grid_x_range must be 2 finite numbers, each in [-1000, 1000] m, got [0.0, 2000.0]",
        ),
        ({"publish_grid": "yes"}, "publish_grid must be true or false, got 'yes'"),
        ({"device": "xpu"}, "device must be auto, cpu, cuda or cuda:N, got 'xpu'"),
        ({"device": "mps"}, "device must be auto, cpu, cuda or cuda:N, got 'mps'"),
        ({"device": "meta"}, "device must be auto, cpu, cuda or cuda:N, got 'meta'"),
        ({"device": "cpu:3"}, "device must be auto, cpu, cuda or cuda:N, got 'cpu:3'"),
        (
            {"warmup_size": [1, 1]},
            "warmup_size [1, 1]: image of 1x1 (HxW) is too small: each side must be at least 2 "
            "pixels; [0, 0] = no warm-up",
        ),
        (
            {"warmup_size": [0, 5]},
            "warmup_size [0, 5]: image of 0x5 (HxW) is too small: each side must be at least 2 "
            "pixels; [0, 0] = no warm-up",
        ),
        (
            {"warmup_size": [2, 8192]},
            "warmup_size [2, 8192]: image of 2x8192 (HxW) is too elongated: the longer side may "
            "be at most 32 times the shorter; [0, 0] = no warm-up",
        ),
        (
            {"warmup_size": [375, 1242], "max_pixels": 100_000},
            "warmup_size [375, 1242]: image of 375x1242 (HxW) = 465750 pixels is larger than "
            "max_pixels = 100000; [0, 0] = no warm-up",
        ),
        ({"target_frame": 3}, "target_frame must be a string, got 3"),
    ],
)
def test_problems_name_the_option_and_the_rule(values: dict, reason: str) -> None:
    assert problems(values) == [reason]


def test_every_default_is_valid_and_unknown_names_are_not_options() -> None:
    assert problems(defaults()) == []
    assert problems({"not_an_option": object()}) == []


def parser() -> argparse.ArgumentParser:
    """A parser with the tools' flags: the segmenter's and the grid's."""
    p = argparse.ArgumentParser(prog="tool")
    add_arguments(p, (*SEGMENTER, *GRID))
    return p


def test_flags_store_under_the_parameter_names_with_the_same_defaults() -> None:
    """No flags: every value is the node's default, under the node's parameter name."""
    args = vars(parser().parse_args([]))
    assert args == {o.name: defaults()[o.name] for o in (*SEGMENTER, *GRID)}
    assert args["overlay_color"] == [0, 255, 0] and args["grid_y_range"] == [-10.0, 10.0]


def test_flags_with_other_names_reach_their_parameter() -> None:
    args = parser().parse_args(
        "--model m.onnx --compile --threads 3 --rebuild if-stale --workspace-gb 2 --timing-cache "
        "t.cache --overlay-color 1 2 3 --grid-x-range 5 30 --image-rectified".split()
    )
    assert (args.model_path, args.torch_compile, args.cpu_threads) == ("m.onnx", True, 3)
    assert (args.trt_rebuild, args.trt_workspace_gb, args.trt_timing_cache) == (
        "if-stale",
        2.0,
        "t.cache",
    )
    assert args.overlay_color == [1, 2, 3] and args.grid_x_range == [5.0, 30.0]
    assert args.image_rectified is True


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--threshold", "2"], ["--threshold", "must be a finite number in [0, 1], got 2"]),
        (["--threshold", "nan"], ["--threshold", "got nan"]),
        (["--overlay-color", "0", "300", "0"], ["--overlay-color", "got 300"]),
        (["--threads", "two"], ["--threads", "not an integer: 'two'"]),
        (["--network-size", "big"], ["--network-size", "not auto, native or HxW"]),
        (["--backend", "tf"], ["--backend", "invalid choice: 'tf'"]),
        (
            ["--camera-pitch", "2"],
            ["--camera-pitch", "must be a finite number in [-1.5, 1.5] rad, got 2"],
        ),
    ],
)
def test_a_bad_flag_is_an_error_naming_it(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_backend_options_from_values() -> None:
    """The backends' settings come from the option values; onnx_threads stands in for 0."""
    values = {
        **defaults(),
        "precision": "bf16",
        "torch_compile": True,
        "trt_rebuild": "if-stale",
        "trt_workspace_gb": 2,
        "trt_timing_cache": "t.cache",
        "onnx_threads": 2,
    }
    assert backend_options(values) == BackendOptions(
        precision="bf16",
        compile=True,
        threads=2,
        rebuild="if-stale",
        workspace_gb=2.0,
        timing_cache="t.cache",
    )
    assert backend_options({**values, "cpu_threads": 1}).threads == 1
    assert backend_options(defaults()) == BackendOptions()


def test_the_readme_parameter_table_is_the_schema() -> None:
    """README.md's parameter table lists each option once, with its default and run-time flag."""
    readme = (SEG_YAML.parent.parent / "README.md").read_text()
    table = readme[readme.index("| Parameter | Type | Default | Run time | Description |") :]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = (cells[2].strip("`"), cells[3])
    rows.pop("qos_overrides.<topic>.{subscription,publisher}.{reliability,depth,history}")
    assert set(rows) == set(OPTIONS)
    for name, (default, runtime) in rows.items():
        want = OPTIONS[name].default
        shown = {True: "true", False: "false"}.get(want, want) if isinstance(want, bool) else want
        assert default == ('""' if want == "" else str(shown)), name
        assert runtime == ("yes" if name in RUNTIME else "no"), name


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_the_devices_this_package_runs_on_pass(device: str) -> None:
    assert problems({"device": device}) == []


@pytest.mark.parametrize("size", [[0, 0], [2, 64], [375, 1242], [4096, 4096]])
def test_warmup_sizes_of_frames_the_node_accepts_pass(size: list[int]) -> None:
    assert problems({"warmup_size": size}) == []
