"""The ``Backend`` interface and the pre/post-processing every backend shares.

A backend turns a ``Frame`` into uint8 road mask and confidence maps at the frame's size. The
shared ``Backend.infer`` does the pre-processing (upload, channel order, fit to a fixed input
shape) and the post-processing (crop and resize back, threshold, 8-bit confidence) with torch on
the backend's device, so a GPU backend uploads uint8 pixels and downloads only the two uint8 maps.
Subclasses only run the network (``_forward``) and release it (``_release``).
"""

from __future__ import annotations

import abc
import time
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelError
from ..image import Frame
from ..model import IMAGENET_MEAN, scaled_size, working_height_of, working_size_of
from .options import RESIZE_POLICIES
from .size import parse_network_size

_CVT_TO_RGB = {
    ("rgb", 3): None,
    ("rgb", 4): cv2.COLOR_RGBA2RGB,
    ("bgr", 3): cv2.COLOR_BGR2RGB,
    ("bgr", 4): cv2.COLOR_BGRA2RGB,
    ("mono", 1): cv2.COLOR_GRAY2RGB,
}
MAX_SIZES_SHOWN = 8  # frame sizes remembered for network_size_text
#: pad value for letterboxing: the ImageNet mean, what the model's own padding feeds the network
PAD_RGB = tuple(round(255 * m) for m in IMAGENET_MEAN)


@dataclass(frozen=True)
class RoadMaps:
    """Per-pixel results at the input's size.

    ``mask`` is 0/255 and ``confidence`` = round(255 * P(road)).
    """

    mask: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class Fit:
    """How an image was fitted into a fixed network input: original size, valid region's size."""

    size: tuple[int, int]
    valid: tuple[int, int]


def fit(
    image: torch.Tensor, input_size: tuple[int, int] | None, policy: str
) -> tuple[torch.Tensor, Fit]:
    """Fit a 1 x H x W x 3 uint8 image into ``input_size``.

    ``letterbox`` keeps the aspect ratio: it shrinks the image only when it does not fit, places it
    top-left and pads with the ImageNet mean colour (a 375x1242 KITTI frame in a 384x1248 engine is
    padded, never resampled). ``stretch`` resizes to exactly ``input_size``. Dynamic backends
    (``input_size`` None) take the image as it is. Resampling is antialiased when shrinking; on CPU
    OpenCV does the work (area averaging / bilinear), many times faster than torch there.
    """
    h, w = image.shape[1:3]
    if input_size is None or (h, w) == tuple(input_size):
        return image, Fit((h, w), (h, w))
    H, W = input_size
    if policy == "stretch":
        valid = (H, W)
    else:
        scale = min(1.0, H / h, W / w)
        valid = (min(H, round(h * scale)), min(W, round(w * scale)))
    fitted = (
        _fit_cpu(image, valid, (H, W))
        if image.device.type == "cpu"
        else _fit_torch(image, valid, (H, W))
    )
    return fitted, Fit((h, w), valid)


def _fit_cpu(image: torch.Tensor, valid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``fit`` with OpenCV: resize to ``valid`` if needed, then pad bottom/right to ``size``."""
    array = image[0].numpy()
    if valid != array.shape[:2]:
        shrink = valid[0] <= array.shape[0] and valid[1] <= array.shape[1]
        array = cv2.resize(
            array, valid[::-1], interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    if valid != size:
        array = cv2.copyMakeBorder(
            array, 0, size[0] - valid[0], 0, size[1] - valid[1], cv2.BORDER_CONSTANT, value=PAD_RGB
        )
    return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0)


def _fit_torch(image: torch.Tensor, valid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``fit`` with torch on the image's (GPU) device."""
    if valid != tuple(image.shape[1:3]):
        x = image.permute(0, 3, 1, 2).float()
        x = F.interpolate(
            x,
            size=valid,
            mode="bilinear",
            align_corners=False,
            antialias=valid[0] < image.shape[1],
        )
        image = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    if valid != size:
        canvas = (
            torch.tensor(PAD_RGB, dtype=torch.uint8, device=image.device)
            .expand(1, *size, 3)
            .clone()
        )
        canvas[:, : valid[0], : valid[1]] = image
        image = canvas
    return image.contiguous()


def unfit(prob: torch.Tensor, how: Fit) -> torch.Tensor:
    """Map P(road) (1 x H' x W') from the network input back to the original H x W.

    Bilinear where resized.
    """
    p = prob[0, : how.valid[0], : how.valid[1]]
    if how.valid == how.size:
        return p
    if p.device.type == "cpu":
        return torch.from_numpy(
            cv2.resize(p.float().numpy(), how.size[::-1], interpolation=cv2.INTER_LINEAR)
        )
    return F.interpolate(
        p[None, None].float(), size=how.size, mode="bilinear", align_corners=False
    )[0, 0]


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    """torch.from_numpy without the warning for read-only message buffers (nothing writes them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class PinnedBuffers:
    """Page-locked host buffers for uploads to a GPU, one per frame shape, reused.

    A copy from pageable memory is effectively synchronous; from pinned memory it is queued on
    the stream. Each buffer is refilled only once its previous copy has finished.
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep  # shapes kept at most (the oldest goes first)
        self.buffers: dict[tuple[int, ...], tuple[torch.Tensor, torch.cuda.Event]] = {}

    def upload(self, pixels: np.ndarray, device: torch.device) -> torch.Tensor:
        """``pixels`` (uint8) copied to ``device`` through the pinned buffer of their shape."""
        entry = self.buffers.get(pixels.shape)
        if entry is None:
            if len(self.buffers) >= self.keep:
                del self.buffers[next(iter(self.buffers))]
            entry = (
                torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True),
                torch.cuda.Event(),
            )
            self.buffers[pixels.shape] = entry
        host, copied = entry
        copied.synchronize()  # the last upload from this buffer is done (at once if none)
        np.copyto(host.numpy(), pixels)
        on_device = host.to(device, non_blocking=True)
        copied.record(torch.cuda.current_stream(device))
        return on_device


def upload(
    frame: Frame, device: torch.device, pinned: PinnedBuffers | None = None
) -> torch.Tensor:
    """The frame as a 1 x H x W x 3 uint8 RGB tensor on ``device``.

    On CPU, OpenCV reorders the channels (several times faster than torch there); on a GPU the raw
    pixels are uploaded (through ``pinned`` buffers when given) and reordered on the device.
    """
    if device.type == "cpu":
        code = _CVT_TO_RGB[frame.order, frame.pixels.shape[2]]
        rgb = (
            cv2.cvtColor(frame.pixels, code)
            if code is not None
            else np.ascontiguousarray(frame.pixels)
        )
        return _from_numpy(rgb).unsqueeze(0)
    if pinned is not None:
        t = pinned.upload(frame.pixels, device)
    else:
        t = _from_numpy(frame.pixels).to(device, non_blocking=True)
    if frame.order == "bgr":
        t = t[..., [2, 1, 0]]
    elif frame.order == "mono":
        t = t.expand(-1, -1, 3)
    else:
        t = t[..., :3]
    return t.unsqueeze(0).contiguous()


def road_maps(prob: torch.Tensor, threshold: float) -> RoadMaps:
    """Threshold and quantise H x W P(road) on its device, then download both uint8 maps at once.

    mask = 255 where P >= threshold (compared in float32), confidence = round-half-even(255 * P).
    On CPU the same two maps come from OpenCV, which is several times faster there.
    """
    if prob.device.type == "cpu":
        p = prob.float().numpy()
        # P > below  <=>  P >= threshold
        below = np.nextafter(np.float32(threshold), np.float32(-np.inf))
        mask = cv2.convertScaleAbs(cv2.threshold(p, float(below), 255, cv2.THRESH_BINARY)[1])
        return RoadMaps(mask, cv2.convertScaleAbs(p, alpha=255))
    mask = (prob >= threshold).to(torch.uint8).mul_(255)
    confidence = (prob * 255).round_().to(torch.uint8)
    both = torch.stack((mask, confidence)).cpu().numpy()
    return RoadMaps(both[0], both[1])


class Backend(abc.ABC):
    """A network runner: ``infer`` a Frame into RoadMaps. Subclasses implement ``_forward``."""

    name: str = "base"
    #: how ``backend: auto`` chose this backend (each candidate's time); "" = not measured
    selection: str = ""

    def __init__(
        self,
        device: torch.device,
        input_size: tuple[int, int] | None = None,
        resize_policy: str = "letterbox",
    ) -> None:
        if resize_policy not in RESIZE_POLICIES:
            raise ValueError(
                f"resize_policy must be one of {RESIZE_POLICIES}, got '{resize_policy}'"
            )
        self.device = device
        self.input_size = input_size  # the model file's fixed input shape; None = dynamic
        self.resize_policy = resize_policy
        self.working_size: tuple[int, int] | None = None  # from the model's metadata
        self.working_height: int | None = None  # the working scale, from the model's metadata
        self.network_size: int | tuple[int, int] | None = None  # see set_network_size
        self.frame_sizes: dict[tuple[int, int], tuple[int, int]] = {}  # frame -> network input
        self.pinned = PinnedBuffers() if device.type == "cuda" else None
        self.flip = False  # test-time flip: also run the mirrored input, average P(road)
        #: one line each about how the model was opened (for logs and /diagnostics)
        self.warnings: list[str] = []

    def set_model_metadata(self, meta: dict[str, Any] | None) -> None:
        """Take the working size and scale from a checkpoint's or an export's metadata."""
        self.working_size = working_size_of(meta)
        self.working_height = working_height_of(meta)

    def set_network_size(self, requested: str = "auto") -> None:
        """Choose the network's size: ``auto`` (the model's working scale), ``native`` or ``HxW``.

        ``auto`` resizes each frame to the working height the model was trained at, its width
        keeping the frame's aspect ratio (``model.scaled_size``: a 375x1242 KITTI frame runs at
        188x624, a 360x480 one at 188x248); ``native`` runs each frame at its own size; ``HxW``
        stretches every frame to exactly that. P(road) is resized back to the frame's size. A
        fixed-shape model runs at its own shape: a frame whose size there equals that shape is
        resized to it, any other is fitted with ``resize_policy``; an explicit size other than
        the shape is an error.
        """
        if requested == "auto":
            self.network_size = self.working_height
            return
        size = parse_network_size(requested)
        self.network_size = None if size == "native" else size
        if self.input_size is not None and self.network_size != tuple(self.input_size):
            raise ModelError(
                f"network_size '{requested}': this model's input is fixed at "
                f"{self.input_size[0]}x{self.input_size[1]}; "
                "export it with --dynamic or at that size"
            )

    def network_input(self, height: int, width: int) -> tuple[tuple[int, int] | None, str]:
        """(size, policy) that a ``height`` x ``width`` frame is fitted with (``fit``)."""
        rule = self.network_size
        target = scaled_size(height, width, rule) if isinstance(rule, int) else rule
        if self.input_size is None:
            return target, "stretch"
        if target is not None and tuple(target) == tuple(self.input_size):
            return tuple(self.input_size), "stretch"
        return tuple(self.input_size), self.resize_policy

    def _fit(self, frame: Frame) -> tuple[torch.Tensor, Fit]:
        """The frame on the device, fitted to the network input; remembers the size used."""
        height, width = frame.pixels.shape[:2]
        size, policy = self.network_input(height, width)
        image, how = fit(upload(frame, self.device, self.pinned), size, policy)
        if len(self.frame_sizes) < MAX_SIZES_SHOWN:
            self.frame_sizes.setdefault((height, width), tuple(image.shape[1:3]))
        return image, how

    @abc.abstractmethod
    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """1 x H x W x 3 uint8 RGB on ``self.device`` -> 1 x H x W float P(road)."""

    def _network(self, image: torch.Tensor) -> torch.Tensor:
        """``_forward``, and with ``flip`` the mean of it and of the mirrored image's P mirrored
        back (one more network run; the fitted input is mirrored, so a letterbox stays aligned)."""
        prob = self._checked(self._forward(image), image)
        if self.flip:
            prob = (prob + self._checked(self._forward(image.flip(2)), image).flip(-1)) / 2
        return prob

    def _checked(self, prob: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``prob``, when it is 1 x H x W for the 1 x H x W x 3 ``image``; else a ModelError
        naming the model (a graph that declares symbolic output sizes may return any)."""
        expected = (1, *image.shape[1:3])
        if tuple(prob.shape) != expected:
            model = getattr(self, "model_path", None) or getattr(self, "engine_path", self.name)
            raise ModelError(
                f"{model} returned P(road) of shape {list(prob.shape)} for a "
                f"{expected[1]}x{expected[2]} image, expected {list(expected)}: not an "
                "fcn_road_seg model (export one with fcn-road-export)"
            )
        return prob

    def _sync(self) -> None:
        """Wait for queued device work (only used when timing stages)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def infer(
        self, frame: Frame, threshold: float = 0.5, timings: dict[str, float] | None = None
    ) -> RoadMaps:
        """Road mask and confidence for ``frame``; fills ``timings`` (ms per stage) when given."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            image, how = self._fit(frame)
            if timings is not None:
                self._sync()
                t1 = time.perf_counter()
            prob = self._network(image)
            if timings is not None:
                self._sync()
                t2 = time.perf_counter()
            maps = road_maps(unfit(prob, how), threshold)
        if timings is not None:
            t3 = time.perf_counter()
            timings.update(
                preprocess=1e3 * (t1 - t0), inference=1e3 * (t2 - t1), postprocess=1e3 * (t3 - t2)
            )
        return maps

    def probability(self, frame: Frame) -> torch.Tensor:
        """P(road) at the frame's own size: fit, network, unfit.

        H x W float32 on the backend's device.
        """
        with torch.inference_mode():
            image, how = self._fit(frame)
            return unfit(self._network(image), how)

    def warmup(self, height: int, width: int, iterations: int = 3) -> float:
        """Run a few blank frames of the given size (autotuning, lazy init).

        Returns the seconds taken.
        """
        start = time.perf_counter()
        frame = Frame(np.zeros((height, width, 3), np.uint8), "rgb8")
        for _ in range(iterations):
            self.infer(frame)
        return time.perf_counter() - start

    def network_size_text(self) -> str:
        """Where the network runs, for logs and /diagnostics, with each frame size seen so far.

        E.g. ``the working scale, 188 rows, aspect ratio kept (375x1242 -> 188x624)``.
        """
        rule = self.network_size
        if isinstance(rule, int):
            text = f"the working scale, {rule} rows, aspect ratio kept"
        elif rule is None:
            text = "each frame's own size"
        else:
            text = f"{rule[0]}x{rule[1]}"
        if self.flip:
            text += ", and mirrored (test-time flip)"
        if self.input_size is not None:
            text += f", in a fixed {self.input_size[0]}x{self.input_size[1]} input"
            text += f" ({self.resize_policy} where the frame's size differs)"
        seen = ", ".join(
            f"{h}x{w} -> {H}x{W}" for (h, w), (H, W) in sorted(self.frame_sizes.items())
        )
        return f"{text} ({seen})" if seen else text

    def close(self) -> None:
        """Release the network and the device memory it held; ``infer`` must not follow.

        Idempotent. On a GPU the freed memory goes back to the driver, not only to torch's cache.
        """
        self._release()
        self.pinned = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _release(self) -> None:
        """Drop the objects that hold the network (modules, sessions, engines)."""

    def describe(self) -> str:
        """One line for logs: backend, device and the size the network runs at."""
        return f"{self.name} on {self.device} (network at {self.network_size_text()})"
