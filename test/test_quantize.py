"""INT8 export (training/quantize.py via fcn-road-export --int8).

Also bf16 on CPU, and what backend=auto runs.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fcn_road_seg.backends import BackendOptions, fastest_for, int8_companion, load_backend
from fcn_road_seg.metadata import read_sidecar, write_sidecar
from fcn_road_seg.backends.onnx_backend import OnnxBackend
from fcn_road_seg.backends.torch_backend import TorchBackend, cpu_has_bf16
from fcn_road_seg.errors import ModelError
from fcn_road_seg.image import Frame
from fcn_road_seg.model import untrained_model

from conftest import ROOT

pytest.importorskip("onnxruntime")
FRAMES = ROOT / "data" / "kitti" / "image_2"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small checkpoint with working size 96x320 and its INT8 companion.

    Quantized on the shipped KITTI frames.
    """
    from training.export import main as export_main

    folder = tmp_path_factory.mktemp("int8")
    model = untrained_model(fc_channels=32, fc6_kernel=3)
    torch.save(
        {"model": model.state_dict(), "model_config": model.config, "working_size": [96, 320]},
        folder / "m.pt",
    )
    # Random weights quantize far worse than trained ones, so the parity check is left to the
    # default model's companion (test_default_model.py); here the mechanics.
    assert (
        export_main(
            [
                str(folder / "m.pt"),
                "--int8",
                "--calib-dir",
                str(FRAMES),
                "--calib-frames",
                "3",
                "--no-check",
            ]
        )
        == 0
    )
    return folder


def kitti_frame() -> Frame:
    path = sorted(FRAMES.glob("*.png"))[0]
    return Frame(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), "rgb8")


def test_int8_export_is_quantized_and_agrees_with_fp32(model_dir: Path) -> None:
    import onnx

    int8 = model_dir / "m.int8.onnx"
    meta = read_sidecar(int8)
    assert meta["precision"] == "int8" and meta["working_size"] == [96, 320]
    assert meta["int8"]["calib_frames"] == 3 and meta["int8"]["method"] == "minmax"
    graph = onnx.load(str(int8)).graph
    quantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) == 21 and all(
        n.input[1] in quantized for n in convs
    )  # every weight int8 (QDQ)
    frame = kitti_frame()
    want = load_backend(model_dir / "m.pt", "torch", "cpu").probability(frame)
    got = OnnxBackend(int8, torch.device("cpu"))
    got.set_network_size("auto")
    p = got.probability(frame)
    assert p.shape == want.shape == (375, 1242)
    assert (
        np.corrcoef(p.flatten().numpy(), want.flatten().numpy())[0, 1] > 0.9
    )  # the same map, coarsely


def test_auto_on_cpu_runs_the_int8_companion(model_dir: Path) -> None:
    pt = model_dir / "m.pt"
    assert int8_companion(pt) == model_dir / "m.int8.onnx"
    assert fastest_for(pt, "auto", "cpu") == (model_dir / "m.int8.onnx", "onnxruntime", None)
    assert fastest_for(pt, "torch", "cpu") == (pt, "torch", None)  # asked for torch: torch
    assert fastest_for(pt, "auto", "cpu", BackendOptions(precision="fp32")) == (
        pt,
        "torch",
        None,
    )  # torch settings: torch
    backend = load_backend(pt, "auto", "cpu")
    assert (
        isinstance(backend, OnnxBackend)
        and backend.input_size == (96, 320)
        and backend.resize_policy == "stretch"
        and backend.warnings == []
    )


def test_the_companion_is_tied_to_its_checkpoint_both_ways(model_dir: Path) -> None:
    """Its sidecar records the checkpoint's SHA-256 and its own."""
    meta = read_sidecar(model_dir / "m.int8.onnx")
    assert (
        meta["checkpoint_sha256"] == hashlib.sha256((model_dir / "m.pt").read_bytes()).hexdigest()
    )
    assert (
        meta["onnx_sha256"] == hashlib.sha256((model_dir / "m.int8.onnx").read_bytes()).hexdigest()
    )


def test_a_stale_companion_is_not_used(model_dir: Path, tmp_path: Path) -> None:
    """The INT8 file must come from this very checkpoint (SHA-256 in its metadata)."""
    for name in ("m.pt", "m.int8.onnx", "m.int8.onnx.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    model = untrained_model(seed=5, fc_channels=32, fc6_kernel=3, score_std=2.0)
    torch.save(
        {"model": model.state_dict(), "model_config": model.config, "working_size": [96, 320]},
        tmp_path / "m.pt",
    )
    assert int8_companion(tmp_path / "m.pt") is None
    backend = load_backend(tmp_path / "m.pt", "auto", "cpu")
    assert isinstance(backend, TorchBackend)
    assert backend.warnings == [
        f"INT8 companion {tmp_path / 'm.int8.onnx'} not used: its metadata names another "
        "checkpoint (checkpoint_sha256 is not m.pt's); running the checkpoint "
        f"{tmp_path / 'm.pt'} with torch instead"
    ]


def _replace_with_a_64x64_model(folder: Path) -> None:
    """Another (untrained, 64x64) ONNX model put in the companion's place, its sidecar kept."""
    from training.export import export_onnx

    export_onnx(
        untrained_model(seed=3, fc_channels=32, fc6_kernel=3), folder / "m.int8.onnx", (64, 64)
    )


def _flip_bytes(folder: Path) -> None:
    path = folder / "m.int8.onnx"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def _edit_sidecar(folder: Path, **changes) -> None:
    meta = read_sidecar(folder / "m.int8.onnx")
    meta.update(changes)
    write_sidecar(folder / "m.int8.onnx", {k: v for k, v in meta.items() if v is not None})


@pytest.mark.parametrize(
    "spoil, reason",
    [
        (_replace_with_a_64x64_model, "its SHA-256 is not the one its metadata records"),
        (_flip_bytes, "its SHA-256 is not the one its metadata records"),
        (
            lambda d: (d / "m.int8.onnx").write_bytes((d / "m.int8.onnx").read_bytes()[:5000]),
            "its SHA-256 is not the one its metadata records",
        ),
        (
            lambda d: (d / "m.int8.onnx.json").write_text("{garbage"),
            "cannot read model metadata",
        ),
        (lambda d: (d / "m.int8.onnx.json").unlink(), "it has no metadata m.int8.onnx.json"),
        (
            lambda d: _edit_sidecar(d, onnx_sha256=None),
            "its metadata lacks the file's own SHA-256 (onnx_sha256): export it again",
        ),
        (
            lambda d: _edit_sidecar(d, input={"name": "image", "shape": [1, 128, 128, 3]}),
            "does not match its metadata m.int8.onnx.json: its metadata says the input is "
            "128x128, the graph's is 96x320",
        ),
        (
            lambda d: _edit_sidecar(d, dynamic=True),
            "its metadata says the input is dynamic, the graph's is 96x320",
        ),
    ],
)
def test_a_companion_its_metadata_does_not_vouch_for_gives_way_with_one_warning(
    model_dir: Path, tmp_path: Path, spoil, reason: str
) -> None:
    """Each was used without a word (or, truncated, was a hard error beside an intact .pt)."""
    for name in ("m.pt", "m.int8.onnx", "m.int8.onnx.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    spoil(tmp_path)
    backend = load_backend(tmp_path / "m.pt", "auto", "cpu")
    assert isinstance(backend, TorchBackend) and len(backend.warnings) == 1
    [warning] = backend.warnings
    assert warning.startswith(f"INT8 companion {tmp_path / 'm.int8.onnx'} not used: ")
    assert reason in warning and "\n" not in warning
    assert warning.endswith(f"running the checkpoint {tmp_path / 'm.pt'} with torch instead")
    frame = kitti_frame()
    want = load_backend(model_dir / "m.pt", "torch", "cpu").infer(frame).mask
    np.testing.assert_array_equal(backend.infer(frame).mask, want)


def test_a_dynamic_companion_is_accepted(model_dir: Path, tmp_path: Path) -> None:
    """A companion exported with symbolic height and width, its sidecar saying ``dynamic``."""
    from training.export import main as export_main

    shutil.copy(model_dir / "m.pt", tmp_path / "m.pt")
    out = tmp_path / "m.int8.onnx"
    assert export_main([str(tmp_path / "m.pt"), "--dynamic", "-o", str(out), "--no-check"]) == 0
    assert read_sidecar(out)["dynamic"] is True
    backend = load_backend(tmp_path / "m.pt", "auto", "cpu")
    assert isinstance(backend, OnnxBackend) and backend.warnings == []
    assert backend.input_size == (96, 320)  # the working size, on a dynamic graph


def test_int8_needs_calibration_frames_and_a_fixed_shape(
    model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from training.export import main as export_main

    assert export_main([str(model_dir / "m.pt"), "--int8", "-o", str(model_dir / "x.onnx")]) == 1
    assert "--int8 needs --calib-dir and a fixed shape" in capsys.readouterr().err
    assert not (model_dir / "x.onnx").exists()


def test_bf16_on_cpu(model_dir: Path) -> None:
    if not cpu_has_bf16():
        with pytest.raises(ModelError, match="needs AVX-512 BF16 or AMX"):
            load_backend(model_dir / "m.pt", "torch", "cpu", precision="bf16")
        return
    frame = kitti_frame()
    fp32 = load_backend(model_dir / "m.pt", "torch", "cpu").probability(frame)
    bf16 = load_backend(model_dir / "m.pt", "torch", "cpu", precision="bf16").probability(frame)
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max().item() < 0.05


def test_fp16_on_cpu_is_refused(model_dir: Path) -> None:
    with pytest.raises(ModelError, match="precision 'fp16' needs CUDA"):
        load_backend(model_dir / "m.pt", "torch", "cpu", precision="fp16")
