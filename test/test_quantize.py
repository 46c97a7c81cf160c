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

from fcn_road_seg.backends import (
    check_companion,
    BackendOptions,
    fastest_for,
    int8_companion,
    load_backend,
)
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
    from fcn_road_seg.training.export import main as export_main

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
    # every weight int8 (QDQ) but the image-facing Conv's
    assert len(convs) == 21 and all(n.input[1] in quantized for n in convs[1:])
    assert convs[0].input[1] not in quantized
    frame = kitti_frame()
    want = load_backend(model_dir / "m.pt", "torch", "cpu").probability(frame)
    got = OnnxBackend(int8, torch.device("cpu"))
    got.set_network_size("auto")
    p = got.probability(frame)
    assert p.shape == want.shape == (375, 1242)
    # the same map, coarsely
    assert np.corrcoef(p.flatten().numpy(), want.flatten().numpy())[0, 1] > 0.9


def int8_weights(path: Path) -> list[np.ndarray]:
    """The int8 initializers of ``path``'s 4-D (convolution) weights."""
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = onnx.load(str(path)).graph
    return [
        numpy_helper.to_array(t)
        for t in graph.initializer
        if t.data_type == TensorProto.INT8 and len(t.dims) == 4
    ]


def test_cpu_int8_weights_cannot_saturate_a_cpu_without_vnni(model_dir: Path) -> None:
    """vpmaddubsw (AVX2, AVX-512 without VNNI) adds two uint8 x int8 products in int16: with
    weights in [-64, 64] the sum is at most 2 x 255 x 64 = 32640 <= 32767; full-range int8
    weights (127) saturated and cost the shipped model 6 % of a frame's mask on an AVX2 CPU."""
    weights = int8_weights(model_dir / "m.int8.onnx")
    assert len(weights) >= 18  # every Conv; upsamplings of one size share theirs
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == 64
    assert read_sidecar(model_dir / "m.int8.onnx")["int8"]["weight_bits"] == 7


def test_the_cpu_int8_models_first_conv_stays_float(model_dir: Path) -> None:
    """The image-facing Conv keeps its float weights; every other Conv's come from int8."""
    import onnx

    graph = onnx.load(str(model_dir / "m.int8.onnx")).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    float_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert convs[0].input[1] in float_weights and convs[0].input[1] not in dequantized
    assert all(n.input[1] in dequantized for n in convs[1:])
    assert read_sidecar(model_dir / "m.int8.onnx")["int8"]["first_conv"] == "float"


def test_tensorrt_int8_is_symmetric_int8_on_the_convs(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tensorrt=True``: every zero point int8 0, biases float, the upsamplings left float; ONNX
    Runtime runs it, and on a GPU ``auto`` gives it to TensorRT."""
    import onnx
    from onnx import TensorProto, numpy_helper

    from fcn_road_seg.backends import backend_for
    from fcn_road_seg.image import read_rgb_folder
    from fcn_road_seg.model import load_checkpoint_model
    from fcn_road_seg.training.export import export_onnx
    from fcn_road_seg.training.quantize import fitted_frames, quantize_int8

    fp32, out = tmp_path / "m.onnx", tmp_path / "m.trt-int8.onnx"
    export_onnx(load_checkpoint_model(model_dir / "m.pt"), fp32, (96, 320))
    quantize_int8(fp32, out, fitted_frames(read_rgb_folder(FRAMES, 2), (96, 320)), tensorrt=True)
    graph = onnx.load(str(out)).graph
    constants = {t.name: t for t in graph.initializer}
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zeros = [constants[n.input[2]] for n in qdq]
    assert qdq and len(zeros) == len(qdq)
    assert all(
        z.data_type == TensorProto.INT8 and not numpy_helper.to_array(z).any() for z in zeros
    )
    assert not any(
        constants.get(n.input[0]) is not None
        and constants[n.input[0]].data_type == TensorProto.INT32
        for n in qdq
    )
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    upsamplings = [n for n in graph.node if n.op_type == "ConvTranspose"]
    assert len(convs) == 18 and all(n.input[1] in dequantized for n in convs)
    assert len(upsamplings) == 3 and not any(n.input[1] in dequantized for n in upsamplings)
    # TensorRT runs int8 on tensor cores without that saturation: the full range
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in int8_weights(out)) == 127
    assert OnnxBackend(out, torch.device("cpu")).probability(kitti_frame()).shape == (375, 1242)
    monkeypatch.setattr("fcn_road_seg.backends.companion._tensorrt_usable", lambda: True)
    assert backend_for(out, "auto", "cuda") == "tensorrt"


def test_auto_on_cpu_runs_the_int8_companion(model_dir: Path) -> None:
    pt = model_dir / "m.pt"
    assert int8_companion(pt) == model_dir / "m.int8.onnx"
    assert fastest_for(pt, "auto", "cpu") == (model_dir / "m.int8.onnx", "onnxruntime", None)
    assert fastest_for(pt, "torch", "cpu") == (pt, "torch", None)  # asked for torch: torch
    # torch settings: torch
    assert fastest_for(pt, "auto", "cpu", BackendOptions(precision="fp32")) == (pt, "torch", None)
    backend = load_backend(int8_companion(pt), "onnxruntime", "cpu")  # auto: test_selection.py
    assert isinstance(backend, OnnxBackend) and backend.input_size == (96, 320)
    backend.set_network_size("auto")
    # a KITTI frame at the working scale (96 rows) is exactly the companion's shape: resized
    assert backend.network_input(375, 1242) == ((96, 320), "stretch")
    # a 4:3 frame there is 96x128: fitted into the fixed input, its aspect ratio kept
    assert backend.network_input(360, 480) == ((96, 320), "letterbox")


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
    from fcn_road_seg.training.export import export_onnx

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
    # auto's measured torch candidate (bf16 where the CPU has it) runs the checkpoint
    want = load_backend(model_dir / "m.pt", "torch", "cpu", precision=backend.precision)
    np.testing.assert_array_equal(backend.infer(frame).mask, want.infer(frame).mask)


def test_a_dynamic_companion_is_accepted(model_dir: Path, tmp_path: Path) -> None:
    """A companion exported with symbolic height and width, its sidecar saying ``dynamic``."""
    from fcn_road_seg.training.export import main as export_main

    shutil.copy(model_dir / "m.pt", tmp_path / "m.pt")
    out = tmp_path / "m.int8.onnx"
    assert export_main([str(tmp_path / "m.pt"), "--dynamic", "-o", str(out), "--no-check"]) == 0
    assert read_sidecar(out)["dynamic"] is True
    backend = load_backend(tmp_path / "m.pt", "auto", "cpu")
    assert backend.warnings == [] and check_companion(tmp_path / "m.pt") == (out, None)
    backend = load_backend(out, "onnxruntime", "cpu")
    assert backend.input_size is None  # a dynamic graph: each frame at the working scale
    assert backend.network_input(375, 1242) == ((96, 320), "stretch")


def test_int8_needs_calibration_frames_and_fp32(
    model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from fcn_road_seg.training.export import main as export_main

    assert export_main([str(model_dir / "m.pt"), "--int8", "-o", str(model_dir / "x.onnx")]) == 1
    assert "--int8 needs --calib-dir and an fp32 model" in capsys.readouterr().err
    assert not (model_dir / "x.onnx").exists()


def test_dynamic_int8_runs_each_frame_at_the_working_scale(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """One dynamic QDQ model serves every frame shape, calibrated on two "datasets"."""
    import onnx

    from fcn_road_seg.training.export import main as export_main

    small = tmp_path / "small"  # a second camera: 4:3 frames of 180x240
    small.mkdir()
    for path in sorted(FRAMES.glob("*.png"))[:2]:
        cv2.imwrite(str(small / path.name), cv2.resize(cv2.imread(str(path)), (240, 180)))
    out = tmp_path / "d.int8.onnx"
    args = [str(model_dir / "m.pt"), "--int8", "--dynamic", "-o", str(out), "--no-check"]
    args += ["--calib-dir", str(FRAMES), "--calib-dir", str(small), "--calib-frames", "2"]
    assert export_main(args) == 0
    # working height 96: 375x1242 -> 96x320 (317.9 rounded to 8), 180x240 -> 96x128
    assert "calibrated on 4 frames" in capsys.readouterr().out
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][::3] == [1, 3] and not dims[1].dim_value
    backend = load_backend(out, "onnxruntime", "cpu")
    torch_backend = load_backend(model_dir / "m.pt", "torch", "cpu")
    for rgb, net in (
        (kitti_frame().pixels, (96, 320)),
        (cv2.imread(str(next(small.iterdir()))), (96, 128)),
    ):
        frame = Frame(np.ascontiguousarray(rgb), "rgb8")
        p, want = backend.probability(frame), torch_backend.probability(frame)
        assert backend.frame_sizes[rgb.shape[:2]] == net
        assert p.shape == want.shape == rgb.shape[:2]
        assert np.corrcoef(p.flatten().numpy(), want.flatten().numpy())[0, 1] > 0.9


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


def test_fixed_int8_calibrates_each_frame_as_the_runtime_fits_it(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4:3 frame for a fixed 96x320 input: the runtime letterboxes it (96x128 of image, the
    rest mean colour), so calibration must see that, not the frame stretched to 96x320."""
    from fcn_road_seg.backends.base import PAD_RGB
    from fcn_road_seg.training import export

    small = tmp_path / "small"
    small.mkdir()
    path = sorted(FRAMES.glob("*.png"))[0]
    cv2.imwrite(str(small / path.name), cv2.resize(cv2.imread(str(path)), (240, 180)))
    seen = []
    monkeypatch.setattr(export, "quantize_int8", lambda fp32, out, frames, *a: seen.extend(frames))
    monkeypatch.setattr(export, "write_sidecar", lambda *a: None)
    out = tmp_path / "f.int8.onnx"
    args = [str(model_dir / "m.pt"), "--int8", "-o", str(out), "--no-check"]
    assert export.main([*args, "--calib-dir", str(small), "--calib-frames", "1"]) == 0
    (frame,) = seen
    runtime = OnnxBackend(model_dir / "m.int8.onnx", torch.device("cpu"))
    runtime.set_network_size("auto")
    assert runtime.network_input(180, 240) == ((96, 320), "letterbox")
    assert frame.shape == (1, 96, 320, 3)
    assert (frame[0, :, 128:] == np.array(PAD_RGB, np.uint8)).all()


def test_an_unknown_keep_fp32_node_is_an_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A misspelt --keep-fp32 name left every node quantized, and the sidecar said it was kept."""
    from fcn_road_seg.training.export import main as export_main

    out = tmp_path / "k.int8.onnx"
    args = [str(model_dir / "m.pt"), "--int8", "-o", str(out), "--no-check"]
    args += ["--calib-dir", str(FRAMES), "--calib-frames", "1", "--keep-fp32", "no_such_conv"]
    assert export_main(args) == 1
    err = capsys.readouterr().err
    assert (
        "--keep-fp32: no Conv or ConvTranspose node is named no_such_conv; the graph's are" in err
    )
    assert not out.exists() and not out.with_name(out.name + ".json").exists()
