"""sensor_msgs/Image fields <-> numpy, without ROS: zero-copy views in, contiguous arrays out.

Works with any object that has the Image fields (rclpy messages, rosbags messages, test doubles).
Every rejection is an ``ImageError`` whose text says what is wrong with the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import ImageError

#: encoding -> (channels, channel order handed to the backend)
ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "rgb"),
    "bgr8": (3, "bgr"),
    "rgba8": (4, "rgb"),
    "bgra8": (4, "bgr"),
    "mono8": (1, "mono"),
}
MAX_PIXELS = 4096 * 4096  # default limit on width x height (a 631-byte JPEG can claim 30000x30000)
MIN_SIDE = 2  # a 1-pixel line is no camera image
MAX_ASPECT = (
    32  # the network pads each side to a multiple of 32: a 1 x 100000 frame would cost gigabytes
)
_SIXTEEN_BIT = ("mono16", "rgb16", "bgr16", "rgba16", "bgra16", "16UC1", "16UC3", "16SC1")


@dataclass(frozen=True)
class Frame:
    """An image as H x W x C uint8 pixels (often a view into the message) and its ROS encoding."""

    pixels: np.ndarray
    encoding: str

    @property
    def order(self) -> str:
        """Channel order of the first three channels: ``rgb``, ``bgr`` or ``mono``."""
        return ENCODINGS[self.encoding][1]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.pixels.shape[0], self.pixels.shape[1]


def _buffer(data: Any) -> np.ndarray:
    """A flat uint8 view over a message's ``data`` (array.array, bytes, numpy, or a list)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8)


def from_msg(msg: Any) -> Frame:
    """Validate an Image message and return a zero-copy ``Frame`` over its data."""
    encoding, height, width, step = msg.encoding, int(msg.height), int(msg.width), int(msg.step)
    if min(height, width, step) < 0:
        raise ImageError(
            f"negative field in the message: height {height}, width {width}, step {step}"
        )
    if encoding not in ENCODINGS:
        if encoding in _SIXTEEN_BIT and msg.is_bigendian:
            raise ImageError(
                f"big-endian 16-bit image ({encoding}) is not supported; "
                f"supported encodings: {', '.join(ENCODINGS)}"
            )
        raise ImageError(f"unsupported encoding '{encoding}'; supported: {', '.join(ENCODINGS)}")
    if height == 0 or width == 0:
        raise ImageError(f"empty image ({width}x{height})")
    channels = ENCODINGS[encoding][0]
    if step < width * channels:
        raise ImageError(
            f"step {step} is smaller than width*channels = {width * channels} for {encoding}"
        )
    buf = _buffer(msg.data)
    if buf.size != step * height:
        raise ImageError(
            f"data length {buf.size} does not match "
            f"step*height = {step}*{height} = {step * height}"
        )
    pixels = buf.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    return Frame(pixels, encoding)


def check_size(height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    """ImageError unless each side is at least MIN_SIDE, the aspect ratio at most MAX_ASPECT : 1
    and width x height at most ``max_pixels``."""
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"image of {width}x{height} is too small: each side must be at least {MIN_SIDE} pixels"
        )
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageError(
            f"image of {width}x{height} is too elongated: the longer side may be at most "
            f"{MAX_ASPECT} times the shorter"
        )
    if width * height > max_pixels:
        raise ImageError(
            f"image of {width}x{height} = {width * height} pixels is larger than max_pixels = "
            f"{max_pixels}"
        )


def compressed_size(buf: np.ndarray, max_pixels: int) -> tuple[int, int] | None:
    """(height, width) from a JPEG/PNG header without decoding the pixels.

    Pillow reads the header only. None when there is no readable header; ImageError for sizes even
    Pillow calls a decompression bomb.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(buf.tobytes())) as im:
            return im.height, im.width
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"compressed image claims more pixels than max_pixels = {max_pixels} ({exc})"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def from_compressed(msg: Any, max_pixels: int | None = MAX_PIXELS) -> Frame:
    """Decode a CompressedImage (JPEG/PNG) into a bgr8 ``Frame``.

    Its size is checked before decoding.
    """
    buf = _buffer(msg.data)
    if max_pixels is not None and buf.size:
        size = compressed_size(buf, max_pixels)
        if size is None:
            raise ImageError(
                f"cannot decode compressed image (format '{msg.format}', {buf.size} bytes): "
                "no JPEG/PNG header"
            )
        check_size(*size, max_pixels)
    pixels = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if pixels is None:
        raise ImageError(
            f"cannot decode compressed image (format '{msg.format}', {buf.size} bytes)"
        )
    return Frame(pixels, "bgr8")


def from_array(pixels: np.ndarray, encoding: str) -> Frame:
    """A ``Frame`` over a numpy image (H x W, or H x W x C matching ``encoding``)."""
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported encoding '{encoding}'; supported: {', '.join(ENCODINGS)}")
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    channels = ENCODINGS[encoding][0]
    if (
        pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != channels
        or 0 in pixels.shape
    ):
        raise ImageError(
            f"expected a non-empty uint8 H x W x {channels} array for {encoding}, "
            f"got {pixels.dtype} {pixels.shape}"
        )
    return Frame(pixels, encoding)


def to_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """Image message fields (all but header) for H x W or H x W x C uint8 pixels.

    ``data`` is a flat array.
    """
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": pixels.strides[0],
        "data": pixels.reshape(-1),
    }


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The BGR pixels of an image file; its header's size is checked before decoding.

    ImageError naming the file when it cannot be read, or claims more than ``max_pixels`` (a
    74-byte PNG can claim 60000x60000).
    """
    try:
        buf = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror}") from exc
    try:
        size = compressed_size(buf, max_pixels) if buf.size else None
    except ImageError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(
            f"cannot read image {path}: its header claims {size[1]}x{size[0]}, more than "
            f"max_pixels = {max_pixels}"
        )
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    except cv2.error as exc:
        raise ImageError(f"cannot read image {path}: {exc.err}") from exc
    if bgr is None:
        raise ImageError(f"cannot read image {path}{' (0 bytes)' if not buf.size else ''}")
    return bgr


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")


def read_rgb_folder(folder: str | Path, count: int) -> list[np.ndarray]:
    """``count`` images of ``folder``, evenly spaced in name order, as H x W x 3 uint8 RGB.

    Errors name the file.
    """
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    paths = paths[:: max(1, len(paths) // max(1, count))][:count]
    if not paths:
        raise ImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return [cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB) for path in paths]
