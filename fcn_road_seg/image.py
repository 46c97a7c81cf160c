"""sensor_msgs/Image fields <-> numpy, without ROS: zero-copy views in, contiguous arrays out.

Works with any object that has the Image fields (rclpy messages, rosbags messages, test doubles).
Every rejection is an ``ImageError`` whose text says what is wrong with the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import ImageError

#: 8-bit encodings handed to the backend as they are (zero-copy): channels, channel order
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
#: 16 bits -> 8 bits as cv_bridge scales them: round(v * 255 / 65535)
SCALE_16_TO_8 = 255.0 / 65535.0


@dataclass(frozen=True)
class Conversion:
    """How a message encoding becomes an 8-bit ``Frame``, with OpenCV's ``cvtColor`` codes.

    ``channels`` samples of ``depth`` bytes per pixel in each row; 16-bit samples are scaled to
    8 bits first (``SCALE_16_TO_8``), then ``code`` (None: none) makes ``target`` pixels.
    ``planar``: a full-size Y plane and a half-height VU plane (NV21), rows of ``step`` bytes each.
    ``even``: the sides that must be even (4:2:2 and 4:2:0 chroma covers two pixels).
    ``min_side``: the fewest rows and columns ``code`` converts (OpenCV's demosaicing makes a
    frame with a side under 3 all black).
    """

    channels: int
    depth: int
    code: int | None
    target: str = "bgr8"
    planar: bool = False
    even: tuple[str, ...] = ()
    min_side: int = 1


_UYVY = Conversion(2, 1, cv2.COLOR_YUV2BGR_UYVY, even=("width",))
_YUYV = Conversion(2, 1, cv2.COLOR_YUV2BGR_YUY2, even=("width",))
BAYER_MIN_SIDE = 3  # OpenCV's bilinear demosaicing needs a 3x3 neighbourhood
#: sensor_msgs' Bayer names give the colours of the top-left 2x2 cell; OpenCV names its codes by
#: the second row's second and third pixels, so bayer_rggb is OpenCV's BayerBG (as in cv_bridge)
BAYER_CODES = {
    "rggb": cv2.COLOR_BayerBG2BGR,
    "bggr": cv2.COLOR_BayerRG2BGR,
    "gbrg": cv2.COLOR_BayerGR2BGR,
    "grbg": cv2.COLOR_BayerGB2BGR,
}
#: every other camera encoding of sensor_msgs/image_encodings -> its conversion to 8 bits
CONVERSIONS: dict[str, Conversion] = {
    "rgb16": Conversion(3, 2, cv2.COLOR_RGB2BGR),
    "bgr16": Conversion(3, 2, None),
    "rgba16": Conversion(4, 2, cv2.COLOR_RGBA2BGR),
    "bgra16": Conversion(4, 2, cv2.COLOR_BGRA2BGR),
    "mono16": Conversion(1, 2, None, "mono8"),
    "uyvy": _UYVY,
    "yuv422": _UYVY,  # sensor_msgs' older name of uyvy
    "yuyv": _YUYV,
    "yuv422_yuy2": _YUYV,  # sensor_msgs' older name of yuyv
    "nv21": Conversion(1, 1, cv2.COLOR_YUV2BGR_NV21, planar=True, even=("width", "height")),
    **{
        f"bayer_{pattern}{bits}": Conversion(1, bits // 8, code, min_side=BAYER_MIN_SIDE)
        for pattern, code in BAYER_CODES.items()
        for bits in (8, 16)
    },
}
SUPPORTED = (*ENCODINGS, *CONVERSIONS)
#: OpenCV matrix types (16UC1 and 32FC1 depth, ...): no colours to segment
_CV_TYPE = re.compile(r"(8|16|32|64)(U|S|F)C\d*")


@dataclass(frozen=True)
class Frame:
    """An image as H x W x C uint8 pixels (often a view into the message) and its 8-bit encoding.

    ``encoding`` is one of ``ENCODINGS``: other encodings arrive converted to ``bgr8`` or
    ``mono8``.
    """

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


def _unsupported(encoding: str) -> ImageError:
    """The error for an encoding that is no camera picture this package reads."""
    if _CV_TYPE.fullmatch(encoding):
        return ImageError(
            f"encoding '{encoding}' is a depth or plain OpenCV image, not a camera picture; "
            f"supported: {', '.join(SUPPORTED)}"
        )
    return ImageError(f"unsupported encoding '{encoding}'; supported: {', '.join(SUPPORTED)}")


def convert(samples: np.ndarray, encoding: str, bigendian: bool = False) -> Frame:
    """A ``Frame`` of the samples of an encoding of ``CONVERSIONS``, as cv_bridge converts them.

    ``samples``: rows x width x bytes per pixel uint8 (a message's rows; planar NV21: Y rows, then
    VU rows), or rows x width (x channels) uint16. 16-bit samples are read big-endian when
    ``bigendian`` and scaled to 8 bits; OpenCV's ``cvtColor`` then makes ``bgr8`` (mono16:
    ``mono8``) pixels.
    """
    conv = CONVERSIONS[encoding]
    if min(samples.shape[:2]) < conv.min_side:
        raise ImageError(
            f"{encoding} needs at least {conv.min_side} rows and columns to demosaic, got "
            f"{samples.shape[1]}x{samples.shape[0]}"
        )
    if conv.depth == 2:
        if samples.dtype == np.uint8:
            samples = samples.view(">u2" if bigendian else "<u2")
        samples = samples.astype(np.uint16, copy=False)
        if not samples.flags.aligned:  # an odd step: OpenCV would misread the rows
            samples = np.ascontiguousarray(samples)
        samples = cv2.convertScaleAbs(samples, alpha=SCALE_16_TO_8)
    pixels = samples if conv.code is None else cv2.cvtColor(samples, conv.code)
    return Frame(pixels[..., None] if pixels.ndim == 2 else pixels, conv.target)


def _layout(encoding: str) -> tuple[int, int, Conversion | None]:
    """(samples per pixel, bytes per sample, conversion or None for the zero-copy encodings)."""
    if encoding in ENCODINGS:
        return ENCODINGS[encoding][0], 1, None
    conv = CONVERSIONS[encoding]
    return conv.channels, conv.depth, conv


def from_msg(msg: Any) -> Frame:
    """Validate an Image message and return a ``Frame``: a zero-copy view for the 8-bit colour
    and mono encodings, converted pixels for the others (``convert``). Rows of ``step`` bytes."""
    encoding, height, width, step = msg.encoding, int(msg.height), int(msg.width), int(msg.step)
    if min(height, width, step) < 0:
        raise ImageError(
            f"negative field in the message: height {height}, width {width}, step {step}"
        )
    if encoding not in ENCODINGS and encoding not in CONVERSIONS:
        raise _unsupported(encoding)
    if height == 0 or width == 0:
        raise ImageError(f"empty image ({width}x{height})")
    channels, depth, conv = _layout(encoding)
    for side in conv.even if conv else ():
        if {"width": width, "height": height}[side] % 2:
            raise ImageError(f"{encoding} needs an even {side}, got {width}x{height}")
    row_bytes = width * channels * depth
    if step < row_bytes:
        what = "width*channels" + ("*2" if depth == 2 else "")
        raise ImageError(f"step {step} is smaller than {what} = {row_bytes} for {encoding}")
    rows = height * 3 // 2 if conv and conv.planar else height
    buf = _buffer(msg.data)
    if buf.size != step * rows:
        rows_text = (
            f"height*3/2 = {step}*{height}*3/2" if rows != height else f"height = {step}*{height}"
        )
        raise ImageError(f"data length {buf.size} does not match step*{rows_text} = {step * rows}")
    samples = buf.reshape(rows, step)[:, :row_bytes].reshape(rows, width, channels * depth)
    if conv is None:
        return Frame(samples, encoding)
    return convert(samples, encoding, bool(msg.is_bigendian))


def check_size(height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    """ImageError unless each side is at least MIN_SIDE, the aspect ratio at most MAX_ASPECT : 1
    and width x height at most ``max_pixels``."""
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"image of {height}x{width} (HxW) is too small: each side must be at least "
            f"{MIN_SIDE} pixels"
        )
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageError(
            f"image of {height}x{width} (HxW) is too elongated: the longer side may be at most "
            f"{MAX_ASPECT} times the shorter"
        )
    if width * height > max_pixels:
        raise ImageError(
            f"image of {height}x{width} (HxW) = {width * height} pixels is larger than "
            f"max_pixels = {max_pixels}"
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
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        if claimed is None or int(claimed.group(1)) > max_pixels:
            raise ImageError(
                f"compressed image claims more pixels than max_pixels = {max_pixels} ({exc})"
            ) from exc
        raise ImageError(
            f"compressed image claims {claimed.group(1)} pixels, within max_pixels = {max_pixels} "
            f"but more than Pillow reads a header of ({2 * Image.MAX_IMAGE_PIXELS})"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def from_compressed(msg: Any, max_pixels: int | None = MAX_PIXELS) -> Frame:
    """Decode a CompressedImage (JPEG/PNG) into a bgr8 ``Frame``.

    Its size is checked before decoding. A Bayer image that compressed_image_transport stored as
    its raw mosaic (format ``bayer_rggb8; png compressed``) is demosaiced like an Image of that
    encoding; ``compressedDepth`` images are refused.
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise ImageError(
            f"compressedDepth image (format '{fmt}') is a depth image, not a camera picture"
        )
    buf = _buffer(msg.data)
    if max_pixels is not None and buf.size:
        size = compressed_size(buf, max_pixels)
        if size is None:
            raise ImageError(
                f"cannot decode compressed image (format '{fmt}', {buf.size} bytes): "
                "no JPEG/PNG header"
            )
        check_size(*size, max_pixels)
    encoding = fmt.split(";")[0].strip()
    mosaic = encoding.startswith("bayer_") and encoding in CONVERSIONS and "jpeg" not in fmt
    flags = cv2.IMREAD_UNCHANGED if mosaic else cv2.IMREAD_COLOR
    pixels = cv2.imdecode(buf, flags) if buf.size else None
    if pixels is None:
        raise ImageError(f"cannot decode compressed image (format '{fmt}', {buf.size} bytes)")
    if not mosaic:
        return Frame(pixels, "bgr8")
    bits = 8 * CONVERSIONS[encoding].depth
    if pixels.ndim != 2 or pixels.dtype != (np.uint8 if bits == 8 else np.uint16):
        raise ImageError(
            f"compressed {encoding} image (format '{fmt}') decodes to {pixels.dtype} "
            f"{pixels.shape}, not one {bits}-bit mosaic channel"
        )
    return convert(pixels, encoding)


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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp", ".tif", ".tiff")


def read_rgb_folder(folder: str | Path, count: int) -> list[np.ndarray]:
    """``count`` images of ``folder``, evenly spaced in name order, as H x W x 3 uint8 RGB.

    Errors name the file.
    """
    return [
        cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB) for path in image_paths(folder, count)
    ]


def image_paths(folder: str | Path, count: int) -> list[Path]:
    """``count`` image files of ``folder``, evenly spaced in name order; ImageError naming it
    when it is no folder or holds none."""
    if not Path(folder).is_dir():
        raise ImageError(f"{folder} is not a folder of images")
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    paths = paths[:: max(1, len(paths) // max(1, count))][:count]
    if not paths:
        raise ImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths
