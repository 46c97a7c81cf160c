"""training/calibration.py: ECE/MCE/Brier on hand-computed cases.

Also temperature recovery and T in every backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fcn_road_seg.backends import load_backend
from fcn_road_seg.metadata import read_sidecar
from fcn_road_seg.errors import ModelError
from fcn_road_seg.image import Frame
from fcn_road_seg.model import RoadProbability, untrained_model
from fcn_road_seg.training import calibration as cal


def meter_of(p: list[float], y: list[int]) -> dict:
    meter = cal.CalibrationMeter()
    meter.update(torch.tensor(p), torch.tensor(y, dtype=torch.uint8))
    return meter.compute()


def test_perfectly_calibrated_bins_give_zero_ece() -> None:
    # bin [0.2, 0.267): P = 0.25 on 4 pixels, 1 road;
    # bin [0.733, 0.8): P = 0.75 on 4 pixels, 3 road.
    stats = meter_of([0.25] * 4 + [0.75] * 4, [1, 0, 0, 0, 1, 1, 1, 0])
    assert stats["ECE"] == pytest.approx(0.0, abs=1e-12) and stats["MCE"] == pytest.approx(
        0.0, abs=1e-12
    )
    # same in both bins: 0.1875
    assert stats["Brier"] == pytest.approx((0.75**2 + 3 * 0.25**2) / 4)
    assert [b["count"] for b in stats["bins"] if b["count"]] == [4, 4]


def test_over_confident_predictions() -> None:
    # P = 0.95 on 10 pixels of which 5 are road; P = 0.02 on 10 pixels with no road.
    stats = meter_of([0.95] * 10 + [0.02] * 10, [1] * 5 + [0] * 5 + [0] * 10)
    assert stats["ECE"] == pytest.approx((10 * 0.45 + 10 * 0.02) / 20)  # 0.235
    assert stats["MCE"] == pytest.approx(0.45)
    assert stats["Brier"] == pytest.approx((5 * 0.05**2 + 5 * 0.95**2 + 10 * 0.02**2) / 20)


def test_ignored_pixels_and_the_top_bin() -> None:
    stats = meter_of([1.0, 1.0, 0.3], [1, 255, 255])  # P = 1 falls in the last bin; 255 is ignored
    assert stats["pixels"] == 1 and stats["bins"][-1]["count"] == 1 and stats["ECE"] == 0.0


def test_fit_recovers_a_known_temperature() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 500, generator=g) * 4
    labels = (torch.rand(400, 500, generator=g) < torch.sigmoid(z / 2.5)).to(torch.uint8)
    labels[:10] = 255  # ignored rows do not matter
    assert cal.fit_temperature([(z, labels)]) == pytest.approx(2.5, rel=0.03)


def test_fit_resizes_back_like_the_runtime() -> None:
    """z at a quarter size, labels at full size: the fit upsamples sigmoid(z / T) before NLL."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 1, 50, 60, generator=g).mul(5)
    full = torch.nn.functional.interpolate(
        torch.sigmoid(z / 0.5), size=(200, 240), mode="bilinear", align_corners=False
    )[0, 0]
    labels = (torch.rand(200, 240, generator=g) < full).to(torch.uint8)
    assert cal.fit_temperature([(z[0, 0], labels)]) == pytest.approx(0.5, rel=0.05)


def test_a_temperature_at_the_search_edge_is_flagged() -> None:
    """Labels that ignore z: the NLL falls as T grows, so the fit stops at T = e^3."""
    g = torch.Generator().manual_seed(2)
    z = torch.randn(200, 200, generator=g) * 4
    labels = (torch.rand(200, 200, generator=g) < 0.5).to(torch.uint8)
    temperature = cal.fit_temperature([(z, labels)])
    assert temperature == pytest.approx(math.exp(3.0), rel=1e-3)
    assert "T = 20.1 is at the end of its search range [0.0498, 20.1]" in cal.edge_warning(
        temperature
    )
    assert cal.edge_warning(2.5) is None and cal.edge_warning(0.05) is not None


@pytest.fixture(scope="module")
def tempered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint with T = 3 and working size 64x96."""
    path = tmp_path_factory.mktemp("tempered") / "t.pt"
    model = untrained_model(fc_channels=16, fc6_kernel=3, score_std=0.5)
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": model.config,
            "working_size": [64, 96],
            "temperature": 3.0,
        },
        path,
    )
    return path


def test_torch_and_onnx_apply_the_temperature(tempered: Path, tmp_path: Path) -> None:
    """A 64x96 frame (the working size, so nothing is resized).

    P_T = sigmoid(logit(P_1) / T) pixel by pixel.
    """
    pytest.importorskip("onnxruntime")
    from fcn_road_seg.training.export import main as export_main

    frame = Frame(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8), "rgb8")
    torch_b = load_backend(tempered, "torch", "cpu")
    p = torch_b.probability(frame).double()
    with torch.inference_mode():
        p1 = RoadProbability(torch_b.net.fcn)(torch.from_numpy(frame.pixels)[None])[0].double()
    torch.testing.assert_close(p, torch.sigmoid(torch.logit(p1) / 3.0), atol=1e-6, rtol=0)
    assert torch.equal(p >= 0.5, p1 >= 0.5)  # the 0.5 mask does not move
    onnx_path = tmp_path / "t.onnx"
    assert export_main([str(tempered), "-o", str(onnx_path), "--check-frames", "1"]) == 0
    assert read_sidecar(onnx_path)["temperature"] == 3.0
    got = load_backend(onnx_path, "onnxruntime", "cpu").probability(frame).double()
    assert (got - p).abs().max().item() < 1e-4


def test_bad_temperature_is_refused(tmp_path: Path) -> None:
    model = untrained_model(fc_channels=16, fc6_kernel=3)
    path = tmp_path / "bad.pt"
    torch.save(
        {"model": model.state_dict(), "model_config": model.config, "temperature": -1.0}, path
    )
    with pytest.raises(ModelError, match=r"bad\.pt: temperature -1\.0 is not a positive number"):
        load_backend(path, "torch", "cpu")
    with pytest.raises(ModelError, match="temperature must be a positive number"):
        RoadProbability(model, math.nan)


def test_calibrate_command_writes_t_and_diagrams(
    tempered: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_data import make_road

    root = make_road(tmp_path / "road", ["um_000000", "um_000001", "uu_000000"], size=(40, 60))
    (tmp_path / "val.txt").write_text("um_000000\num_000001\nuu_000000\n")
    out = tmp_path / "calibrated.pt"
    assert (
        cal.main(
            [
                str(tempered),
                "--data-path",
                str(root),
                "--split",
                str(tmp_path / "val.txt"),
                "-o",
                str(out),
                "--diagram-dir",
                str(tmp_path / "diag"),
                "--no-progress",
            ]
        )
        == 0
    )
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["temperature"] > 0 and ckpt["calibration"]["frames"] == 3
    assert load_backend(out, "torch", "cpu").temperature == ckpt["temperature"]
    assert (tmp_path / "diag" / "reliability_after.png").stat().st_size > 5000
    assert f"T = {ckpt['temperature']:.4f} on 3 frames" in capsys.readouterr().out


def test_calibrate_checks_outputs_and_splits_before_fitting(
    tempered: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_data import make_road

    root = make_road(tmp_path / "road", ["um_000000", "um_000001"], size=(40, 60))
    (tmp_path / "afile").write_text("")
    (tmp_path / "none.txt").write_text("")
    before = tempered.read_bytes()
    common = [str(tempered), "--data-path", str(root), "--no-progress"]
    # the default output is the input: a diagram folder that cannot be made must fail first
    assert cal.main([*common, "--diagram-dir", str(tmp_path / "afile" / "d")]) == 1
    assert "cannot write --diagram-dir" in capsys.readouterr().err
    assert tempered.read_bytes() == before
    assert cal.main([str(tmp_path), "--data-path", str(root)]) == 1
    assert f"the output (the default -o, the checkpoint itself) {tmp_path} is a folder" in (
        capsys.readouterr().err
    )
    assert cal.main([*common, "--network-size", "0x"]) == 1
    assert (
        "--network-size: network_size '0x' is not auto, native or HxW" in capsys.readouterr().err
    )
    assert cal.main([*common, "--split", str(tmp_path / "none.txt")]) == 1
    assert f"--data-path {root}: empty validation split" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cal.main([*common, "--val-fraction", "1.5"])
    assert info.value.code == 2 and "argument --val-fraction" in capsys.readouterr().err
    assert tempered.read_bytes() == before


def test_calibrate_warns_of_ground_truth_in_unknown_colours(
    tempered: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_data import make_road

    root = make_road(tmp_path / "road", ["um_000000", "um_000001"], size=(40, 60))
    grey = np.full((40, 60, 3), 77, np.uint8)
    gt = root / "training" / "gt_image_2" / "um_road_000001.png"
    assert cv2.imwrite(str(gt), grey)
    (tmp_path / "val.txt").write_text("um_000000\num_000001\n")
    args = [str(tempered), "--data-path", str(root), "--split", str(tmp_path / "val.txt")]
    assert cal.main([*args, "-o", str(tmp_path / "c.pt"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {gt}: 2400 pixels in colours other than road" in err
    assert "RGB(77, 77, 77) x 2400" in err
