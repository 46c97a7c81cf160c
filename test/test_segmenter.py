"""segmenter.py: the per-frame core fed with rosbags sensor_msgs.

On a real KITTI frame and a small model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_typestore

from fcn_road_seg.backends import Backend
from fcn_road_seg.tools.bags import make_image
from fcn_road_seg.errors import ImageError
from fcn_road_seg.image import Frame
from fcn_road_seg.model import RoadProbability, load_checkpoint_model
from fcn_road_seg.options import defaults
from fcn_road_seg.segmenter import Segmenter, segmenter_from_options

from conftest import (
    AGREEMENT,
    CONVERTED,
    MONO_AGREEMENT,
    encoded_image,
    kitti_frame,
    rosbags_header,
    rosbags_image,
)

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
Image, CompressedImage = TYPES["sensor_msgs/msg/Image"], TYPES["sensor_msgs/msg/CompressedImage"]
COLOR_FROM_BGR = {
    "bgr8": None,
    "rgb8": cv2.COLOR_BGR2RGB,
    "bgra8": cv2.COLOR_BGR2BGRA,
    "rgba8": cv2.COLOR_BGR2RGBA,
}


@pytest.fixture(scope="module")
def kitti_bgr() -> np.ndarray:
    """A real 1242x375 KITTI Road frame (BGR)."""
    return kitti_frame()


@pytest.fixture(scope="module")
def small_bgr(kitti_bgr: np.ndarray) -> np.ndarray:
    """The KITTI frame at a quarter of its size (310x93), for the many-encodings tests."""
    return cv2.resize(
        kitti_bgr, (kitti_bgr.shape[1] // 4, kitti_bgr.shape[0] // 4), interpolation=cv2.INTER_AREA
    )


class FixedProbability(Backend):
    """A backend whose P(road) is a given H x W map, whatever the image."""

    name = "fixed"

    def __init__(self, prob: np.ndarray) -> None:
        super().__init__(torch.device("cpu"))
        self.prob = torch.from_numpy(prob.astype(np.float32))[None]

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """The fixed map."""
        return self.prob


def test_mask_and_confidence_equal_the_network_on_a_full_kitti_frame(
    segmenter: Segmenter, tiny_model: Path, kitti_bgr: np.ndarray
) -> None:
    """The core against the network run by hand.

    The stored golden maps are in test_default_model.py.
    """
    net = RoadProbability(load_checkpoint_model(tiny_model))
    with torch.inference_mode():
        prob = net(torch.from_numpy(cv2.cvtColor(kitti_bgr, cv2.COLOR_BGR2RGB))[None])[0].numpy()
    result, messages = segmenter.process(rosbags_image(kitti_bgr, "bgr8"), make_image)
    expected = np.where(prob >= 0.5, 255, 0).astype(np.uint8)
    assert 0.05 < (expected > 0).mean() < 0.95  # a non-trivial mask
    np.testing.assert_array_equal(result.mask, expected)
    np.testing.assert_array_equal(messages["mask"].data.reshape(375, 1242), expected)
    np.testing.assert_array_equal(result.confidence, np.rint(prob * 255))


@pytest.mark.parametrize("encoding", list(COLOR_FROM_BGR))
@pytest.mark.parametrize("pad", [0, 5])
def test_every_color_encoding_gives_the_same_mask(
    segmenter: Segmenter, small_bgr: np.ndarray, encoding: str, pad: int
) -> None:
    reference, _ = segmenter.process(rosbags_image(small_bgr, "bgr8"), make_image, ("mask",))
    code = COLOR_FROM_BGR[encoding]
    pixels = small_bgr if code is None else cv2.cvtColor(small_bgr, code)
    result, messages = segmenter.process(
        rosbags_image(pixels, encoding, pad), make_image, ("mask",)
    )
    assert 0 < reference.mask.mean() < 255
    np.testing.assert_array_equal(result.mask, reference.mask)
    np.testing.assert_array_equal(result.confidence, reference.confidence)


@pytest.mark.parametrize("pad", [0, 3])
def test_mono8_gives_the_mask_of_the_gray_picture_in_color(
    segmenter: Segmenter, small_bgr: np.ndarray, pad: int
) -> None:
    gray = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)
    as_color, _ = segmenter.process(
        rosbags_image(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), "bgr8"), make_image
    )
    result, _ = segmenter.process(rosbags_image(gray, "mono8", pad), make_image)
    np.testing.assert_array_equal(result.mask, as_color.mask)


@pytest.mark.parametrize("encoding, channels", [("bgr8", 3), ("rgba8", 4), ("mono8", 1)])
def test_every_output_has_the_input_header_and_the_right_fields(
    segmenter: Segmenter, small_bgr: np.ndarray, encoding: str, channels: int
) -> None:
    pixels = {
        "bgr8": small_bgr,
        "rgba8": cv2.cvtColor(small_bgr, cv2.COLOR_BGR2RGBA),
        "mono8": cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY),
    }[encoding]
    msg = rosbags_image(pixels, encoding, pad=2)
    _, messages = segmenter.process(msg, make_image)
    assert set(messages) == {"mask", "confidence", "overlay"}
    h, w = 93, 310
    expected = {
        "mask": ("mono8", w),
        "confidence": ("mono8", w),
        "overlay": ("bgr8", w * 3) if encoding == "mono8" else (encoding, w * channels),
    }
    for name, out in messages.items():
        assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (
            1_700_000_000,
            987_654_321,
            "camera_color_left",
        ), name
        assert (out.height, out.width, out.is_bigendian) == (h, w, 0), name
        assert (out.encoding, out.step) == expected[name], name
        assert out.data.dtype == np.uint8 and out.data.size == out.step * h, name
    assert set(np.unique(messages["mask"].data)) <= {0, 255}


def test_only_the_outputs_asked_for_are_built(segmenter: Segmenter, small_bgr: np.ndarray) -> None:
    result, messages = segmenter.process(rosbags_image(small_bgr, "bgr8"), make_image, ("mask",))
    assert set(messages) == {"mask"}
    assert result.overlay is None


@pytest.mark.parametrize("fmt, ext", [("png", ".png"), ("jpeg", ".jpg")])
def test_compressed_input_gives_the_mask_of_the_decoded_picture(
    segmenter: Segmenter, small_bgr: np.ndarray, fmt: str, ext: str
) -> None:
    data = np.frombuffer(cv2.imencode(ext, small_bgr)[1], np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if fmt == "png":
        np.testing.assert_array_equal(decoded, small_bgr)
    reference, _ = segmenter.process(rosbags_image(decoded, "bgr8"), make_image)
    result, messages = segmenter.process(
        CompressedImage(header=rosbags_header(), format=fmt, data=data),
        make_image,
        compressed=True,
    )
    np.testing.assert_array_equal(result.mask, reference.mask)
    np.testing.assert_array_equal(result.overlay, reference.overlay)
    assert messages["overlay"].encoding == "bgr8"
    assert all(out.header.stamp.nanosec == 987_654_321 for out in messages.values())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"encoding": "yuv420"}, "unsupported encoding 'yuv420'"),
        ({"encoding": "32FC1"}, "encoding '32FC1' is a depth or plain OpenCV image"),
        ({"encoding": "yuyv"}, "yuyv needs an even width, got 5x2"),
        (
            {"height": 0, "width": 0, "step": 0, "data": np.zeros(0, np.uint8)},
            r"empty image \(0x0\)",
        ),
        ({"step": 31}, r"data length 30 does not match step\*height = 31\*2 = 62"),
    ],
)
def test_bad_messages_raise_image_error_with_the_reason(
    segmenter: Segmenter, overrides: dict, message: str
) -> None:
    msg = rosbags_image(np.zeros((2, 5, 3), np.uint8), "bgr8")
    for name, value in overrides.items():
        setattr(msg, name, value)
    with pytest.raises(ImageError, match=message):
        segmenter.process(msg, make_image)


def test_undecodable_compressed_message_raises_image_error(segmenter: Segmenter) -> None:
    msg = CompressedImage(
        header=rosbags_header(), format="jpeg", data=np.arange(64, dtype=np.uint8)
    )
    with pytest.raises(
        ImageError, match=r"cannot decode compressed image \(format 'jpeg', 64 bytes\)"
    ):
        segmenter.process(msg, make_image, compressed=True)


PROB = np.array([[0.9, 0.1], [0.6, 0.4]])
ROAD = np.array([[True, False], [True, False]])


@pytest.mark.parametrize(
    "encoding, pixel, tinted",
    [
        # alpha 0.25, colour RGB (200, 100, 0):
        # road = round(0.75 * pixel) + round(0.25 * colour) per channel
        ("rgb8", (40, 80, 120), (80, 85, 90)),
        ("bgr8", (40, 80, 120), (30, 85, 140)),
        ("rgba8", (40, 80, 120, 7), (80, 85, 90, 7)),
        ("bgra8", (40, 80, 120, 7), (30, 85, 140, 7)),
        # mono8 is tinted in bgr8: 30 + round(0.25 * (0, 100, 200))
        ("mono8", (40,), (30, 55, 80)),
    ],
)
def test_overlay_pixels_match_hand_computed_values(
    encoding: str, pixel: tuple, tinted: tuple
) -> None:
    seg = Segmenter(
        FixedProbability(PROB), threshold=0.5, overlay_color=(200, 100, 0), overlay_alpha=0.25
    )
    pixels = np.tile(np.array(pixel, np.uint8), (2, 2, 1))
    result, messages = seg.process(rosbags_image(pixels, encoding, pad=1), make_image)
    np.testing.assert_array_equal(result.mask, np.where(ROAD, 255, 0))
    np.testing.assert_array_equal(
        result.overlay[ROAD], np.tile(np.array(tinted, np.uint8), (2, 1))
    )
    untinted = np.repeat(pixels, 3, axis=2) if encoding == "mono8" else pixels
    np.testing.assert_array_equal(result.overlay[~ROAD], untinted[~ROAD])
    overlay_msg = messages["overlay"]
    out_encoding = "bgr8" if encoding == "mono8" else encoding
    assert (overlay_msg.encoding, overlay_msg.step) == (out_encoding, 2 * len(tinted))
    np.testing.assert_array_equal(overlay_msg.data, result.overlay.reshape(-1))


def test_confidence_is_255_p_rounded() -> None:
    result, _ = Segmenter(FixedProbability(PROB)).process(
        rosbags_image(np.zeros((2, 2, 3), np.uint8), "rgb8"), make_image
    )
    np.testing.assert_array_equal(result.confidence, [[230, 26], [153, 102]])


@pytest.mark.parametrize(
    "threshold, road",
    [
        (0.0, [[1, 1], [1, 1]]),
        (0.4, [[1, 0], [1, 1]]),
        (0.6, [[1, 0], [1, 0]]),
        (0.95, [[0, 0], [0, 0]]),
    ],
)
def test_threshold_update_changes_the_mask(threshold: float, road: list) -> None:
    seg = Segmenter(FixedProbability(PROB))
    seg.update("threshold", threshold)
    result, _ = seg.process(
        rosbags_image(np.zeros((2, 2, 3), np.uint8), "rgb8"), make_image, ("mask",)
    )
    np.testing.assert_array_equal(result.mask, 255 * np.array(road, np.uint8))


def test_colour_and_alpha_updates_change_the_overlay() -> None:
    seg = Segmenter(FixedProbability(PROB))
    seg.update("overlay_color", [0, 0, 255])
    seg.update("overlay_alpha", 1)
    assert (seg.overlay_color, seg.overlay_alpha) == ((0, 0, 255), 1.0)
    result, _ = seg.process(rosbags_image(np.full((2, 2, 3), 9, np.uint8), "rgb8"), make_image)
    np.testing.assert_array_equal(result.overlay[ROAD], [[0, 0, 255], [0, 0, 255]])
    np.testing.assert_array_equal(result.overlay[~ROAD], [[9, 9, 9], [9, 9, 9]])


def test_update_rejects_and_keeps_the_old_value() -> None:
    seg = Segmenter(FixedProbability(PROB), threshold=0.3)
    with pytest.raises(ValueError, match=r"threshold must be a finite number in \[0, 1\], got 7"):
        seg.update("threshold", 7)
    assert seg.threshold == 0.3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 2.0}, "threshold must be"),
        ({"overlay_alpha": -1.0}, "overlay_alpha must be"),
        ({"overlay_color": (1, 2)}, "overlay_color must be"),
    ],
)
def test_constructor_rejects_invalid_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Segmenter(FixedProbability(PROB), **kwargs)


@pytest.fixture(scope="module")
def even_kitti() -> np.ndarray:
    """A real KITTI frame cut to an even height (374x1242: NV21 needs even sides)."""
    return kitti_frame("um_000005.png")[:374]


@pytest.fixture(scope="module")
def bgr8_mask(default_segmenter: Segmenter, even_kitti: np.ndarray) -> np.ndarray:
    """The default model's mask of ``even_kitti`` sent as bgr8."""
    result, _ = default_segmenter.process(rosbags_image(even_kitti, "bgr8"), make_image)
    assert 0.1 < (result.mask > 0).mean() < 0.6  # the road, not all or nothing
    return result.mask


@pytest.mark.parametrize("encoding", CONVERTED)
def test_every_camera_encoding_of_a_kitti_frame_gives_the_bgr8_mask(
    default_segmenter: Segmenter, even_kitti: np.ndarray, bgr8_mask: np.ndarray, encoding: str
) -> None:
    """Rows padded, 16-bit samples big-endian; the overlay comes back as bgr8."""
    msg = encoded_image(even_kitti, encoding, pad=3, bigendian=encoding.endswith("16"))
    result, messages = default_segmenter.process(msg, make_image)
    agree = (result.mask == bgr8_mask).mean()
    assert agree >= (MONO_AGREEMENT if encoding == "mono16" else AGREEMENT), agree
    out = messages["overlay"]
    assert (out.encoding, out.height, out.width, out.step) == ("bgr8", 374, 1242, 3 * 1242)


def test_the_models_warnings_are_printed_once_by_the_tools(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A companion without metadata beside the checkpoint: torch runs, and one line says so."""
    import argparse

    from fcn_road_seg.segmenter import add_segmenter_arguments, segmenter_from_args

    (tmp_path / "m.pt").write_bytes(tiny_model.read_bytes())
    (tmp_path / "m.int8.onnx").write_bytes(b"not a model")
    parser = argparse.ArgumentParser()
    add_segmenter_arguments(parser)
    core = segmenter_from_args(
        parser.parse_args(["--model", str(tmp_path / "m.pt"), "--device", "cpu"])
    )
    assert core.backend.name == "torch"
    warning = (
        f"INT8 companion {tmp_path / 'm.int8.onnx'} not used: it has no metadata "
        f"m.int8.onnx.json; running the checkpoint {tmp_path / 'm.pt'} with torch instead"
    )
    assert core.warnings == [warning]
    assert capsys.readouterr().err == f"WARNING: {warning}\n"


class RedChannel(Backend):
    """A backend whose P(road) is each pixel's red value / 255: it commutes with a mirror."""

    name = "red"

    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """Red / 255 of the 1 x H x W x 3 RGB input."""
        return image[..., 0].float() / 255


def test_test_time_flip_averages_p_with_the_mirrored_runs_mirrored_back() -> None:
    """A map fixed whatever the image, [[0.9, 0.1], [0.6, 0.4]], mirrored and mirrored back
    is [[0.1, 0.9], [0.4, 0.6]]: the flip gives their mean, 0.5 everywhere; a network that
    commutes with the mirror (P = red / 255) is left as it was."""
    fixed = FixedProbability(PROB)
    fixed.flip = True
    frame = Frame(np.zeros((2, 2, 3), np.uint8), "rgb8")
    np.testing.assert_allclose(fixed.probability(frame).numpy(), np.full((2, 2), 0.5))
    assert fixed.infer(frame, 0.5).mask.all()  # 0.5 >= threshold 0.5
    red = RedChannel()
    red.flip = True
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[..., 0] = [[0, 51, 255], [102, 0, 204]]
    np.testing.assert_allclose(
        red.probability(Frame(pixels, "rgb8")).numpy(), [[0, 0.2, 1], [0.4, 0, 0.8]], atol=1e-6
    )
    assert "and mirrored (test-time flip)" in red.network_size_text()


def test_the_flip_option_reaches_the_backend(tiny_model: Path) -> None:
    values = {**defaults(), "model_path": str(tiny_model), "backend": "torch", "device": "cpu"}
    assert segmenter_from_options(values).backend.flip is False
    assert segmenter_from_options({**values, "test_time_flip": True}).backend.flip is True


def test_test_time_flip_keeps_a_letterboxed_frame_aligned() -> None:
    """A fixed 2 x 4 input holding a 2 x 2 frame top-left (letterbox, padded on the right): the
    fixed map M = [[0, .2, .4, .6], [.8, 1, 0, 0]] and M mirrored, [[.6, .4, .2, 0],
    [0, 0, 1, .8]], average to [[.3, .3, .3, .3], [.4, .5, .5, .4]]; the frame's 2 x 2 is its
    left half."""
    fixed = FixedProbability(np.array([[0, 0.2, 0.4, 0.6], [0.8, 1, 0, 0]]))
    fixed.input_size = (2, 4)
    fixed.flip = True
    prob = fixed.probability(Frame(np.zeros((2, 2, 3), np.uint8), "rgb8"))
    np.testing.assert_allclose(prob.numpy(), [[0.3, 0.3], [0.4, 0.5]], atol=1e-6)
