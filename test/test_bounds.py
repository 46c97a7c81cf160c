"""bounds.py: the one range check of the numeric options, for parameters and flags."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from fcn_road_seg.bounds import FPS, Bounds
from fcn_road_seg.errors import OptionError

HEIGHT = Bounds(0.01, 100.0, "m")


@pytest.mark.parametrize("value", [0.01, 1.65, 100, np.float32(2.5), np.int64(3)])
def test_values_in_range_pass_as_floats(value) -> None:
    assert HEIGHT.problem(value) is None
    assert HEIGHT.check("camera_height", value) == float(value)


@pytest.mark.parametrize(
    "value", [0.0, -1.65, 100.5, float("nan"), float("inf"), -float("inf"), True, "1.0", None]
)
def test_values_out_of_range_are_named(value) -> None:
    with pytest.raises(OptionError) as info:
        HEIGHT.check("camera_height", value)
    assert str(info.value) == (
        f"camera_height must be a finite number in [0.01, 100] m, got {value!r}"
    )


def test_as_an_argparse_type_the_flag_is_named(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--fps", type=FPS.parse)
    assert parser.parse_args(["--fps", "25"]).fps == 25.0
    for text, words in [
        ("inf", "must be a finite number in [0.1, 1000] Hz, got inf"),
        ("1e30", "must be a finite number in [0.1, 1000] Hz, got 1e+30"),
        ("fast", "not a number: 'fast'"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args(["--fps", text])
        assert f"tool: error: argument --fps: {words}" in capsys.readouterr().err
