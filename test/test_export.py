"""training/export.py: checkpoint -> ONNX with built-in parity check, sidecar, atomic writes."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from fcn_road_seg.metadata import read_sidecar, sha256_file
from fcn_road_seg.backends.onnx_backend import OnnxBackend
from fcn_road_seg.errors import ModelError
from fcn_road_seg.training import export as export_module
from fcn_road_seg.training.export import Parity, Tolerance, check_parity, main

from conftest import KITTI_FRAMES

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def kitti_dir() -> Path:
    """The folder of real KITTI Road frames shipped with the project, or a skip naming it."""
    if not any(KITTI_FRAMES.glob("*.png")):
        pytest.skip(f"no KITTI sample frames in {KITTI_FRAMES}")
    return KITTI_FRAMES


def io_of(path: Path) -> tuple[list, list, int]:
    """(input dims, output dims, opset) of an ONNX file; symbolic dims as their names."""
    model = onnx.load(str(path))
    dims = [
        [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in (model.graph.input[0], model.graph.output[0])
    ]
    return (
        dims[0],
        dims[1],
        max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
    )


def image_readers(path: Path) -> list[str]:
    """Op types of the nodes that read the uint8 ``image``: TensorRT accepts only a Cast there."""
    return [n.op_type for n in onnx.load(str(path)).graph.node if "image" in n.input]


def test_default_export_is_fixed_384x1248_and_matches_torch_on_real_frames(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "fcn.onnx"
    assert (
        main(
            [
                str(tiny_model),
                "-o",
                str(out),
                "--check-images",
                str(kitti_dir()),
                "--check-frames",
                "1",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    numbers = re.search(
        r"parity on 1 real frame\(s\) at 384x1248: max \|dP\| = (\S+), masks differ on (\S+) %",
        printed,
    )
    assert numbers, printed
    assert float(numbers[1]) <= 1e-4 and float(numbers[2]) <= 0.01
    model = onnx.load(str(out))
    assert [(v.name, v.type.tensor_type.elem_type) for v in model.graph.input] == [
        ("image", onnx.TensorProto.UINT8)
    ]
    assert [(v.name, v.type.tensor_type.elem_type) for v in model.graph.output] == [
        ("prob", onnx.TensorProto.FLOAT)
    ]
    inputs, outputs, opset = io_of(out)
    assert inputs == [1, 384, 1248, 3] and outputs == [1, 384, 1248] and opset >= 17
    assert image_readers(out) == ["Cast"]
    meta = read_sidecar(out)
    assert meta["input"] == {
        "name": "image",
        "shape": [1, 384, 1248, 3],
        "dtype": "uint8",
        "layout": "NHWC RGB",
    }
    assert meta["output"]["name"] == "prob" and meta["output"]["shape"] == [1, 384, 1248]
    assert meta["dynamic"] is False and meta["opset"] == opset and meta["precision"] == "fp32"
    assert meta["checkpoint_sha256"] == sha256_file(tiny_model)
    assert meta["model_config"] == {"num_classes": 2, "fc_channels": 32, "fc6_kernel": 3}
    assert meta["parity"]["frames"] == 1 and meta["parity"]["max_abs"] <= 1e-4
    assert OnnxBackend(out, torch.device("cpu")).input_size == (384, 1248)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fcn.onnx", "fcn.onnx.json"]


# torch deprecates the TorchScript exporter
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_dynamic_export_with_either_exporter(
    tiny_model: Path, tmp_path: Path, exporter: str
) -> None:
    out = tmp_path / f"{exporter}.onnx"
    assert (
        main(
            [
                str(tiny_model),
                "-o",
                str(out),
                "--dynamic",
                "--height",
                "64",
                "--width",
                "96",
                "--exporter",
                exporter,
                "--check-frames",
                "1",
            ]
        )
        == 0
    )
    inputs, outputs, _ = io_of(out)
    assert isinstance(inputs[1], str) and isinstance(inputs[2], str) and inputs[3] == 3
    assert image_readers(out) == ["Cast"]  # height and width are read from the cast tensor
    assert OnnxBackend(out, torch.device("cpu")).input_size is None
    meta = read_sidecar(out)
    assert meta["dynamic"] is True and meta["exporter"] == exporter
    assert (
        meta["input"]["shape"] == [1, "height", "width", 3]
        and meta["parity"]["source"] == "random"
    )


def test_fp16_export_is_checked_against_fp32_torch(tiny_model: Path, tmp_path: Path) -> None:
    from fcn_road_seg.backends.tensorrt_common import inspect_onnx

    out = tmp_path / "half.onnx"
    assert (
        main(
            [
                str(tiny_model),
                "-o",
                str(out),
                "--fp16",
                "--height",
                "64",
                "--width",
                "96",
                "--check-frames",
                "1",
            ]
        )
        == 0
    )
    meta = read_sidecar(out)
    assert meta["precision"] == "fp16"
    tol = export_module.TOLERANCES["fp16"]
    assert (
        meta["parity"]["max_abs"] <= tol.max_abs
        and meta["parity"]["mask_fraction"] <= tol.mask_fraction
    )
    info = inspect_onnx(out)
    assert info.fp16 and not info.qdq and not info.dynamic
    assert image_readers(out) == ["Cast"]


def test_failed_parity_check_leaves_no_file(
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setitem(export_module.TOLERANCES, "fp32", Tolerance(-1.0, -1.0))
    out = tmp_path / "never.onnx"
    assert (
        main(
            [
                str(tiny_model),
                "-o",
                str(out),
                "--height",
                "64",
                "--width",
                "96",
                "--check-frames",
                "1",
            ]
        )
        == 1
    )
    assert re.search(
        r"parity check FAILED \(fp32\): parity on 1 random frame\(s\) at \S+: max \|dP\| = \S+",
        capsys.readouterr().err,
    )
    assert list(tmp_path.iterdir()) == []


def test_failing_exporter_leaves_no_file(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_written(model, args, f, **kwargs) -> None:
        Path(f).write_bytes(b"partial graph")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    args = export_module.get_args_parser().parse_args(
        [str(tiny_model), "-o", str(tmp_path / "m.onnx")]
    )
    with pytest.raises(ModelError, match="ONNX export \\(dynamo\\) failed: exporter crashed"):
        export_module.export(args)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_model_survives_a_failed_export(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous model")
    monkeypatch.setitem(export_module.TOLERANCES, "fp32", Tolerance(-1.0, -1.0))
    assert (
        main(
            [
                str(tiny_model),
                "-o",
                str(out),
                "--height",
                "32",
                "--width",
                "32",
                "--check-frames",
                "1",
            ]
        )
        == 1
    )
    assert out.read_bytes() == b"previous model" and [p.name for p in tmp_path.iterdir()] == [
        "m.onnx"
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--opset", "16"], "opset 16 is too old"),
        (["--height", "5000"], "--height and --width must be at most 4096, got 5000"),
        (["--check-images", "{empty}"], "--check-images: no images"),
        (["--check-images", "{empty}/none"], "--check-images: {empty}/none is not a folder"),
        (["--int8"], "--int8 needs --calib-dir"),
        (["--calib-dir", "{empty}"], "--calib-dir and --keep-fp32 are for --int8 exports only"),
        (["--keep-fp32", "score_fr"], "--calib-dir and --keep-fp32 are for --int8 exports only"),
        (["--int8", "--calib-dir", "{empty}/none"], "--calib-dir: {empty}/none is not a folder"),
        (
            ["--int8", "--dynamic", "--calib-dir", "{empty}", "--calib-method", "percentile"],
            "--calib-method percentile needs frames of one shape",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "x.onnx"
    assert main([str(tiny_model), "-o", str(out), *[e.format(empty=empty) for e in extra]]) == 1
    assert message.format(empty=empty) in capsys.readouterr().err and not out.exists()


def test_an_output_that_would_replace_the_checkpoint_is_refused(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = tiny_model.read_bytes()
    assert main([str(tiny_model), "-o", str(tiny_model), "--no-check"]) == 1
    assert "an ONNX model's name must end in .onnx" in capsys.readouterr().err
    renamed = tmp_path / "m.onnx"
    renamed.write_bytes(before)
    assert main([str(renamed), "-o", str(renamed), "--no-check"]) == 1
    assert f"-o {renamed} is an input of this run" in capsys.readouterr().err
    (tmp_path / "folder.onnx").mkdir()
    assert main([str(tiny_model), "-o", str(tmp_path / "folder.onnx"), "--no-check"]) == 1
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert tiny_model.read_bytes() == before and renamed.read_bytes() == before
    (tmp_path / "empty").mkdir()  # checked before the (missing) checkpoint is read
    assert main([str(tmp_path / "none.pt"), "--check-images", str(tmp_path / "empty")]) == 1
    assert "--check-images: no images" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--height", "--calib-frames", "--check-frames"])
def test_counts_and_sides_are_checked_by_the_parser(
    tiny_model: Path, flag: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(tiny_model), flag, "0"])
    assert info.value.code == 2 and f"argument {flag}: must be at least" in capsys.readouterr().err


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "none.pt")]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_check_parity_reports_the_numbers() -> None:
    check_parity(Parity(2, "real", 5e-5, 0.0), "fp32")
    with pytest.raises(ModelError, match=r"max \|dP\| = 0.002.*allowed max \|dP\| <= 0.0001"):
        check_parity(Parity(2, "real", 2e-3, 0.0), "fp32")
    with pytest.raises(ModelError, match=r"masks differ on 0.0200 %.*<= 0.0100 % of mask pixels"):
        check_parity(Parity(2, "real", 1e-5, 2e-4), "fp32")
    check_parity(Parity(2, "real", 1e-2, 1e-3), "fp16")
    with pytest.raises(
        ModelError,
        match=r"allowed max \|dP\| <= 0.5 .*--no-check and compare fcn-road-eval's MaxF",
    ):
        check_parity(Parity(5, "real", 0.673, 0.0075), "int8")


def test_sidecar_is_json_with_provenance(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    assert (
        main([str(tiny_model), "-o", str(out), "--height", "32", "--width", "64", "--no-check"])
        == 0
    )
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert (
        meta["parity"] is None
        and meta["example_size"] == [32, 64]
        and meta["checkpoint"] == str(tiny_model)
    )
    assert meta["format"] == "fcn_road_seg.onnx/1" and meta["torch"] == torch.__version__
    # tied both ways: the checkpoint's SHA-256 and the written file's own
    assert meta["checkpoint_sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    assert meta["onnx_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_a_dynamic_model_is_checked_at_its_working_scale(tiny_model: Path, tmp_path: Path) -> None:
    """As the runtime runs it: a 375x1242 KITTI frame at 64 rows is 64x208 (1242 * 64 / 375 =
    211.97, to the nearest multiple of 8), not the frame's own 375x1242."""
    ckpt = torch.load(tiny_model, weights_only=True)
    torch.save({**ckpt, "working_height": 64, "working_size": [64, 208]}, tmp_path / "w.pt")
    frames = Path(__file__).resolve().parents[1] / "data" / "kitti" / "image_2"
    out = tmp_path / "w.onnx"
    args = [str(tmp_path / "w.pt"), "-o", str(out), "--dynamic", "--check-images", str(frames)]
    assert main([*args, "--check-frames", "2"]) == 0
    assert json.loads((tmp_path / "w.onnx.json").read_text())["parity"]["sizes"] == ["64x208"]
