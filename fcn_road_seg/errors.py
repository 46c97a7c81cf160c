"""The few exception types every layer raises, and how the command-line tools report them.

The tools report them through ``run_cli``.
"""

import sys
from typing import Any, Callable


class RoadSegError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(RoadSegError, ValueError):
    """An image (message or array) that cannot be segmented; the text says why."""


class ModelError(RoadSegError):
    """A model, weights file or engine that is missing or incompatible; the text names the file."""


class DataError(RoadSegError):
    """Bad data in a file (dataset image, ground truth, bag); the text names the path."""


class OptionError(RoadSegError, ValueError):
    """A bad option or parameter value; the text names the option."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc``.

    For an error re-raised from a DataLoader worker, only the original message.
    """
    text = str(exc).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    name = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last[len(name) :] if last.startswith(name) else last.split(": ", 1)[-1]


def run_cli(func: Callable[[Any], Any], args: Any) -> int:
    """Run a tool's body; errors and Ctrl-C become one clear line on stderr and an exit status."""
    try:
        func(args)
    except RoadSegError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130
    return 0
