"""image.py: Image/CompressedImage (rosbags classes) to Frames and back, and every rejection."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from fcn_road_seg import image
from fcn_road_seg.errors import ImageError

from conftest import png_claiming, rosbags_header, rosbags_image

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
Image, CompressedImage = TYPES["sensor_msgs/msg/Image"], TYPES["sensor_msgs/msg/CompressedImage"]
CHANNELS = {"bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4, "mono8": 1}


def pixels_for(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    """Distinct pixel values for ``encoding``'s channel count."""
    return (
        (np.arange(h * w * CHANNELS[encoding]) % 251)
        .astype(np.uint8)
        .reshape(h, w, CHANNELS[encoding])
    )


@pytest.mark.parametrize("encoding", list(CHANNELS))
@pytest.mark.parametrize("pad", [0, 3])
def test_from_msg_is_a_view_of_the_pixels(encoding: str, pad: int) -> None:
    pixels = pixels_for(encoding)
    msg = rosbags_image(pixels, encoding, pad)
    frame = image.from_msg(msg)
    assert frame.encoding == encoding
    assert frame.shape == (5, 7)
    np.testing.assert_array_equal(frame.pixels, pixels)
    assert np.shares_memory(frame.pixels, msg.data)


@pytest.mark.parametrize(
    "encoding, order",
    [("bgr8", "bgr"), ("bgra8", "bgr"), ("rgb8", "rgb"), ("rgba8", "rgb"), ("mono8", "mono")],
)
def test_channel_order(encoding: str, order: str) -> None:
    assert image.from_msg(rosbags_image(pixels_for(encoding), encoding)).order == order


@pytest.mark.parametrize("data", [bytes(range(6)), list(range(6)), np.arange(6, dtype=np.uint8)])
def test_from_msg_accepts_any_data_container(data) -> None:
    msg = rosbags_image(np.zeros((2, 1, 3), np.uint8), "rgb8", data=data)
    np.testing.assert_array_equal(image.from_msg(msg).pixels.reshape(-1), np.arange(6))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"encoding": "yuv422"},
            "unsupported encoding 'yuv422'; supported: rgb8, bgr8, rgba8, bgra8, mono8",
        ),
        (
            {"encoding": "mono16", "is_bigendian": 1},
            "big-endian 16-bit image (mono16) is not supported; "
            "supported encodings: rgb8, bgr8, rgba8, bgra8, mono8",
        ),
        (
            {"encoding": "16UC1", "is_bigendian": 0},
            "unsupported encoding '16UC1'; supported: rgb8, bgr8, rgba8, bgra8, mono8",
        ),
        ({"height": 0, "data": np.zeros(0, np.uint8)}, "empty image (7x0)"),
        ({"width": 0}, "empty image (0x5)"),
        ({"step": 20}, "step 20 is smaller than width*channels = 21 for bgr8"),
        ({"step": 22}, "data length 105 does not match step*height = 22*5 = 110"),
        (
            {"data": np.zeros(104, np.uint8)},
            "data length 104 does not match step*height = 21*5 = 105",
        ),
    ],
)
def test_from_msg_rejects_with_the_reason(overrides: dict, message: str) -> None:
    with pytest.raises(ImageError) as err:
        image.from_msg(rosbags_image(pixels_for("bgr8"), **{"encoding": "bgr8", **overrides}))
    assert str(err.value) == message


def test_from_compressed_png_is_lossless_bgr8() -> None:
    pixels = pixels_for("bgr8", 9, 11)
    msg = CompressedImage(
        header=rosbags_header(),
        format="png",
        data=np.frombuffer(cv2.imencode(".png", pixels)[1], np.uint8),
    )
    frame = image.from_compressed(msg)
    assert frame.encoding == "bgr8"
    np.testing.assert_array_equal(frame.pixels, pixels)


def test_from_compressed_jpeg_decodes_like_opencv() -> None:
    pixels = pixels_for("bgr8", 16, 16)
    data = np.frombuffer(cv2.imencode(".jpg", pixels)[1], np.uint8)
    frame = image.from_compressed(
        CompressedImage(header=rosbags_header(), format="jpeg", data=data)
    )
    np.testing.assert_array_equal(frame.pixels, cv2.imdecode(data, cv2.IMREAD_COLOR))


@pytest.mark.parametrize(
    "data, size", [(np.zeros(0, np.uint8), 0), (np.arange(10, dtype=np.uint8), 10)]
)
def test_from_compressed_rejects_undecodable_data(data: np.ndarray, size: int) -> None:
    with pytest.raises(
        ImageError, match=rf"cannot decode compressed image \(format 'jpeg', {size} bytes\)"
    ):
        image.from_compressed(CompressedImage(header=rosbags_header(), format="jpeg", data=data))


@pytest.mark.parametrize("encoding", list(CHANNELS))
def test_to_fields_round_trip(encoding: str) -> None:
    pixels = pixels_for(encoding)
    fields = image.to_fields(pixels[::-1], encoding)  # a non-contiguous view comes out contiguous
    assert {k: fields[k] for k in ("height", "width", "encoding", "is_bigendian", "step")} == {
        "height": 5,
        "width": 7,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": 7 * CHANNELS[encoding],
    }
    assert fields["data"].dtype == np.uint8 and fields["data"].shape == (
        5 * 7 * CHANNELS[encoding],
    )
    np.testing.assert_array_equal(
        image.from_msg(Image(header=rosbags_header(), **fields)).pixels, pixels[::-1]
    )


def test_to_fields_of_a_two_dimensional_mask_is_mono8_sized() -> None:
    fields = image.to_fields(np.zeros((4, 6), np.uint8), "mono8")
    assert (fields["height"], fields["width"], fields["step"], fields["data"].size) == (
        4,
        6,
        6,
        24,
    )


@pytest.mark.parametrize(
    "pixels, encoding, message",
    [
        (np.zeros((2, 2, 3), np.uint8), "yuv422", "unsupported encoding 'yuv422'"),
        (
            np.zeros((2, 2, 3), np.uint16),
            "bgr8",
            r"expected a non-empty uint8 H x W x 3 array for bgr8, got uint16 \(2, 2, 3\)",
        ),
        (np.zeros((2, 2, 4), np.uint8), "bgr8", r"got uint8 \(2, 2, 4\)"),
        (np.zeros((0, 2), np.uint8), "mono8", r"got uint8 \(0, 2, 1\)"),
    ],
)
def test_from_array_rejects_with_the_reason(
    pixels: np.ndarray, encoding: str, message: str
) -> None:
    with pytest.raises(ImageError, match=message):
        image.from_array(pixels, encoding)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"height": -5}, "negative field in the message: height -5"),
        ({"step": -21}, "negative field in the message: height 5, width 7, step -21"),
    ],
)
def test_negative_fields_are_rejected(fields: dict, message: str) -> None:
    msg = rosbags_image(pixels_for("rgb8"), "rgb8")
    for k, v in fields.items():
        setattr(msg, k, v)
    with pytest.raises(ImageError, match=message):
        image.from_msg(msg)


@pytest.mark.parametrize(
    "h, w, message",
    [
        (1, 100000, "image of 100000x1 is too small: each side must be at least 2 pixels"),
        (
            20,
            100000,
            "image of 100000x20 is too elongated: "
            "the longer side may be at most 32 times the shorter",
        ),
        (5000, 4000, "image of 4000x5000 = 20000000 pixels is larger than max_pixels = 16777216"),
    ],
)
def test_size_limits(h: int, w: int, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        image.check_size(h, w)
    image.check_size(2, 2)
    image.check_size(4096, 4096)
    image.check_size(32, 1024)


def test_a_tiny_jpeg_claiming_a_huge_size_is_refused_before_decoding() -> None:
    """A JPEG header that claims 30000x30000: rejected from the header alone.

    Decoding it would take > 2 GB.
    """
    ok, jpeg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(jpeg.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # height, width in the SOF0 segment
    msg = SimpleNamespace(format="jpeg", data=np.frombuffer(bytes(data), np.uint8))
    assert len(data) < 1000
    with pytest.raises(ImageError, match="claims more pixels than max_pixels = 16777216"):
        image.from_compressed(msg)
    data[sof + 5 : sof + 9] = (5000).to_bytes(
        2, "big"
    ) * 2  # 25 MP: Pillow lets it through, max_pixels does not
    with pytest.raises(
        ImageError, match="image of 5000x5000 = 25000000 pixels is larger than max_pixels"
    ):
        image.from_compressed(
            SimpleNamespace(format="jpeg", data=np.frombuffer(bytes(data), np.uint8))
        )
    with pytest.raises(ImageError, match="no JPEG/PNG header"):
        image.from_compressed(SimpleNamespace(format="jpeg", data=np.arange(50, dtype=np.uint8)))


def test_read_image_returns_the_files_pixels(tmp_path: Path) -> None:
    pixels = pixels_for("bgr8", 6, 9)
    assert cv2.imwrite(str(tmp_path / "a.png"), pixels)
    np.testing.assert_array_equal(image.read_image(tmp_path / "a.png"), pixels)


def test_read_image_refuses_a_header_over_max_pixels_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_claiming(5000, 4000))
    with pytest.raises(
        ImageError, match=f"cannot read image {path}: its header claims 5000x4000, more than "
    ):
        image.read_image(path, max_pixels=4096 * 4096)


def test_read_image_names_a_file_that_is_no_image(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match=r"cannot read image .*x.jpg \(0 bytes\)"):
        image.read_image(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="cannot read image .*none.png: No such file"):
        image.read_image(tmp_path / "none.png")
