"""FCN-8s on VGG16 (Long, Shelhamer and Darrell, 2015).

The one model for training, export and runtime. ``FCN8s`` takes float RGB images in [0, 1]
(N x 3 x H x W, any H and W) and returns N x 2 x H x W logits (0 = non-road, 1 = road). ImageNet
normalisation lives inside the model, so training, ONNX export and every backend feed the same
thing. ``RoadProbability`` wraps it for deployment: uint8 N x H x W x 3 RGB in, float P(road)
N x H x W out, so pre- and post-processing run in the graph.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from .errors import ModelError

NUM_CLASSES = 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE = 32
#: the dtypes a checkpoint's float weights may have (loaded as float32)
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# indices just past pool3 and pool4 in torchvision's VGG16 ``features``
POOL3_END, POOL4_END = (17, 24)
POOL4_SCALE, POOL3_SCALE = 0.01, 0.0001  # FCN-8s "at-once" skip scaling
INPUT, OUTPUT = "image", "prob"  # RoadProbability's I/O names in every exported model and engine


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Per-channel (diagonal) transposed-convolution weight that performs bilinear upsampling."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt1d[:, None] * filt1d[None, :]
    return weight


def _upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A transposed convolution (kernel 2f, stride f).

    Initialised as exact bilinear upsampling by f.
    """
    layer = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return layer


class FCN8s(nn.Module):
    """VGG16 FCN-8s: convolutional fc6/fc7, scaled skips and bilinear-initialised upsampling."""

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        fc_channels: int = 4096,
        fc6_kernel: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if fc6_kernel % 2 != 1:
            raise ValueError(f"fc6_kernel must be odd, got {fc6_kernel}")
        self.config = {
            "num_classes": num_classes,
            "fc_channels": fc_channels,
            "fc6_kernel": fc6_kernel,
        }
        # torchvision's VGG16 layout and key names
        self.features = make_layers(cfgs["D"], batch_norm=False)
        self.fc6 = nn.Conv2d(512, fc_channels, fc6_kernel, padding=fc6_kernel // 2)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop = nn.Dropout2d(dropout)
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.upscore2 = _upsample(num_classes, 2)
        self.upscore_pool4 = _upsample(num_classes, 2)
        self.upscore8 = _upsample(num_classes, 8)
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's VGG initialisation for the encoder; zero score layers, as in the paper."""
        for m in [*self.features, self.fc6, self.fc7]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits N x C x H x W for float RGB images in [0, 1].

        Pads to a multiple of 32, then crops.
        """
        h, w = x.shape[-2:]
        x = (x - self.mean) / self.std
        x = F.pad(x, (0, (-w) % STRIDE, 0, (-h) % STRIDE))
        pool3 = self.features[:POOL3_END](x)
        pool4 = self.features[POOL3_END:POOL4_END](pool3)
        pool5 = self.features[POOL4_END:](pool4)
        fc7 = self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pool5))))))
        up = self.upscore2(self.score_fr(fc7))
        up = self.upscore_pool4(up + self.score_pool4(pool4 * POOL4_SCALE))
        out = self.upscore8(up + self.score_pool3(pool3 * POOL3_SCALE))
        return out[..., :h, :w]


class RoadProbability(nn.Module):
    """Deployment head: uint8 N x H x W x 3 RGB in, float32 P(road) N x H x W out.

    ``temperature`` is the calibration scalar T (Guo et al. 2017): P = sigmoid((l1 - l0) / T), so
    T = 1 is the plain softmax and the 0.5 threshold is the same for every T.
    """

    def __init__(self, fcn: FCN8s, temperature: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ModelError(f"temperature must be a positive number, got {temperature!r}")
        self.fcn = fcn
        self.temperature = float(temperature)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Normalise, run FCN-8s in its own dtype, and take the road channel.

        The road channel of the (tempered) two-class softmax.
        """
        # cast first: TensorRT takes a uint8 input only straight into a Cast (NVIDIA/TensorRT#3985)
        x = image.to(self.fcn.mean.dtype).permute(0, 3, 1, 2) / 255.0  # NHWC: channels_last
        logits = self.fcn(x).float()
        z = logits[:, 1] - logits[:, 0]
        if self.temperature != 1.0:
            z = z * (1.0 / self.temperature)
        return torch.sigmoid(z)  # == softmax(logits / T)[:, 1] for two classes


#: the integer entries of a model_config and their bounds: [lowest, highest]
CONFIG_BOUNDS = {"num_classes": (NUM_CLASSES, NUM_CLASSES), "fc_channels": (1, 4096)}
MAX_FC6_KERNEL = 15
MAX_SIDE = 8192  # the largest working height or width a model may record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def config_problem(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> str | None:
    """What is wrong with a checkpoint's ``model_config`` for its weights, None when nothing.

    Checked before the model is built, so a config claiming a huge head never allocates it:
    every entry in its bounds, and the head's shapes those of the weights.
    """
    unknown = sorted(set(config) - {*CONFIG_BOUNDS, "fc6_kernel", "dropout"})
    if unknown:
        return f"model_config has unknown entries {unknown}"
    for name, (low, high) in CONFIG_BOUNDS.items():
        value = config.get(name, low)
        if not (_is_int(value) and low <= value <= high):
            return f"model_config {name} {value!r} is not an integer in [{low}, {high}]"
    kernel = config.get("fc6_kernel", 7)
    if not (_is_int(kernel) and 1 <= kernel <= MAX_FC6_KERNEL and kernel % 2 == 1):
        return f"model_config fc6_kernel {kernel!r} is not an odd integer in [1, {MAX_FC6_KERNEL}]"
    dropout = config.get("dropout", 0.5)
    if not (isinstance(dropout, (int, float)) and not isinstance(dropout, bool)) or not (
        0 <= dropout < 1
    ):
        return f"model_config dropout {dropout!r} is not a number in [0, 1)"
    channels, classes = config.get("fc_channels", 4096), config.get("num_classes", NUM_CLASSES)
    expected = {
        "fc6.weight": (channels, 512, kernel, kernel),
        "fc7.weight": (channels, channels, 1, 1),
        "score_fr.weight": (classes, channels, 1, 1),
    }
    for key, shape in expected.items():
        found = tuple(state[key].shape) if key in state else None
        if found != shape:
            return (
                f"model_config {dict(config)} needs {key} of shape {list(shape)}, "
                f"but the weights have {list(found) if found else 'none'}"
            )
    return None


def check_metadata(meta: Mapping[str, Any], source: str) -> None:
    """ModelError (``source: ...``) unless a model's metadata, from a checkpoint or the sidecar of
    an export, holds a usable temperature, working_size and working_height."""
    temperature = meta.get("temperature", 1.0)
    if not (
        isinstance(temperature, (int, float))
        and not isinstance(temperature, bool)
        and math.isfinite(temperature)
        and temperature > 0
    ):
        raise ModelError(f"{source}: temperature {temperature!r} is not a positive number")
    size = meta.get("working_size")
    if size is not None and not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(_is_int(v) and STRIDE <= v <= MAX_SIDE for v in size)
    ):
        raise ModelError(
            f"{source}: working_size {size!r} is not [height, width], each in "
            f"[{STRIDE}, {MAX_SIDE}]"
        )
    height = meta.get("working_height")
    if height is not None and not (_is_int(height) and STRIDE <= height <= MAX_SIDE):
        raise ModelError(
            f"{source}: working_height {height!r} is not an integer in [{STRIDE}, {MAX_SIDE}]"
        )


def load_torch_file(path: str | os.PathLike, what: str) -> Any:
    """``torch.load`` (weights only).

    A ModelError naming the file for a missing, empty or foreign one.
    """
    if os.path.isdir(path):
        raise ModelError(f"{what} {path} is a directory, not a file")
    if not os.path.isfile(path):
        raise ModelError(f"{what} file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ModelError(f"{what} {path} is empty (0 bytes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # zip/pickle/IO errors in many types; their text gives unhelpful advice
        raise ModelError(
            f"cannot read {what} {path}: {_unreadable(path, exc)} ({type(exc).__name__})"
        ) from exc


def _unreadable(path: str | os.PathLike, exc: Exception) -> str:
    """Why ``torch.load`` (weights only) failed on an existing, non-empty file, in a few words."""
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if refused:  # an intact file holding a Python object (argparse.Namespace, numpy arrays)
        return (
            f"it holds Python objects ({refused[1]}) that are not loaded: only tensors and "
            "plain values are, so that no code in the file runs; save those alone"
        )
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    return "truncated or corrupt" if zipped else "not a PyTorch file"


def read_checkpoint(path: str | os.PathLike) -> tuple[FCN8s, dict[str, Any]]:
    """The FCN8s stored in a checkpoint (fp32, eval) and its metadata.

    The metadata has ``working_size``, ``encoder``, ... Every way a file can be wrong is one
    ModelError that names the file and says what is wrong.
    """
    ckpt = load_torch_file(path, "model")
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or "model_config" not in ckpt:
        raise ModelError(
            f"{path} is not an fcn_road_seg checkpoint (needs 'model' and 'model_config' entries)"
        )
    state, config = ckpt["model"], ckpt["model_config"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelError(
            f"checkpoint {path}: 'model' is a {type(state).__name__}, not a state dict of tensors"
        )
    if not isinstance(config, Mapping):
        raise ModelError(
            f"checkpoint {path}: 'model_config' is a {type(config).__name__}, not a mapping"
        )
    odd = sorted(
        f"{k} ({v.dtype}, {v.layout})"
        for k, v in state.items()
        if v.layout != torch.strided or (v.is_floating_point() and v.dtype not in WEIGHT_DTYPES)
    )
    if odd:
        raise ModelError(
            f"checkpoint {path}: weights that are not dense float16, bfloat16, float32 or float64 "
            f"tensors: {', '.join(odd[:5])}{' ...' if len(odd) > 5 else ''}"
        )
    bad = sorted(
        k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()
    )
    if bad:
        raise ModelError(
            f"checkpoint {path}: weights that are NaN or infinite in {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}"
        )
    problem = config_problem(config, state)
    if problem:
        raise ModelError(f"checkpoint {path}: {problem}")
    try:
        model = FCN8s(**config)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"checkpoint {path} does not match FCN8s: {exc}") from exc
    meta = {
        k: ckpt[k]
        for k in (
            "working_size",
            "working_height",
            "encoder",
            "init_from",
            "interpolated",
            "datasets",
            "metrics",
            "temperature",
            "calibration",
        )
        if k in ckpt
    }
    check_metadata(meta, f"checkpoint {path}")
    return model.eval(), meta


def load_checkpoint_model(path: str | os.PathLike) -> FCN8s:
    """The FCN8s stored in a training checkpoint, in fp32.

    The checkpoint is ``{"model": state_dict, "model_config": {...}}``.
    """
    return read_checkpoint(path)[0]


def working_size_of(meta: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """The (H, W) a model runs at, from checkpoint or export metadata; None = each frame's size."""
    size = (meta or {}).get("working_size")
    return None if size is None else (int(size[0]), int(size[1]))


SIZE_MULTIPLE = 8  # network widths at the working scale are rounded to this
REFERENCE_FRAME = (375, 1242)  # a KITTI frame: the shape a fixed-shape export is made for


def scaled_size(height: int, width: int, working_height: int) -> tuple[int, int]:
    """(H, W) of a ``height`` x ``width`` frame at the working scale, its aspect ratio kept.

    H is ``working_height``; W keeps the frame's aspect ratio, rounded to a multiple of
    ``SIZE_MULTIPLE`` (a 375x1242 KITTI frame at 188 rows: 188x624; a 360x480 one: 188x248).
    """
    units = max(1, round(working_height * width / (height * SIZE_MULTIPLE)))
    return working_height, units * SIZE_MULTIPLE


def working_height_of(meta: Mapping[str, Any] | None) -> int | None:
    """The frame height a model was trained and validated at, from its metadata.

    ``working_height`` where recorded; older files recorded only ``working_size``, whose height
    is the same scale. None = each frame's own size.
    """
    meta = meta or {}
    if meta.get("working_height") is not None:
        return int(meta["working_height"])
    size = working_size_of(meta)
    return None if size is None else size[0]


def default_model_path() -> Path:
    """The default model shipped inside the package: FCN-8s trained on KITTI Road.

    It may be absent in a checkout.
    """
    return Path(__file__).resolve().parent / "data" / "fcn8s_kitti.pt"


def untrained_model(seed: int = 0, score_std: float = 0.2, **config: Any) -> FCN8s:
    """A seeded, untrained FCN8s whose score layers are random instead of zero, so its maps vary.

    For tests, benchmarks and the demo's untrained fallback; the global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FCN8s(**config)
        with torch.no_grad():
            for layer in (model.score_fr, model.score_pool4, model.score_pool3):
                layer.weight.normal_(0.0, score_std)
                layer.bias.normal_(0.0, score_std)
    return model.eval()


def save_model(model: FCN8s, path: str | os.PathLike) -> Path:
    """Write ``model`` as the minimal checkpoint ``load_checkpoint_model`` reads, atomically.

    Returns the path.
    """
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "model_config": model.config}, tmp)
    return Path(path)
