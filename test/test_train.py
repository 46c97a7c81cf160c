"""training/train.py: a short real training run.

Exact resume, LR schedule, DDP on gloo.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fcn_road_seg.errors import OptionError
from fcn_road_seg.model import read_checkpoint
from fcn_road_seg.training import data
from fcn_road_seg.training import evaluate as ev
from fcn_road_seg.training import train as tr

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--fc-channels",
    "8",
    "--fc6-kernel",
    "3",
    "--size",
    "32",
    "48",
    "--batch-size",
    "4",
    "--workers",
    "0",
    "--val-batch-size",
    "4",
    "--threads",
    "2",
    "--no-progress",
    "--no-tensorboard",
    "--lr",
    "1e-3",
]


def read_log(out: Path) -> list[dict[str, float]]:
    with open(out / "log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def synthetic_road(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data_road with 8 + 4 small random frames in two categories (no shared data needed)."""
    root = tmp_path_factory.mktemp("data_road")
    rng = np.random.default_rng(0)
    # BGR: non-road, road, ignore
    colours = np.array([(0, 0, 255), (255, 0, 255), (0, 0, 0)], np.uint8)
    for i in range(12):
        stem = f"{'um' if i % 2 else 'uu'}_{i:06d}"
        h, w = 36, 52
        labels = np.zeros((h, w), np.int64)
        labels[h // 2 :] = 1  # road in the lower half, like a camera view
        labels[rng.random((h, w)) < 0.05] = 2
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image[labels == 1] //= 3
        for folder, name, pixels in (
            ("image_2", f"{stem}.png", image),
            ("gt_image_2", data.gt_name(stem), colours[labels]),
        ):
            (root / "training" / folder).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / "training" / folder / name), pixels)
    (root / "train.txt").write_text(
        "".join(f"{'um' if i % 2 else 'uu'}_{i:06d}\n" for i in range(8))
    )
    (root / "val.txt").write_text(
        "".join(f"{'um' if i % 2 else 'uu'}_{i:06d}\n" for i in range(8, 12))
    )
    return root


def synthetic_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data-path",
        str(root),
        "--train-split",
        str(root / "train.txt"),
        "--val-split",
        str(root / "val.txt"),
        "--output-dir",
        str(out),
        *TINY,
        *extra,
    ]


def test_short_camvid_run_learns_road(camvid_root: Path, tmp_path: Path) -> None:
    """A 16-step CPU run on real CamVid road labels beats the trivial predictions.

    The trivial predictions are all-road and all-non-road.
    """
    train_stems = data.read_stems(camvid_root / "train.txt")[:32]
    val_stems = data.read_stems(camvid_root / "val.txt")[::6][:8]
    (tmp_path / "train.txt").write_text("\n".join(train_stems))
    (tmp_path / "val.txt").write_text("\n".join(val_stems))
    out = tmp_path / "run"
    args = [
        "--data-path",
        str(camvid_root),
        "--train-split",
        str(tmp_path / "train.txt"),
        "--val-split",
        str(tmp_path / "val.txt"),
        "--output-dir",
        str(out),
        "--base-size",
        "72",
        "96",
        "--size",
        "72",
        "96",
        "--scale-range",
        "1",
        "1",
        "--color-jitter",
        "0",
        "0",
        "0",
        "0",
        "--val-size",
        "72",
        "96",
        "--fc-channels",
        "32",
        "--fc6-kernel",
        "3",
        "--dropout",
        "0",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--lr",
        "3e-4",
        "--lr-warmup-epochs",
        "0.5",
        "--workers",
        "0",
        "--threads",
        "2",
        "--seed",
        "0",
        "--no-progress",
    ]
    assert tr.main(args) == 0
    log = read_log(out)
    assert [r["step"] for r in log] == [8, 16]
    # The untrained model predicts P = 0.5 everywhere (zero score layers): loss ln 2 at step 0.
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"] and log[-1][
        "train_loss"
    ] < 0.8 * math.log(2)

    # Trivial baselines on the same validation images, at full resolution.
    samples = data.split(camvid_root, "val", tmp_path / "val.txt")
    targets = torch.cat([torch.from_numpy(data.read_target(s.target)).flatten() for s in samples])
    road, non_road = int((targets == 1).sum()), int((targets == 0).sum())  # 255 is ignored
    # Road everywhere: TP = road, FP = non-road, FN = 0. Road nowhere: TP = 0, so IoU = F = 0.
    all_road_iou, all_road_f = road / (road + non_road), 2 * road / (2 * road + non_road)
    best = max(log, key=lambda r: r["val_MaxF"])
    assert best["val_IoU"] > all_road_iou + 0.15 and best["val_IoU"] > 0.15  # nowhere: IoU 0
    assert best["val_MaxF"] > all_road_f + 0.1

    # The slim fp16 model is the best epoch's, loads for deployment and re-evaluates to the logged
    # metrics.
    slim = torch.load(out / "model_best_fp16.pt", weights_only=True)
    assert set(slim) == {
        "model",
        "model_config",
        "working_size",
        "working_height",
        "datasets",
        "encoder",
        "metrics",
        "train_args",
        "temperature",
        "calibration",
    }
    assert slim["working_size"] == [72, 96] and slim["encoder"] == "scratch"
    # calibrated at the end on the validation split: T > 0 and the stored numbers are the fitted
    # ones
    calibration = json.loads((out / "calibration.json").read_text())
    assert (
        slim["temperature"] == pytest.approx(calibration["temperature"])
        and slim["temperature"] > 0
    )
    assert slim["calibration"]["after"]["ECE"] == pytest.approx(calibration["after"]["ECE"])
    assert all(v.dtype == torch.float16 for v in slim["model"].values() if v.is_floating_point())
    assert slim["metrics"]["MaxF"] == pytest.approx(best["val_MaxF"])
    assert slim["model_config"] == {"num_classes": 2, "fc_channels": 32, "fc6_kernel": 3}
    assert (
        ev.main(
            [
                "--data-path",
                str(camvid_root),
                "--split",
                str(tmp_path / "val.txt"),
                "--model",
                str(out / "model_best_fp16.pt"),
                "--device",
                "cpu",
                "--size",
                "72",
                "96",
                "--workers",
                "0",
                "--output",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # fp16 weights
    assert report["metrics"]["URBAN"]["MaxF"] == pytest.approx(best["val_MaxF"], abs=5e-3)
    assert report["metrics"]["URBAN"]["posNum"] + report["metrics"]["URBAN"]["negNum"] == int(
        (targets != 255).sum()
    )
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "checkpoint_best.pt").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


# 8 images, batch 4: 2 steps per epoch; on CPU, where resuming is bitwise exact
RESUME_RUN = ["--epochs", "2", "--no-calibrate", "--device", "cpu"]


@pytest.fixture(scope="module")
def whole_run(synthetic_road: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 epochs of 2 steps in one go, no workers: what each stopped and resumed run must equal."""
    out = tmp_path_factory.mktemp("whole")
    assert tr.main(synthetic_args(synthetic_road, out, *RESUME_RUN)) == 0
    return out


@pytest.mark.parametrize(
    "stop, workers",
    [(2, "0"), (1, "0"), (1, "1")],
    ids=["epoch-end", "mid-epoch", "mid-epoch-1-worker"],
)
def test_resume_continues_exactly(
    synthetic_road: Path,
    whole_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    stop: int,
    workers: str,
) -> None:
    """Stopped by --max-steps at an epoch's end or inside one, then --resume: the same steps, LR,
    log, optimizer state, RNG and bitwise the same weights as the uninterrupted run, which used
    no workers (augmentations are seeded per sample, not per worker)."""
    part, resumed = tmp_path / "part", tmp_path / "resumed"
    run = [*RESUME_RUN, "--workers", workers]
    assert tr.main(synthetic_args(synthetic_road, part, *run, "--max-steps", str(stop))) == 0
    first = torch.load(part / "checkpoint_last.pt", weights_only=True)
    assert first["step"] == first["scheduler"]["last_epoch"] == stop
    if stop == 1:  # batch 1 of the 2 of epoch 0: unfinished, not validated, not logged
        assert (first["epoch"], first["epoch_finished"], first["epoch_batches"]) == (0, False, 1)
        assert "metrics" not in first and first["history"] == []
        assert not (part / "log.csv").exists()
        assert "stopped at step 1, batch 1/2 of epoch 1" in capsys.readouterr().out
    else:
        assert (first["epoch"], first["epoch_finished"], first["epoch_batches"]) == (0, True, 2)
        assert {"metrics", "best_maxf", "model_config", "optimizer", "scaler"} <= set(first)
    assert (
        tr.main(
            synthetic_args(
                synthetic_road, resumed, *run, "--resume", str(part / "checkpoint_last.pt")
            )
        )
        == 0
    )
    a = torch.load(whole_run / "checkpoint_last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    counters = ("epoch", "epoch_finished", "epoch_batches", "step", "best_maxf")
    assert [a[k] for k in counters] == [b[k] for k in counters] == [1, True, 2, 4, a["best_maxf"]]
    assert a["scheduler"] == b["scheduler"]
    untimed = [k for k in tr.LOG_FIELDS if k not in ("seconds", "images_per_s")]
    assert [[r[k] for k in untimed] for r in read_log(resumed)] == [
        [r[k] for k in untimed] for r in read_log(whole_run)
    ]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for i, s in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][i][n]) for n, v in s.items()), i
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    assert not torch.equal(first["model"]["score_fr.weight"], b["model"]["score_fr.weight"])


def test_resume_from_bad_file_fails_cleanly(
    synthetic_road: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert tr.main(synthetic_args(synthetic_road, tmp_path / "out", "--resume", str(bad))) == 1
    assert f"cannot resume from {bad}" in capsys.readouterr().err


def test_lr_schedule() -> None:
    f = tr.lr_factor
    assert f(0, 100, 10, "poly", 0.01) == 0.01
    assert f(5, 100, 10, "poly", 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(10, 100, 10, "poly", 0.01) == 1.0
    assert f(55, 100, 10, "poly", 0.01) == pytest.approx(0.5**0.9)
    assert f(55, 100, 10, "cosine", 0.01) == pytest.approx(0.5)
    assert f(100, 100, 10, "cosine", 0.01) == pytest.approx(0.0)
    assert f(70, 100, 0, "constant", 0.01) == 1.0


def test_amp_auto_is_fp32_on_a_cpu_and_fp16_needs_cuda() -> None:
    dtype, scaler = tr.amp_for("auto", torch.device("cpu"))
    assert dtype is None and not scaler.is_enabled()
    with pytest.raises(OptionError, match="--amp fp16 needs CUDA"):
        tr.amp_for("fp16", torch.device("cpu"))


def test_amp_bf16_on_a_cpu_follows_its_native_bf16() -> None:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if not flags:
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        dtype, scaler = tr.amp_for("bf16", torch.device("cpu"))
        assert dtype == torch.bfloat16 and not scaler.is_enabled()
    else:
        with pytest.raises(OptionError, match="no native bf16"):
            tr.amp_for("bf16", torch.device("cpu"))


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    """``fcn_road_seg.training.train`` under torchrun: 2 CPU processes of one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "fcn_road_seg.training.train",
        *args,
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_ddp_two_processes_on_gloo(synthetic_road: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes: DistributedSampler halves the steps, metrics all-reduced."""
    out = tmp_path / "ddp"
    result = torchrun(
        synthetic_args(synthetic_road, out, "--epochs", "1", "--device", "cpu", "--threads", "1")
    )
    log = read_log(out)
    assert len(log) == 1 and log[0]["step"] == 1  # 8 images / (2 processes x batch 4)
    assert "cpu x 2" in result.stdout
    # Validation covered every validation pixel exactly once across the two ranks.
    ckpt = torch.load(out / "checkpoint_last.pt", weights_only=True)
    val = data.split(synthetic_road, "val", synthetic_road / "val.txt")
    valid = sum(int((data.read_target(s.target) != 255).sum()) for s in val)
    assert ckpt["metrics"]["posNum"] + ckpt["metrics"]["negNum"] == valid


def test_ddp_resume_mid_epoch_is_exact(synthetic_road: Path, tmp_path: Path) -> None:
    """Under torchrun too, a stop inside an epoch and --resume give bitwise the uninterrupted
    weights: every rank's RNG is saved, and every rank's sampler skips its done batches."""
    run = [
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-calibrate",
    ]  # 2 steps per epoch and process
    whole, part, resumed = tmp_path / "whole", tmp_path / "part", tmp_path / "resumed"
    torchrun(synthetic_args(synthetic_road, whole, *run))
    torchrun(synthetic_args(synthetic_road, part, *run, "--max-steps", "3"))
    torchrun(
        synthetic_args(synthetic_road, resumed, *run, "--resume", str(part / "checkpoint_last.pt"))
    )
    p, a, b = (
        torch.load(d / "checkpoint_last.pt", weights_only=True) for d in (part, whole, resumed)
    )
    assert (p["epoch"], p["epoch_finished"], p["epoch_batches"], len(p["rng"])) == (1, False, 1, 2)
    assert (a["step"], a["epoch"]) == (b["step"], b["epoch"]) == (4, 1)
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(x["torch"], y["torch"]) for x, y in zip(a["rng"], b["rng"]))


@pytest.fixture(scope="module")
def two_datasets(synthetic_road: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The synthetic set twice, under two dataset names, the second with its colours inverted."""
    import shutil

    base = tmp_path_factory.mktemp("datasets")
    first, second = base / "kitti_like", base / "city"
    shutil.copytree(synthetic_road, first)
    shutil.copytree(synthetic_road, second)
    for path in (second / "training" / "image_2").glob("*.png"):
        assert cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    return [first, second]


def test_several_datasets_in_one_run(two_datasets: list[Path], tmp_path: Path) -> None:
    """Each dataset is validated on its own val.txt; val_* is their mean; the checkpoint records
    the working scale and the datasets; T is fitted on both and ECE reported per dataset."""
    out = tmp_path / "run"
    paths = [a for p in two_datasets for a in ("--data-path", str(p))]
    extra = ["--working-height", "32", "--aspect-range", "0.9", "1.1", "--camera-jitter", "0.5"]
    args = [*paths, "--output-dir", str(out), *TINY, "--epochs", "1", *extra]
    assert tr.main(args) == 0
    (row,) = read_log(out)
    for key in ("MaxF", "F50", "AP"):
        each = [row[f"val_{name}_{key}"] for name in ("kitti_like", "city")]
        assert row[f"val_{key}"] == pytest.approx(sum(each) / 2)
    assert row["step"] == 4  # 16 training frames (8 of each), batch 4
    slim = torch.load(out / "model_best_fp16.pt", weights_only=True)
    assert slim["working_height"] == 32 and slim["datasets"] == ["kitti_like", "city"]
    assert slim["working_size"] == [32, 104]  # a 375x1242 KITTI frame at 32 rows
    assert set(slim["metrics"]["datasets"]) == {"kitti_like", "city"}
    calibration = json.loads((out / "calibration.json").read_text())
    assert {k: v["frames"] for k, v in calibration["datasets"].items()} == {
        "kitti_like": 4,
        "city": 4,
    }


def test_init_from_starts_at_the_checkpoints_weights(
    synthetic_road: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """With a zero learning rate the run ends exactly where --init-from started it."""
    from fcn_road_seg.model import untrained_model

    source = tmp_path / "source.pt"
    model = untrained_model(seed=3, fc_channels=8, fc6_kernel=3)
    torch.save({"model": model.state_dict(), "model_config": model.config}, source)
    out = tmp_path / "run"
    args = synthetic_args(synthetic_road, out, "--epochs", "1", "--no-calibrate")
    assert tr.main([*args, "--init-from", str(source), "--lr", "0"]) == 0
    trained = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert trained["init_from"] == "source.pt"
    for k, v in model.state_dict().items():
        assert torch.equal(trained["model"][k], v), k
    wider = synthetic_args(synthetic_road, tmp_path / "x", "--fc-channels", "16")
    assert tr.main([*wider, "--init-from", str(source)]) == 1
    assert "--init-from" in capsys.readouterr().err


def test_split_files_need_a_single_dataset(
    two_datasets: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = [a for p in two_datasets for a in ("--data-path", str(p))]
    split = ["--train-split", str(two_datasets[0] / "train.txt")]
    assert tr.main([*paths, *split, "--output-dir", str(tmp_path), *TINY]) == 1
    assert "need exactly one --data-path" in capsys.readouterr().err


def test_an_earlier_run_in_the_output_dir_is_kept_unless_overwrite(
    synthetic_road: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = synthetic_args(synthetic_road, out, "--epochs", "1", "--no-calibrate")
    assert tr.main(args) == 0
    first = (out / "checkpoint_last.pt").read_bytes()
    assert tr.main([*args, "--seed", "5"]) == 1
    err = capsys.readouterr().err
    assert (
        f"--output-dir {out} holds an earlier run (checkpoint_last.pt, checkpoint_best.pt, "
        "model_best_fp16.pt" in err
    )
    assert f"--resume {out / 'checkpoint_last.pt'}" in err
    assert (out / "checkpoint_last.pt").read_bytes() == first
    stale = {name: (out / name).stat().st_mtime_ns for name in ("log.csv", "curves.png")}
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events.old").write_text("")
    # the new run stops before its first epoch ends: nothing of the old run may remain
    assert tr.main([*args, "--seed", "5", "--overwrite", "--max-steps", "1"]) == 0
    assert "--overwrite: deleted the earlier run's checkpoint_last.pt" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_last.pt"]
    assert (out / "checkpoint_last.pt").read_bytes() != first
    assert all(not (out / name).exists() for name in stale)


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--lr", "nan", "must be a finite number in [0, 1]"),
        ("--batch-size", "0", "must be at least 1, got 0"),
        ("--dropout", "1.5", "must be a finite number in [0, 0.99]"),
        ("--fc-channels", "0", "must be at least 1, got 0"),
        ("--workers", "-1", "must be at least 0, got -1"),
        ("--val-fraction", "1.5", "must be a finite number in [0, 0.99]"),
        ("--hflip-prob", "2", "must be a finite number in [0, 1]"),
        ("--epochs", "0", "must be at least 1, got 0"),
        ("--max-steps", "-1", "must be at least 1, got -1"),
        ("--fc6-kernel", "4", "must be odd, got 4"),
    ],
)
def test_bad_numbers_are_refused_by_the_parser_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str, words: str
) -> None:
    with pytest.raises(SystemExit) as info:
        tr.main(["--data-path", str(tmp_path), flag, value])
    assert info.value.code == 2
    assert f"argument {flag}: {words}" in capsys.readouterr().err


def test_a_reversed_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        tr.main(["--data-path", str(tmp_path), "--scale-range", "1.4", "0.7"])
    assert (
        "argument --scale-range: MIN must not exceed MAX, got 1.4 0.7" in capsys.readouterr().err
    )


def test_frames_in_both_splits_are_warned_of(
    synthetic_road: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "val.txt").write_text("uu_000000\num_000001\nuu_000010\n")  # 2 training frames
    args = tr.get_args_parser().parse_args(
        [
            *synthetic_args(synthetic_road, tmp_path / "run"),
            "--val-split",
            str(tmp_path / "val.txt"),
        ]
    )
    _, val = tr.make_datasets(args)
    assert [s.stem for s in val[data.dataset_name(synthetic_road)]] == [
        "uu_000000",
        "um_000001",
        "uu_000010",
    ]
    assert (
        f"warning: {synthetic_road}: 2 frames are in both the training and the validation split "
        "(e.g. um_000001)" in capsys.readouterr().err
    )


EMA_RUN = [*RESUME_RUN[:1], "1", *RESUME_RUN[2:], "--ema-epochs", "1"]  # 1 epoch, decay 0.5


def test_ema_is_validated_kept_and_resumed(
    synthetic_road: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--ema-epochs 1 over 2 steps per epoch: decay 0.5, so after the epoch the average is
    (w1 + w2) / 2 of the raw weights after steps 1 and 2; both best files hold it, and a stop
    after step 1 resumed gives bitwise the same average."""
    whole, part, resumed = tmp_path / "whole", tmp_path / "part", tmp_path / "resumed"
    assert tr.main(synthetic_args(synthetic_road, whole, *EMA_RUN)) == 0
    assert tr.main(synthetic_args(synthetic_road, part, *EMA_RUN, "--max-steps", "1")) == 0
    resume_from = ["--resume", str(part / "checkpoint_last.pt")]
    assert tr.main(synthetic_args(synthetic_road, resumed, *EMA_RUN, *resume_from)) == 0
    w1 = torch.load(part / "checkpoint_last.pt", weights_only=True)["raw_model"]
    last = torch.load(whole / "checkpoint_last.pt", weights_only=True)
    best = torch.load(whole / "model_best_fp16.pt", weights_only=True)["model"]
    again = torch.load(resumed / "checkpoint_last.pt", weights_only=True)["ema"]
    read, _ = read_checkpoint(whole / "checkpoint_best.pt")
    assert int(last["ema"]["n_averaged"]) == 2
    for k, w2 in last["raw_model"].items():
        average = last["ema"][f"module.{k}"]
        torch.testing.assert_close(average, (w1[k] + w2) / 2)
        assert torch.equal(last["model"][k], average), k
        assert torch.equal(read.state_dict()[k], average), k
        assert torch.equal(best[k], average.half()), k
        assert torch.equal(again[f"module.{k}"], average), k
    assert not torch.equal(best["score_fr.weight"], last["raw_model"]["score_fr.weight"].half())
    plain = tmp_path / "plain"
    assert tr.main(synthetic_args(synthetic_road, plain, *RESUME_RUN, "--max-steps", "1")) == 0
    capsys.readouterr()
    later = ["--resume", str(plain / "checkpoint_last.pt")]
    assert tr.main(synthetic_args(synthetic_road, tmp_path / "x", *EMA_RUN, *later)) == 1
    assert "holds no weight average (trained without --ema-epochs)" in capsys.readouterr().err
    plain_args = [*RESUME_RUN, *resume_from]
    assert tr.main(synthetic_args(synthetic_road, tmp_path / "y", *plain_args)) == 1
    assert "holds a weight average: pass --ema-epochs" in capsys.readouterr().err


def test_a_validation_split_without_an_evaluated_pixel_stops_before_training(
    synthetic_road: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """All-black ground truth in the validation split: one line before the first step (it was a
    KeyError 'URBAN' traceback after an epoch of training)."""
    root = tmp_path / "data_road"
    shutil.copytree(synthetic_road, root)
    for stem in (root / "val.txt").read_text().split():
        gt = root / "training" / "gt_image_2" / data.gt_name(stem)
        assert cv2.imwrite(str(gt), np.zeros((36, 52, 3), np.uint8))
    out = tmp_path / "run"
    assert tr.main(synthetic_args(root, out, "--epochs", "1")) == 1
    err = capsys.readouterr().err
    assert f"--data-path {root}'s validation split: no pixel of its 4 ground-truth files" in err
    assert "Traceback" not in err and not (out / "checkpoint_last.pt").exists()


def test_an_interrupt_while_writing_the_best_model_leaves_the_epoch_to_redo(
    synthetic_road: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while epoch 1 writes model_best_fp16.pt: checkpoint_last.pt must not have moved on
    to that epoch, or --resume goes on without ever writing its best model (the run ended with no
    model_best_fp16.pt, or with a stale one, unless a later epoch beat it)."""
    out = tmp_path / "run"
    save = tr.save_checkpoint

    def interrupted(obj: dict, path: Path) -> None:
        if path.name == "model_best_fp16.pt":
            raise KeyboardInterrupt
        save(obj, path)

    monkeypatch.setattr(tr, "save_checkpoint", interrupted)
    assert tr.main(synthetic_args(synthetic_road, out, *RESUME_RUN)) == 130
    last = out / "checkpoint_last.pt"
    if last.exists():  # what --resume would continue from: its best must be written
        best_maxf = torch.load(last, weights_only=True)["best_maxf"]
        slim = out / "model_best_fp16.pt"
        assert slim.exists() and torch.load(slim)["metrics"]["MaxF"] == best_maxf


def test_resume_refuses_other_optimizer_options(
    synthetic_road: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The restored optimizer keeps the run's --lr: a new one was silently ignored."""
    out = tmp_path / "run"
    args = synthetic_args(synthetic_road, out, *RESUME_RUN, "--max-steps", "1")
    assert tr.main(args) == 0
    resume = ["--resume", str(out / "checkpoint_last.pt"), "--max-steps", "2"]
    assert tr.main([*args, *resume, "--lr", "1e-2"]) == 1
    assert "it was trained with --lr 0.001, this run has 0.01" in capsys.readouterr().err
    assert tr.main([*args, *resume, "--fc-channels", "16"]) == 1
    assert "its model config {'num_classes': 2, 'fc_channels': 8" in capsys.readouterr().err
    assert tr.main([*args, *resume]) == 0
