"""training/evaluate.py: prediction at a working size and the CLI (camera view, BEV, testing)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import devkit_bev_labels, level_road_calib, write_calib
from fcn_road_seg.errors import DataError, one_line
from fcn_road_seg.model import FCN8s
from fcn_road_seg.training import data
from fcn_road_seg.training import evaluate as ev
from fcn_road_seg.training.bev import BevMeter
from fcn_road_seg.training.metrics import METRIC_KEYS


def test_predict_resizes_and_restores_size() -> None:
    torch.manual_seed(0)
    model = FCN8s(fc_channels=8, fc6_kernel=3).eval()
    for layer in (model.score_fr, model.score_pool4, model.score_pool3):
        torch.nn.init.normal_(layer.weight)
    images = [torch.rand(3, 20, 30), torch.rand(3, 24, 30), torch.rand(3, 20, 30)]
    probs = ev.predict(model, images, torch.device("cpu"), size=(32, 48))
    assert [p.shape for p in probs] == [(1, 1, 20, 30), (1, 1, 24, 30), (1, 1, 20, 30)]
    for image, p in zip(images, probs):
        x = torch.nn.functional.interpolate(image[None], (32, 48), mode="bilinear", antialias=True)
        with torch.no_grad():
            q = torch.softmax(model(x), 1)[:, 1:]
        q = torch.nn.functional.interpolate(q, image.shape[-2:], mode="bilinear")
        torch.testing.assert_close(p, q)
    native = ev.predict(model, images[:1], torch.device("cpu"))[0]
    with torch.no_grad():
        torch.testing.assert_close(native, torch.softmax(model(images[0][None]), 1)[:, 1:])
    assert native.std() > 1e-3  # a non-trivial map


# --- CLI -----------------------------------------------------------------------------------------


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture()
def road_dir(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int]]]:
    """data_road with 2 categories (different image sizes) and 2 testing images.

    Returns (root, counts).
    """
    rng = np.random.default_rng(0)
    colours = np.array([(255, 0, 0), (255, 0, 255), (0, 0, 0)], np.uint8)
    counts = {}
    for stem, (h, w) in {
        "um_000001": (20, 36),
        "um_000002": (20, 36),
        "uu_000005": (18, 40),
    }.items():
        write_rgb(
            tmp_path / "training/image_2" / f"{stem}.png",
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        )
        labels = rng.choice(3, (h, w), p=[0.5, 0.3, 0.2])
        cat, frame = stem.split("_")
        write_rgb(tmp_path / "training/gt_image_2" / f"{cat}_road_{frame}.png", colours[labels])
        pos, neg = counts.get(cat, (0, 0))
        counts[cat] = (pos + int((labels == 1).sum()), neg + int((labels == 0).sum()))
    for stem in ("um_000010", "uu_000011"):
        write_rgb(
            tmp_path / "testing/image_2" / f"{stem}.png",
            rng.integers(0, 256, (16, 24, 3), dtype=np.uint8),
        )
    (tmp_path / "all.txt").write_text("um_000001\num_000002\nuu_000005\n")
    return tmp_path, counts


def fixture_args(root: Path, model: Path, workers: int = 0) -> list[str]:
    """fcn-road-eval's arguments for the fixture's three labelled frames, on the CPU."""
    split = ["--data-path", str(root), "--split", str(root / "all.txt")]
    return [*split, "--model", str(model), "--device", "cpu", "--workers", str(workers)]


@pytest.fixture()
def untrained_checkpoint(tmp_path: Path) -> Path:
    """A light FCN8s as written by training (fp16 weights).

    Zero score layers, so P(road) = 0.5 everywhere.
    """
    model = FCN8s(fc_channels=8, fc6_kernel=3)
    path = tmp_path / "model.pt"
    torch.save(
        {
            "model": {k: v.half() for k, v in model.state_dict().items()},
            "model_config": model.config,
        },
        path,
    )
    return path


def test_cli_writes_metrics_json_and_submission(
    road_dir: tuple[Path, dict],
    untrained_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    root, counts = road_dir
    out, sub = tmp_path / "eval", tmp_path / "submission"
    assert (
        ev.main(
            [
                *fixture_args(root, untrained_checkpoint),
                "--output",
                str(out),
                "--submission-dir",
                str(sub),
            ]
        )
        == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    assert report["images"] == 3 and set(report["metrics"]) == {"um", "uu", "URBAN"}
    counts["URBAN"] = tuple(map(sum, zip(*counts.values())))
    for cat, (pos, neg) in counts.items():
        m = report["metrics"][cat]
        assert set(METRIC_KEYS) <= set(m)
        # P = 0.5 everywhere: the best (only) operating point is "all road" at threshold 0.
        assert (m["posNum"], m["negNum"]) == (pos, neg)
        assert m["MaxF"] == pytest.approx(2 * pos / (2 * pos + neg))
        assert m["AP"] == pytest.approx(pos / (pos + neg)) and m["PRE"] == pytest.approx(
            pos / (pos + neg)
        )
        assert m["IoU"] == pytest.approx(pos / (pos + neg))
        assert (m["REC"], m["FPR"], m["FNR"], m["threshold"]) == (1, 1, 0, 0)
    table = capsys.readouterr().out
    assert "URBAN" in table and "MaxF" in table
    pngs = sorted(p.name for p in sub.iterdir())
    assert pngs == ["um_road_000001.png", "um_road_000002.png", "uu_road_000005.png"]
    conf = cv2.imread(str(sub / "uu_road_000005.png"), cv2.IMREAD_UNCHANGED)
    # round(0.5 * 255)
    assert conf.shape == (18, 40) and conf.dtype == np.uint8 and (conf == 128).all()


def test_cli_resized_seeded_split_and_testing(
    road_dir: tuple[Path, dict], untrained_checkpoint: Path, tmp_path: Path
) -> None:
    root, _ = road_dir
    out = tmp_path / "eval"
    assert (
        ev.main(
            [
                "--data-path",
                str(root),
                "--val-fraction",
                "0.6",
                "--split-seed",
                "1",
                "--size",
                "32",
                "64",
                "--model",
                str(untrained_checkpoint),
                "--device",
                "cpu",
                "--workers",
                "0",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    assert report["images"] == 2  # round(2 * 0.6) um + round(1 * 0.6) uu
    assert report["network_size"].startswith("32x64 (")  # --size 32 64: every frame stretched
    assert report["network_size"].endswith(" -> 32x64)")
    sub = tmp_path / "submission_testing"
    assert (
        ev.main(
            [
                "--data-path",
                str(root),
                "--testing",
                "--submission-dir",
                str(sub),
                "--model",
                str(untrained_checkpoint),
                "--device",
                "cpu",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in sub.iterdir()) == ["um_road_000010.png", "uu_road_000011.png"]
    assert (
        ev.main(["--data-path", str(root), "--testing", "--model", str(untrained_checkpoint)]) == 2
    )


def test_cli_reports_bad_model_and_data(
    road_dir: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, _ = road_dir
    assert ev.main(fixture_args(root, tmp_path / "none.pt")) == 1
    assert f"model file not found: {tmp_path / 'none.pt'}" in capsys.readouterr().err
    assert (
        ev.main(["--data-path", str(tmp_path / "nodata"), "--model", "x.pt", "--device", "cpu"])
        == 1
    )
    assert "image folder not found" in capsys.readouterr().err


def test_cli_bad_frame_is_one_line_naming_the_file(
    road_dir: tuple[Path, dict], untrained_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    root, _ = road_dir
    bad = root / "training" / "image_2" / "uu_000005.png"
    bad.write_bytes(b"not a png")
    assert ev.main(fixture_args(root, untrained_checkpoint, workers=1)) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot read image {bad} (missing, not an image or corrupt)"


class _Failing(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        raise DataError(f"cannot read image /data/frame_{index}.png")


def test_worker_error_reaches_the_user_as_its_own_message() -> None:
    """torch re-raises a worker's DataError with the worker traceback inside.

    one_line gives the message back.
    """
    loader = torch.utils.data.DataLoader(_Failing(), num_workers=1)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    assert "Traceback" in str(info.value)
    assert one_line(info.value) == "cannot read image /data/frame_0.png"


def test_cli_bev_metrics_and_missing_calibration(
    road_dir: tuple[Path, dict],
    untrained_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    root, _ = road_dir
    args = [*fixture_args(root, untrained_checkpoint), "--bev"]
    assert ev.main(args) == 1
    err = capsys.readouterr().err
    assert "--bev needs each frame's calibration: 3 of 3 files are missing" in err
    assert str(root / "training" / "calib" / "um_000001.txt") in err
    # maps the devkit's view onto the fixture's 20 x 36 frames
    calib = level_road_calib(f=20.0, cx=18.0, cy=2.0)
    for stem in ("um_000001", "um_000002", "uu_000005"):
        write_calib(root / "training" / "calib" / f"{stem}.txt", calib)
    out = tmp_path / "eval"
    assert ev.main([*args, "--output", str(out)]) == 0
    bev = json.loads((out / "metrics.json").read_text())["bev"]
    assert "transform2BEV" in bev["view"] and "training/calib" in bev["view"]
    pos = neg = 0
    for sample in data.split(root, "val", root / "all.txt"):
        cells = devkit_bev_labels(data.read_target(sample.target), calib)
        pos, neg = pos + int((cells == 1).sum()), neg + int((cells == 0).sum())
    m = bev["metrics"]["URBAN"]
    assert (m["posNum"], m["negNum"]) == (pos, neg) and pos > 1000
    assert m["MaxF"] == pytest.approx(2 * pos / (2 * pos + neg))  # P = 0.5 everywhere: "all road"
    assert "bird's-eye view" in capsys.readouterr().out
    assert cv2.imread(str(out / "bev.png")).shape[1] == 3 * 400 + 2 * 8  # the 3 frames, drawn
    assert (
        ev.main(
            [
                "--data-path",
                str(root),
                "--testing",
                "--bev",
                "--submission-dir",
                str(tmp_path / "s"),
                "--model",
                str(untrained_checkpoint),
            ]
        )
        == 2
    )


def test_default_model_in_bev_on_the_real_calibrated_frame(
    kitti_road_root: Path, tmp_path: Path
) -> None:
    from fcn_road_seg.backends import load_backend
    from fcn_road_seg.model import default_model_path

    sample = next(s for s in data.list_samples(kitti_road_root) if s.stem == "um_000000")
    meter = BevMeter([sample], Path(__file__).parent / "data" / "um_000000_calib.txt")
    camera = ev.evaluate_backend(
        load_backend(default_model_path(), "auto", "cpu"),
        [sample],
        workers=0,
        progress=False,
        bev=meter,
    )
    # a held-out frame (seed-0 split): 84.1 % in the camera view, 92.6 % in bird's-eye view
    # (INT8, CPU; fp32 torch: 84.2 % and 93.1 %)
    assert (
        camera.compute()["URBAN"]["MaxF"] > 0.82
        and meter.evaluator.compute()["URBAN"]["MaxF"] > 0.92
    )


def test_cli_bev_refuses_a_calibration_that_is_no_camera(
    road_dir: tuple[Path, dict],
    untrained_checkpoint: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """NaN in one frame's P2 exited 0 with that frame silently out of the metric."""
    root, _ = road_dir
    calib = level_road_calib(f=20.0, cx=18.0, cy=2.0)
    for stem in ("um_000001", "um_000002", "uu_000005"):
        write_calib(root / "training" / "calib" / f"{stem}.txt", calib)
    calib["P2"] = calib["P2"].copy()
    calib["P2"][2] = float("nan")
    bad = write_calib(root / "training" / "calib" / "um_000002.txt", calib)
    assert ev.main([*fixture_args(root, untrained_checkpoint), "--bev"]) == 1
    assert f"error: {bad}: 'P2' holds numbers that are not finite" in capsys.readouterr().err


def test_cli_empty_split_is_an_error_not_a_nan_metric(
    road_dir: tuple[Path, dict],
    untrained_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """An empty split file exited 0 and wrote metrics.json with a NaN ECE."""
    root, _ = road_dir
    (root / "empty.txt").write_text("# nothing\n")
    args = ["--data-path", str(root), "--split", str(root / "empty.txt")]
    out = tmp_path / "eval"
    code = ev.main([*args, "--model", str(untrained_checkpoint), "--output", str(out)])
    assert code == 1 and not out.exists()
    assert f"error: no frames to evaluate: {root / 'empty.txt'} selects none" in (
        capsys.readouterr().err
    )


def test_cli_outputs_and_options_are_checked_before_the_model_loads(
    road_dir: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, _ = road_dir
    (tmp_path / "afile").write_text("")
    args = [*fixture_args(root, tmp_path / "none.pt"), "--output", str(tmp_path / "afile" / "x")]
    assert ev.main(args) == 1
    assert f"{tmp_path / 'afile'} is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ev.main(["--data-path", str(root), "--model", "x.pt", "--val-fraction", "nan"])
    assert "argument --val-fraction: must be a finite number in [0, 0.99]" in (
        capsys.readouterr().err
    )
    args = [*fixture_args(root, tmp_path / "none.pt"), "--output", str(tmp_path / "afile")]
    assert ev.main(args) == 1  # an existing file where metrics.json's folder should be
    assert f"--output {tmp_path / 'afile'} is a file; give a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ev.main(["--data-path", str(root), "--model", "x.pt", "--workers", "-1"])
    assert "argument --workers: must be at least 0, got -1" in capsys.readouterr().err
