"""Ranges of the numeric options, shared by the node's parameters and the tools' flags.

Each ``Bounds`` is the one check of its options: ``check`` for parameter values and callers
(an ``OptionError`` naming the option), ``parse`` as an argparse ``type`` (argparse names the
flag), and the node's ``FloatingPointRange`` descriptors are built from the same limits. Values
must be finite numbers: inf and NaN never reach a video writer or a homography.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import OptionError


@dataclass(frozen=True)
class Bounds:
    """A closed range [low, high] of finite numbers, with the unit for messages."""

    low: float
    high: float
    unit: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range (``must be ..., got ...``), None when it is fine."""
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        )
        if number and math.isfinite(value) and self.low <= value <= self.high:
            return None
        unit = f" {self.unit}" if self.unit else ""
        return f"must be a finite number in [{self.low:g}, {self.high:g}]{unit}, got {value!r}"

    def check(self, name: str, value: Any) -> float:
        """``value`` as a float; OptionError naming ``name`` when it is out of range."""
        reason = self.problem(value)
        if reason:
            raise OptionError(f"{name} {reason}")
        return float(value)

    def parse(self, text: str) -> float:
        """argparse ``type``: the number in ``text``, in range (argparse names the flag)."""
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        reason = self.problem(value)
        if reason:
            raise argparse.ArgumentTypeError(reason)
        return value


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low`` (argparse names the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def check_range(parser: argparse.ArgumentParser, flag: str, pair: Any) -> None:
    """``parser.error`` naming ``flag`` when its ``MIN MAX`` pair has MIN > MAX."""
    if pair is not None and pair[0] > pair[1]:
        parser.error(f"argument {flag}: MIN must not exceed MAX, got {pair[0]:g} {pair[1]:g}")


#: camera height over the ground without tf (the node's camera_height, --camera-height)
CAMERA_HEIGHT = Bounds(0.01, 100.0, "m")
#: camera pitch and roll without tf
CAMERA_ANGLE = Bounds(-1.5, 1.5, "rad")
#: grid cell size
GRID_RESOLUTION = Bounds(0.01, 10.0, "m")
#: each end of the grid's x and y ranges
GRID_EXTENT = Bounds(-1000.0, 1000.0, "m")
#: frame rates: overlay videos (an infinite one hangs OpenCV's writer) and synthetic bag stamps
FPS = Bounds(0.1, 1000.0, "Hz")
#: TensorRT builder workspace
WORKSPACE_GB = Bounds(0.25, 1024.0, "GiB")
#: the share of each category held out for validation by a seeded split
VAL_FRACTION = Bounds(0.0, 0.99)
#: probabilities of an augmentation, and dropout (1 would zero every activation)
PROBABILITY = Bounds(0.0, 1.0)
DROPOUT = Bounds(0.0, 0.99)
#: optimiser settings: learning rate, weight decay, warmup length (epochs) and start factor,
#: the weight average's horizon (epochs, 0 = off)
LEARNING_RATE = Bounds(0.0, 1.0)
WEIGHT_DECAY = Bounds(0.0, 1.0)
WARMUP_EPOCHS = Bounds(0.0, 1000.0)
WARMUP_FACTOR = Bounds(0.0, 1.0)
EMA_EPOCHS = Bounds(0.0, 1000.0)
#: random scale and width/height factors of the training augmentation
SCALE_FACTOR = Bounds(0.05, 20.0)
#: colour jitter strengths: brightness, contrast and saturation; hue (torchvision's limit)
JITTER = Bounds(0.0, 10.0)
HUE_JITTER = Bounds(0.0, 0.5)
