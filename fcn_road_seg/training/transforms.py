"""Paired (image, target) transforms in the style of torchvision's segmentation references.

Images come in as uint8 H x W x 3 numpy arrays (or uint8 / float C x H x W tensors) and targets as
uint8 H x W label maps (or None for unlabelled frames). Every transform turns numpy input into
tensors first, resizes targets with nearest neighbour and pads them with ``IGNORE_INDEX``.
``ToTensor`` ends a pipeline: float image in [0, 1] (no normalisation: the model normalises) and
int64 target.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..model import scaled_size
from ..model import IMAGENET_MEAN

from .data import IGNORE_INDEX

PAD_FILL = [round(255 * m) for m in IMAGENET_MEAN]  # the colour the model's own padding stands for

Pair = tuple[torch.Tensor, torch.Tensor | None]


def as_tensors(image: Any, target: Any) -> Pair:
    """numpy H x W x 3 image -> C x H x W tensor and numpy H x W target -> 1 x H x W tensor.

    Tensors pass through.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(np.ascontiguousarray(target))
    if target is not None and target.ndim == 2:
        target = target[None]
    return image, target


def resize(image: torch.Tensor, target: torch.Tensor | None, size: Sequence[int]) -> Pair:
    """Image bilinear (antialiased), target nearest, both to ``size`` = (H, W)."""
    size = [int(size[0]), int(size[1])]
    image = F.resize(image, size, InterpolationMode.BILINEAR, antialias=True)
    if target is not None:
        target = F.resize(target, size, InterpolationMode.NEAREST_EXACT)
    return image, target


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Any, target: Any) -> Pair:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class Resize:
    """Resize to a fixed (H, W)."""

    def __init__(self, size: Sequence[int]) -> None:
        self.size = tuple(size)

    def __call__(self, image: Any, target: Any) -> Pair:
        return resize(*as_tensors(image, target), self.size)


class ScaleToHeight:
    """Resize to the working scale: ``height`` rows, the frame's aspect ratio kept (never
    stretched), as the runtime resizes every frame (``model.scaled_size``)."""

    def __init__(self, height: int) -> None:
        self.height = height

    def __call__(self, image: Any, target: Any) -> Pair:
        image, target = as_tensors(image, target)
        return resize(image, target, scaled_size(*image.shape[-2:], self.height))


class RandomScale:
    """Resize by a factor drawn uniformly from [min_scale, max_scale].

    With ``aspect_range`` the width is also multiplied by a factor drawn log-uniformly from that
    range: another lens or sensor's pixel aspect and field of view.
    """

    def __init__(
        self, min_scale: float, max_scale: float, aspect_range: Sequence[float] = (1.0, 1.0)
    ) -> None:
        self.min_scale, self.max_scale = min_scale, max_scale
        self.log_aspect = [math.log(a) for a in aspect_range]

    def __call__(self, image: Any, target: Any) -> Pair:
        image, target = as_tensors(image, target)
        s = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(()).item()
        lo, hi = self.log_aspect
        a = math.exp(lo + (hi - lo) * torch.rand(()).item())
        h, w = image.shape[-2:]
        return resize(image, target, (max(1, round(h * s)), max(1, round(w * s * a))))


class RandomCrop:
    """Random (H, W) crop; smaller inputs are first padded.

    The image is padded with the mean colour, as the model pads at inference, the target with
    ``IGNORE_INDEX``.
    """

    def __init__(self, size: Sequence[int]) -> None:
        self.size = tuple(size)

    def __call__(self, image: Any, target: Any) -> Pair:
        image, target = as_tensors(image, target)
        (th, tw), (h, w) = self.size, image.shape[-2:]
        pad = [0, 0, max(tw - w, 0), max(th - h, 0)]  # left, top, right, bottom
        if any(pad):
            image = F.pad(
                image,
                pad,
                fill=PAD_FILL if image.dtype == torch.uint8 else [f / 255 for f in PAD_FILL],
            )
            target = None if target is None else F.pad(target, pad, fill=IGNORE_INDEX)
        h, w = image.shape[-2:]
        top = int(torch.randint(h - th + 1, ())) if h > th else 0
        left = int(torch.randint(w - tw + 1, ())) if w > tw else 0
        image = image[..., top : top + th, left : left + tw]
        return image, None if target is None else target[..., top : top + th, left : left + tw]


class RandomHorizontalFlip:
    """Mirror both with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Any, target: Any) -> Pair:
        image, target = as_tensors(image, target)
        if torch.rand(()).item() < self.p:
            image = image.flip(-1)
            target = None if target is None else target.flip(-1)
        return image, target


class ColorJitter:
    """Photometric jitter of the image only (torchvision's ColorJitter)."""

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
    ):
        self.jitter = v2.ColorJitter(brightness, contrast, saturation, hue)

    def __call__(self, image: Any, target: Any) -> Pair:
        image, target = as_tensors(image, target)
        return self.jitter(image), target


def jpeg_round_trip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A uint8 3 x H x W RGB image encoded as JPEG at ``quality`` and decoded again (OpenCV)."""
    bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


class CameraJitter:
    """What another camera does to the image only: gamma, blur, sensor noise and JPEG artefacts.

    Each is applied with probability ``p``: gamma drawn log-uniformly from ``gamma``, a Gaussian
    blur of sigma up to ``blur``, Gaussian noise of standard deviation up to ``noise`` (in [0, 1]
    units), JPEG re-encoding at a quality drawn from ``jpeg`` (torchvision's blur, OpenCV's
    libjpeg).
    """

    def __init__(
        self,
        p: float = 0.3,
        gamma: Sequence[float] = (0.7, 1.4),
        blur: float = 1.5,
        noise: float = 0.03,
        jpeg: Sequence[int] = (30, 95),
    ) -> None:
        self.p, self.log_gamma = p, [math.log(g) for g in gamma]
        self.blur = v2.GaussianBlur(5, (0.1, blur)) if blur > 0 else None
        self.noise = noise
        self.jpeg = tuple(jpeg) if jpeg else None

    def _draw(self) -> bool:
        return torch.rand(()).item() < self.p

    def __call__(self, image: Any, target: Any) -> Pair:
        image, target = as_tensors(image, target)
        if self._draw():
            lo, hi = self.log_gamma
            image = F.adjust_gamma(image, math.exp(lo + (hi - lo) * torch.rand(()).item()))
        if self.blur is not None and self._draw():
            image = self.blur(image)
        if self.noise > 0 and self._draw():
            sigma = self.noise * torch.rand(()).item()
            noisy = image.float() + torch.randn(image.shape) * (255 * sigma)
            image = noisy.round_().clamp_(0, 255).to(torch.uint8)
        if self.jpeg is not None and self._draw():
            image = jpeg_round_trip(image, int(torch.randint(self.jpeg[0], self.jpeg[1] + 1, ())))
        return image, target


class ToTensor:
    """Image -> float32 C x H x W in [0, 1]; target -> int64 H x W (None stays None)."""

    def __call__(self, image: Any, target: Any) -> Pair:
        image, target = as_tensors(image, target)
        image = image.float().div_(255) if image.dtype == torch.uint8 else image.float()
        return image.contiguous(), None if target is None else target[0].long()


def train_transforms(
    size: Sequence[int],
    base_size: Sequence[int] | None = None,
    scale_range: Sequence[float] = (1.0, 1.0),
    hflip_prob: float = 0.5,
    jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    working_height: int | None = None,
    aspect_range: Sequence[float] = (1.0, 1.0),
    camera_prob: float = 0.0,
) -> Compose:
    """[Resize(base_size) | ScaleToHeight] -> [scale] -> RandomCrop(size) -> [flip] -> [jitter]
    -> [camera] -> ToTensor."""
    steps: list[Any] = []
    if working_height:
        steps.append(ScaleToHeight(working_height))
    elif base_size:
        steps.append(Resize(base_size))
    if tuple(scale_range) != (1.0, 1.0) or tuple(aspect_range) != (1.0, 1.0):
        steps.append(RandomScale(*scale_range, aspect_range))
    steps.append(RandomCrop(size))
    if hflip_prob > 0:
        steps.append(RandomHorizontalFlip(hflip_prob))
    if any(jitter):
        steps.append(ColorJitter(*jitter))
    if camera_prob > 0:
        steps.append(CameraJitter(camera_prob))
    return Compose([*steps, ToTensor()])
