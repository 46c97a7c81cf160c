"""training/evaluate.py: KITTI devkit metrics on hand-computed cases, a devkit reference, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from tempfile import TemporaryDirectory

import cv2
import numpy as np
import pytest
import torch

from conftest import level_road_calib, write_calib
from fcn_road_seg.errors import DataError, one_line
from fcn_road_seg.geometry import kitti_road_homography
from fcn_road_seg.model import FCN8s
from training import data
from training import evaluate as ev

THRESH = np.arange(256) / 255.0


def devkit_eval_exp(
    gt_road: np.ndarray, prob: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The KITTI devkit's ``evalExp`` (helper.py), verbatim in numpy."""
    thres_inf = np.concatenate(([-np.inf], THRESH, [np.inf]))
    fn_hist = np.histogram(prob[gt_road & valid], bins=thres_inf)[0]
    fn = np.cumsum(fn_hist)[0 : len(THRESH)]
    fp_hist = np.histogram(prob[~gt_road & valid], bins=thres_inf)[0]
    fp = np.flipud(np.cumsum(np.flipud(fp_hist)))[1 : 1 + len(THRESH)]
    return fn, fp, int((gt_road & valid).sum()), int((~gt_road & valid).sum())


def devkit_maxf(fn: np.ndarray, fp: np.ndarray, pos: int, neg: int) -> dict[str, float]:
    """The devkit's ``pxEval_maximizeFMeasure``.

    The argmax is mapped back through the validity filter.
    """
    tp = pos - fn
    recall, precision = tp / float(pos), tp / (tp + fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    recall, precision = recall[keep], precision[keep]
    ap = sum(max(precision[np.where(recall >= i)]) for i in np.arange(0, 1.1, 0.1)) / 11
    f = 2 * precision * recall / (precision + recall + 1e-10)
    k = np.flatnonzero(keep)[f.argmax()]
    return {
        "MaxF": f.max(),
        "AP": ap,
        "PRE": tp[k] / (tp[k] + fp[k]),
        "REC": tp[k] / pos,
        "FPR": fp[k] / neg,
        "FNR": fn[k] / pos,
        "IoU": tp[k] / (tp[k] + fp[k] + fn[k]),
        "threshold": THRESH[k],
    }


def labelled(
    road: list[float], nonroad: list[float], ignored: list[float] = ()
) -> tuple[torch.Tensor, ...]:
    """P(road) and targets (1 x N) for pixel lists of each label."""
    prob = torch.tensor([*road, *nonroad, *ignored], dtype=torch.float32)[None]
    target = torch.tensor([1] * len(road) + [0] * len(nonroad) + [255] * len(ignored))[None]
    return prob, target


def test_perfect_prediction() -> None:
    target = torch.tensor([[1, 1, 0, 255], [0, 1, 0, 255]])
    evaluator = ev.RoadEvaluator(["um"])
    evaluator.update(target.clamp(max=1).float(), target, "um")
    m = evaluator.compute()["URBAN"]
    assert (m["MaxF"], m["AP"], m["IoU"], m["PRE"], m["REC"], m["FPR"], m["FNR"]) == (
        1,
        1,
        1,
        1,
        1,
        0,
        0,
    )
    assert (m["posNum"], m["negNum"]) == (3, 3)
    assert m["threshold"] == 1 / 255  # first threshold above P = 0
    assert evaluator.compute()["um"] == m


def test_constructed_case_exact_values() -> None:
    # Road: 6 at 0.9, 2 at 0.3. Non-road: 1 at 0.8, 4 at 0.25, 7 at 0.1.
    # Ignored pixels must not count.
    prob, target = labelled(
        [0.9] * 6 + [0.3] * 2, [0.8] + [0.25] * 4 + [0.1] * 7, [1.0] * 5 + [0.0] * 5
    )
    evaluator = ev.RoadEvaluator(["uu"])
    evaluator.update(prob, target, "uu")
    m = evaluator.compute()["URBAN"]
    # Best operating point: 0.25 < t <= 0.3, i.e. the first threshold 64/255:
    # TP 8, FP 1, FN 0, TN 11.
    assert m["threshold"] == 64 / 255
    assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (8, 1, 0, 11)
    assert m["MaxF"] == pytest.approx(16 / 17, abs=1e-9)
    assert m["PRE"] == pytest.approx(8 / 9) and m["REC"] == 1 and m["IoU"] == pytest.approx(8 / 9)
    assert m["FPR"] == pytest.approx(1 / 12) and m["FNR"] == 0
    # 11-point AP: recall 1 up to t = 0.3 (best precision 8/9),
    # recall 0.75 with precision 1 up to t = 0.9.
    assert m["AP"] == pytest.approx((8 * 1.0 + 3 * 8 / 9) / 11)
    fn, fp, pos, neg = evaluator.counts()
    assert (pos, neg) == (8, 12)
    assert fn[0] == 0 and fn[int(0.3 * 255)] == 0 and fn[int(0.3 * 255) + 1] == 2 and fn[255] == 8
    assert (
        fp[0] == 12 and fp[int(0.1 * 255) + 1] == 5 and fp[64] == 1 and fp[int(0.8 * 255) + 1] == 0
    )


def test_ignored_pixels_change_nothing() -> None:
    prob, target = labelled([0.9, 0.4, 0.7], [0.2, 0.6, 0.05])
    a, b = ev.RoadEvaluator(["x"]), ev.RoadEvaluator(["x"])
    a.update(prob, target, "x")
    prob2, target2 = labelled([0.9, 0.4, 0.7], [0.2, 0.6, 0.05], [0.0, 0.5, 1.0, 0.99])
    b.update(prob2, target2, "x")
    assert torch.equal(a.hist, b.hist)
    assert a.compute() == b.compute()


def test_thresholds_are_exact_at_k_over_255() -> None:
    # P exactly k/255 (as the devkit reads 8-bit PNGs) counts as road at threshold k and below
    # only.
    k = torch.arange(256)
    for dtype in (torch.float64, torch.float32):
        evaluator = ev.RoadEvaluator(["c"])
        prob = (k.double() / 255).to(dtype)
        evaluator.update(prob, torch.ones(256, dtype=torch.long), "c")
        fn = evaluator.counts()[0]
        reference = devkit_eval_exp(np.ones(256, bool), prob.double().numpy(), np.ones(256, bool))[
            0
        ]
        assert np.array_equal(fn, reference)
        if dtype == torch.float64:
            assert np.array_equal(fn, np.arange(256))  # FN[j] = #{k < j}


def test_matches_devkit_reference_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    evaluator = ev.RoadEvaluator(["um", "umm"])
    per_cat: dict[str, list[np.ndarray]] = {"um": [], "umm": []}
    for i in range(6):
        cat = ["um", "umm"][i % 2]
        target = rng.choice([0, 1, 255], (20, 30), p=[0.5, 0.4, 0.1])
        noisy = np.clip((target == 1) * 0.6 + rng.normal(0.2, 0.25, target.shape), 0, 1)
        prob = np.where(
            rng.random(target.shape) < 0.2, rng.integers(0, 256, target.shape) / 255, noisy
        )
        prob = prob.astype(np.float32)
        evaluator.update(torch.from_numpy(prob), torch.from_numpy(target), cat)
        per_cat[cat].append(np.stack([prob, target]))
    metrics = evaluator.compute()
    for cat in ["um", "umm", "URBAN"]:
        stack = np.concatenate(
            [x for c, xs in per_cat.items() if cat in (c, "URBAN") for x in xs], axis=1
        )
        prob, target = stack[0].astype(np.float64), stack[1]
        ref_counts = devkit_eval_exp(target == 1, prob, target != 255)
        got = evaluator.counts(cat)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref_counts)), cat
        ref = devkit_maxf(*ref_counts)
        for key, value in ref.items():
            assert metrics[cat][key] == pytest.approx(value, abs=1e-9), (cat, key)
    assert 0.5 < metrics["URBAN"]["MaxF"] < 1 and 0.5 < metrics["URBAN"]["AP"] < 1


def test_hard_prediction_baselines() -> None:
    target = torch.tensor([[1, 1, 0, 0, 0, 255]])
    road = ev.hard_metrics(torch.ones_like(target), target)
    assert (road["TP"], road["FP"], road["FN"], road["TN"]) == (2, 3, 0, 0)
    assert (
        road["IoU"] == pytest.approx(2 / 5)
        and road["F"] == pytest.approx(4 / 7)
        and road["REC"] == 1
    )
    none = ev.hard_metrics(torch.zeros_like(target), target)
    assert (none["IoU"], none["F"], none["REC"], none["FPR"]) == (0, 0, 0, 0)
    exact = ev.hard_metrics(np.array([[1, 0, 0, 0, 1, 1]]), target.numpy())
    assert (exact["TP"], exact["FP"], exact["FN"], exact["TN"]) == (1, 1, 1, 2)
    assert exact["PRE"] == exact["REC"] == exact["F"] == 0.5 and exact["IoU"] == pytest.approx(
        1 / 3
    )
    assert exact["FPR"] == pytest.approx(1 / 3) and exact["FNR"] == 0.5


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
                "--data-path",
                str(root),
                "--split",
                str(root / "all.txt"),
                "--model",
                str(untrained_checkpoint),
                "--device",
                "cpu",
                "--workers",
                "0",
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
        assert set(ev.METRIC_KEYS) <= set(m)
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
    assert (
        conf.shape == (18, 40) and conf.dtype == np.uint8 and (conf == 128).all()
    )  # round(0.5 * 255)


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
    assert report["network_size"] == "32x64 (stretch)"
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
    assert (
        ev.main(
            ["--data-path", str(root), "--model", str(tmp_path / "none.pt"), "--device", "cpu"]
        )
        == 1
    )
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
    assert (
        ev.main(
            [
                "--data-path",
                str(root),
                "--split",
                str(root / "all.txt"),
                "--model",
                str(untrained_checkpoint),
                "--device",
                "cpu",
                "--workers",
                "1",
            ]
        )
        == 1
    )
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


# --- bird's-eye view -----------------------------------------------------------------------------


def devkit_bev_labels(labels: np.ndarray, calib: dict) -> np.ndarray:
    """The devkit's BEV of a label map, cell by cell in plain numpy.

    255 where the devkit keeps no pixel.
    """
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"].reshape(3, 3)
    tr = np.vstack([calib["Tr_cam_to_road"].reshape(3, 4), [0, 0, 0, 1]])
    tr33 = (calib["P2"].reshape(3, 4) @ r0 @ np.linalg.inv(tr))[:, [0, 2, 3]]
    x = np.arange(-10 + 0.025, 10, 0.05).astype(np.float32)
    z = np.arange(46 - 0.025, 6, -0.05).astype(np.float32)
    xx, zz = np.meshgrid(x, z)
    u, v, w = np.tensordot(tr33, np.stack([xx, zz, np.ones_like(xx)]).astype(float), axes=1)
    u, v = u / w, v / w
    h, wd = labels.shape
    keep = (u >= 1) & (v >= 1) & (u <= wd) & (v <= h)
    out = np.full(xx.shape, 255, np.uint8)
    out[keep] = labels[np.floor(v[keep]).astype(int) - 1, np.floor(u[keep]).astype(int) - 1]
    return out


def test_bev_meter_counts_the_devkit_cells() -> None:
    h, w = 375, 1242
    calib = level_road_calib()
    rng = np.random.default_rng(3)
    labels = rng.choice(np.array([0, 1, 255], np.uint8), (h, w), p=[0.5, 0.3, 0.2])
    prob = torch.from_numpy(rng.random((h, w), dtype=np.float32))
    sample = data.Sample("um_000001", Path("um_000001.png"), Path("um_road_000001.png"))
    with TemporaryDirectory() as folder:
        meter = ev.BevMeter([sample], write_calib(Path(folder) / "um_000001.txt", calib))
        meter.update(sample, prob, labels)
    bev_labels = devkit_bev_labels(labels, calib)
    expected = ev.RoadEvaluator(["um"])
    bev_prob = ev.KittiBev(kitti_road_homography(calib), (h, w)).transform(prob.numpy())
    expected.update(torch.from_numpy(bev_prob), torch.from_numpy(bev_labels), "um")
    fn, fp, pos, neg = meter.evaluator.counts()
    assert (pos, neg) == (
        int((bev_labels == 1).sum()),
        int((bev_labels == 0).sum()),
    ) and pos > 10000
    assert np.array_equal(fn, expected.counts()[0]) and np.array_equal(fp, expected.counts()[1])
    # the BEV weighs frames differently from the camera view: near rows cover fewer cells than far
    # ones
    assert pos / (pos + neg) != pytest.approx(
        float((labels == 1).sum() / (labels != 255).sum()), abs=1e-4
    )


def test_cli_bev_metrics_and_missing_calibration(
    road_dir: tuple[Path, dict],
    untrained_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    root, _ = road_dir
    args = [
        "--data-path",
        str(root),
        "--split",
        str(root / "all.txt"),
        "--model",
        str(untrained_checkpoint),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--bev",
    ]
    assert ev.main(args) == 1
    err = capsys.readouterr().err
    assert "--bev needs each frame's calibration: 3 of 3 files are missing" in err
    assert str(root / "training" / "calib" / "um_000001.txt") in err
    calib = level_road_calib(
        f=20.0, cx=18.0, cy=2.0
    )  # maps the devkit's view onto the fixture's 20 x 36 frames
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
    meter = ev.BevMeter([sample], Path(__file__).parent / "data" / "um_000000_calib.txt")
    camera = ev.evaluate_backend(
        load_backend(default_model_path(), "auto", "cpu"),
        [sample],
        workers=0,
        progress=False,
        bev=meter,
    )
    # a held-out frame (seed-0 split): 84.3 % in the camera view, 94.1 % in bird's-eye view
    # (INT8, CPU)
    assert (
        camera.compute()["URBAN"]["MaxF"] > 0.82
        and meter.evaluator.compute()["URBAN"]["MaxF"] > 0.92
    )
