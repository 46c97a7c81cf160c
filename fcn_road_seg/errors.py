"""The few exception types every layer raises; callers log them and carry on or stop cleanly."""


class RoadSegError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(RoadSegError, ValueError):
    """An image (message or array) that cannot be segmented; the text says why."""


class ModelError(RoadSegError):
    """A model, weights file or engine that is missing or incompatible; the text names the file."""


class DataError(RoadSegError):
    """Bad data in a file (dataset image, ground truth, bag); the text names the path."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc``; for an error re-raised from a DataLoader worker, only the original message."""
    text = str(exc).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    name = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last[len(name):] if last.startswith(name) else last.split(": ", 1)[-1]
