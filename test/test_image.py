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

from conftest import (
    BAYER,
    CONVERTED,
    encode,
    encoded_image,
    kitti_frame,
    mosaic,
    png_claiming,
    rosbags_header,
    rosbags_image,
)

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
Image, CompressedImage = TYPES["sensor_msgs/msg/Image"], TYPES["sensor_msgs/msg/CompressedImage"]
CHANNELS = {"bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4, "mono8": 1}
SUPPORTED_TEXT = (
    "rgb8, bgr8, rgba8, bgra8, mono8, rgb16, bgr16, rgba16, bgra16, mono16, uyvy, yuv422, yuyv, "
    "yuv422_yuy2, nv21, bayer_rggb8, bayer_rggb16, bayer_bggr8, bayer_bggr16, bayer_gbrg8, "
    "bayer_gbrg16, bayer_grbg8, bayer_grbg16"
)


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
            {"encoding": "yuv420"},
            f"unsupported encoding 'yuv420'; supported: {SUPPORTED_TEXT}",
        ),
        (
            {"encoding": "16UC1"},
            "encoding '16UC1' is a depth or plain OpenCV image, not a camera picture; "
            f"supported: {SUPPORTED_TEXT}",
        ),
        ({"encoding": "32FC1"}, "encoding '32FC1' is a depth or plain OpenCV image"),
        ({"encoding": "8UC3"}, "encoding '8UC3' is a depth or plain OpenCV image"),
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
    assert str(err.value).startswith(message)


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
        (
            1,
            100000,
            "image of 1x100000 \\(HxW\\) is too small: each side must be at least 2 pixels",
        ),
        (
            20,
            100000,
            "image of 20x100000 \\(HxW\\) is too elongated: "
            "the longer side may be at most 32 times the shorter",
        ),
        (
            5000,
            4000,
            "image of 5000x4000 \\(HxW\\) = 20000000 pixels is larger than max_pixels = 16777216",
        ),
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
    # 25 MP: Pillow lets it through, max_pixels does not
    data[sof + 5 : sof + 9] = (5000).to_bytes(2, "big") * 2
    with pytest.raises(
        ImageError, match=r"image of 5000x5000 \(HxW\) = 25000000 pixels is larger than max_pixels"
    ):
        image.from_compressed(
            SimpleNamespace(format="jpeg", data=np.frombuffer(bytes(data), np.uint8))
        )
    with pytest.raises(ImageError, match="no JPEG/PNG header"):
        image.from_compressed(SimpleNamespace(format="jpeg", data=np.arange(50, dtype=np.uint8)))


# --------------------------------------------------------------------------- other encodings


def mono16_image(values: list[int], bigendian: bool, pad: int = 0) -> Image:
    """A 1-row mono16 Image of ``values``, its bytes written by hand."""
    order = "big" if bigendian else "little"
    row = b"".join(v.to_bytes(2, order) for v in values) + b"\x5a" * pad
    return Image(
        header=rosbags_header(),
        height=2,
        width=len(values),
        encoding="mono16",
        is_bigendian=int(bigendian),
        step=len(row),
        data=np.frombuffer(row * 2, np.uint8),
    )


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_16_bits_are_scaled_as_cv_bridge_scales_them(bigendian: bool, pad: int) -> None:
    """round(v * 255 / 65535) = round(v / 257): 128 -> 0.498, 129 -> 0.502, 383 -> 1.49."""
    values = [0, 128, 129, 383, 7 * 257, 65535]
    frame = image.from_msg(mono16_image(values, bigendian, pad))
    assert frame.encoding == "mono8" and frame.pixels.shape == (2, 6, 1)
    np.testing.assert_array_equal(frame.pixels[..., 0], [[0, 0, 1, 1, 7, 255]] * 2)


def test_is_bigendian_says_how_to_read_the_bytes() -> None:
    """Bytes 0x01 0x02: 258 big-endian (-> 1), 513 little-endian (-> 2)."""
    msg = mono16_image([0x0102], bigendian=True)
    assert image.from_msg(msg).pixels[0, 0, 0] == 1
    msg.is_bigendian = 0
    assert image.from_msg(msg).pixels[0, 0, 0] == 2


@pytest.mark.parametrize(
    "encoding, samples",
    [
        ("rgb16", [65535, 0, 2570]),
        ("bgr16", [2570, 0, 65535]),
        ("rgba16", [65535, 0, 2570, 1234]),
        ("bgra16", [2570, 0, 65535, 1234]),
    ],
)
def test_16_bit_colour_becomes_bgr8(encoding: str, samples: list[int]) -> None:
    """R = 65535, G = 0, B = 2570 = 10 * 257 in every order: bgr8 (10, 0, 255), alpha dropped."""
    data = np.tile(np.array(samples, "<u2"), 4).view(np.uint8)
    msg = Image(
        header=rosbags_header(),
        height=2,
        width=2,
        encoding=encoding,
        is_bigendian=0,
        step=4 * len(samples),
        data=data,
    )
    frame = image.from_msg(msg)
    assert frame.encoding == "bgr8"
    np.testing.assert_array_equal(frame.pixels, np.tile([10, 0, 255], (2, 2, 1)))


#: BT.601 studio range: Y 16 black, 235 white; (Y, U, V) = (81, 90, 240) is pure red
BLACK, WHITE, RED = (16, 128, 128), (235, 128, 128), (81, 90, 240)


@pytest.mark.parametrize("encoding", ["uyvy", "yuv422", "yuyv", "yuv422_yuy2"])
def test_yuv422_byte_orders(encoding: str) -> None:
    """One row: a black-white pixel pair (U = V = 128), then a red pair."""
    uyvy = encoding in ("uyvy", "yuv422")
    pairs = []
    for (y0, u, v), y1 in ((BLACK, WHITE[0]), (RED, RED[0])):
        pairs += [u, y0, v, y1] if uyvy else [y0, u, y1, v]
    row = np.array(pairs, np.uint8)
    msg = Image(
        header=rosbags_header(),
        height=2,
        width=4,
        encoding=encoding,
        is_bigendian=0,
        step=9,
        data=np.concatenate([row, [7], row, [7]]).astype(np.uint8),
    )
    frame = image.from_msg(msg)
    assert frame.encoding == "bgr8"
    expected = [[0, 0, 0], [255, 255, 255], [0, 0, 254], [0, 0, 254]]
    np.testing.assert_allclose(frame.pixels[0].astype(int), expected, atol=2)


def test_nv21_is_a_y_plane_then_interleaved_v_u() -> None:
    """4x2 pixels: Y rows, then one VU row (V first) for each 2x2 block; rows padded to step 6."""
    y = [[81, 81, 235, 235], [81, 81, 235, 235]]
    vu = [[240, 90, 128, 128]]
    data = np.array([r + [0, 0] for r in y + vu], np.uint8).reshape(-1)
    msg = Image(
        header=rosbags_header(),
        height=2,
        width=4,
        encoding="nv21",
        is_bigendian=0,
        step=6,
        data=data,
    )
    frame = image.from_msg(msg)
    expected = [[0, 0, 254], [0, 0, 254], [255, 255, 255], [255, 255, 255]]
    np.testing.assert_allclose(frame.pixels[1].astype(int), expected, atol=2)


@pytest.mark.parametrize("pattern", BAYER)
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_names_are_the_top_left_cell(pattern: str, bits: int) -> None:
    """A flat orange mosaic of ``pattern`` demosaics to that very colour (a wrong OpenCV code
    would swap red and blue): the check of cv_bridge's mapping bayer_rggb -> OpenCV BayerBG."""
    bgr = np.tile(np.array([30, 120, 220], np.uint8), (8, 10, 1))
    frame = image.from_msg(encoded_image(bgr, f"bayer_{pattern}{bits}", pad=1))
    assert frame.encoding == "bgr8"
    np.testing.assert_array_equal(frame.pixels[2:-2, 2:-2], bgr[2:-2, 2:-2])


@pytest.mark.parametrize("pattern", BAYER)
def test_bayer_of_a_kitti_frame_is_demosaiced_by_its_own_pattern(pattern: str) -> None:
    """Demosaicing restores a real frame to a few grey levels; any other pattern does not."""
    bgr = kitti_frame("um_000005.png")[:374]
    own = image.from_msg(encoded_image(bgr, f"bayer_{pattern}8")).pixels
    assert np.abs(own.astype(int) - bgr).mean() < 5
    for other in set(BAYER) - {pattern}:
        wrong = image.convert(mosaic(bgr, pattern)[..., None], f"bayer_{other}8").pixels
        assert np.abs(wrong.astype(int) - bgr).mean() > 15, other


@pytest.mark.parametrize("encoding", CONVERTED)
def test_padded_rows_and_byte_order_change_nothing(encoding: str) -> None:
    """Each converted encoding: junk after every row and big-endian samples give the tight
    little-endian message's pixels; the frame is 8-bit and of the message's size."""
    bgr = cv2.resize(kitti_frame("uu_000002.png"), (64, 20), interpolation=cv2.INTER_AREA)
    tight = image.from_msg(encoded_image(bgr, encoding))
    assert tight.encoding == ("mono8" if encoding == "mono16" else "bgr8")
    assert tight.pixels.dtype == np.uint8 and tight.shape == (20, 64)
    for pad, bigendian in ((5, False), (3, True), (0, True)):
        other = image.from_msg(encoded_image(bgr, encoding, pad, bigendian))
        np.testing.assert_array_equal(other.pixels, tight.pixels)


@pytest.mark.parametrize(
    "encoding, width, height, message",
    [
        ("yuyv", 7, 4, "yuyv needs an even width, got 7x4"),
        ("uyvy", 5, 4, "uyvy needs an even width, got 5x4"),
        ("nv21", 6, 3, "nv21 needs an even height, got 6x3"),
        ("nv21", 6, 4, r"data length 24 does not match step\*height\*3/2 = 6\*4\*3/2 = 36"),
        ("rgb16", 6, 4, r"step 6 is smaller than width\*channels\*2 = 36 for rgb16"),
        ("bayer_rggb16", 6, 4, r"step 6 is smaller than width\*channels\*2 = 12"),
    ],
)
def test_converted_encodings_reject_bad_layouts(
    encoding: str, width: int, height: int, message: str
) -> None:
    msg = Image(
        header=rosbags_header(),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=6,
        data=np.zeros(6 * height, np.uint8),
    )
    with pytest.raises(ImageError, match=message):
        image.from_msg(msg)


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_grbg16"])
@pytest.mark.parametrize("height, width", [(2, 64), (64, 2), (2, 2)])
def test_a_bayer_mosaic_too_small_to_demosaic_is_refused(
    encoding: str, height: int, width: int
) -> None:
    """OpenCV demosaics a mosaic with a side under 3 into all-black pixels: refused instead."""
    depth = 2 if encoding.endswith("16") else 1
    msg = rosbags_image(np.full((height, width, depth), 200, np.uint8), encoding)
    with pytest.raises(
        ImageError,
        match=f"{encoding} needs at least 3 rows and columns to demosaic, got {width}x{height}",
    ):
        image.from_msg(msg)


def test_a_3x3_bayer_mosaic_of_one_grey_is_that_grey() -> None:
    """The smallest mosaic demosaiced: every sample 100 gives every colour 100."""
    frame = image.from_msg(rosbags_image(np.full((3, 3, 1), 100, np.uint8), "bayer_rggb8"))
    assert frame.pixels.tolist() == [[[100, 100, 100]] * 3] * 3


def test_compressed_depth_is_refused_naming_its_format() -> None:
    msg = CompressedImage(
        header=rosbags_header(),
        format="16UC1; compressedDepth png",
        data=np.frombuffer(cv2.imencode(".png", np.zeros((4, 4), np.uint16))[1], np.uint8),
    )
    with pytest.raises(
        ImageError,
        match=r"compressedDepth image \(format '16UC1; compressedDepth png'\) is a depth image",
    ):
        image.from_compressed(msg)


@pytest.mark.parametrize("bits", [8, 16])
def test_a_compressed_bayer_mosaic_is_demosaiced_like_the_raw_image(bits: int) -> None:
    """compressed_image_transport stores a Bayer image's mosaic as it is ('bayer_gbrg8; png
    compressed '): decoded, it is demosaiced exactly as the Image of that encoding."""
    bgr = cv2.resize(kitti_frame("umm_000015.png"), (64, 20), interpolation=cv2.INTER_AREA)
    raw = encoded_image(bgr, f"bayer_gbrg{bits}")
    samples = mosaic(bgr, "gbrg")
    if bits == 16:
        samples = np.frombuffer(encode(bgr, "bayer_gbrg16"), "<u2").reshape(20, 64)
    msg = CompressedImage(
        header=rosbags_header(),
        format=f"bayer_gbrg{bits}; png compressed ",
        data=np.frombuffer(cv2.imencode(".png", samples)[1], np.uint8),
    )
    frame = image.from_compressed(msg)
    assert frame.encoding == "bgr8"
    np.testing.assert_array_equal(frame.pixels, image.from_msg(raw).pixels)
    msg.format = f"bayer_gbrg{bits}; png compressed "
    msg.data = np.frombuffer(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1], np.uint8)
    with pytest.raises(ImageError, match=f"decodes to uint8 \\(4, 4, 3\\), not one {bits}-bit"):
        image.from_compressed(msg)


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


def test_a_header_pillow_will_not_read_within_max_pixels_says_so() -> None:
    """A PNG claiming 20000x20000 = 400 MP: over the default max_pixels it is that refusal;
    under a max_pixels of 500 MP it is Pillow's header limit (2 x 89478485 pixels), named."""
    blob = np.frombuffer(png_claiming(20000, 20000), np.uint8)
    with pytest.raises(ImageError, match="claims more pixels than max_pixels = 16777216"):
        image.compressed_size(blob, image.MAX_PIXELS)
    with pytest.raises(
        ImageError,
        match=r"claims 400000000 pixels, within max_pixels = 500000000 but more than Pillow "
        r"reads a header of \(178956970\)",
    ):
        image.compressed_size(blob, 500_000_000)
