"""The shipped default model: small enough, knows itself, finds the road on real KITTI frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fcn_road_seg.backends import check_companion, int8_companion, load_backend
from fcn_road_seg.image import Frame
from fcn_road_seg.metadata import read_sidecar, sha256_file
from fcn_road_seg.model import default_model_path
from fcn_road_seg.training import data
from fcn_road_seg.training.evaluate import evaluate_backend

from conftest import ROOT, kitti_frame

#: measured 94.49 % on the seeded KITTI validation split (46 frames) through the default CPU path
#: (INT8): see README
MAXF_FLOOR = 0.94
SHIPPED_FRAMES = sorted((ROOT / "data" / "kitti" / "image_2").glob("*.png"))


@pytest.fixture(scope="module")
def default_model() -> Path:
    """The default checkpoint, or a skip with the reason when this checkout does not ship one."""
    path = default_model_path()
    if not path.is_file():
        pytest.skip(
            f"no default model at {path} (it is trained with training/train.py on KITTI Road)"
        )
    return path


def test_default_model_fits_and_knows_itself(default_model: Path) -> None:
    assert default_model.stat().st_size <= 40 * 1024 * 1024
    ckpt = torch.load(default_model, map_location="cpu", weights_only=True)
    assert ckpt["model_config"] == {"num_classes": 2, "fc_channels": 512, "fc6_kernel": 3}
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["working_size"] == [188, 624] and ckpt["encoder"] == "hed"
    assert 0.2 < ckpt["temperature"] < 5 and ckpt["calibration"]["after"]["ECE"] <= 0.02


def test_the_shipped_companion_is_tied_to_the_checkpoint_both_ways(default_model: Path) -> None:
    companion = default_model.with_name("fcn8s_kitti.int8.onnx")
    meta = read_sidecar(companion)
    assert meta["checkpoint_sha256"] == sha256_file(default_model)
    assert meta["onnx_sha256"] == sha256_file(companion)
    assert check_companion(default_model) == (companion, None)


def test_the_cpu_default_is_the_fastest_candidate_and_agrees_with_fp32(
    default_model: Path,
) -> None:
    """On the KITTI frames shipped in data/kitti: what auto measured fastest against fp32 torch.

    The candidates are OpenVINO and ONNX Runtime on the INT8 companion, and torch (bf16 where the
    CPU has it); test_selection.py checks the choice itself.
    """
    assert int8_companion(default_model) is not None
    auto = load_backend(default_model, "auto", "cpu")
    assert auto.warnings == []
    fp32 = load_backend(default_model, "torch", "cpu")
    assert auto.selection.startswith("auto chose ")
    assert auto.name in ("openvino", "onnxruntime", "torch") and auto.network_input(375, 1242) == (
        (188, 624),
        "stretch",
    )
    for path in SHIPPED_FRAMES:
        frame = Frame(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), "rgb8")
        p8, p32 = auto.probability(frame), fp32.probability(frame)
        assert p8.shape == p32.shape == frame.shape
        # the KITTI + CamVid INT8 companion differs from fp32 on 0.1-1.6 % of a frame's pixels
        # (uu_000002 most; the KITTI-only one: < 1 %): calibration on two cameras widens ranges
        assert ((p8 >= 0.5) != (p32 >= 0.5)).float().mean().item() < 0.02, path.name
        # the bottom centre of a KITTI frame, just ahead of the car, is road in every shipped frame
        assert (p32[-40:, 500:740] >= 0.5).float().mean().item() > 0.9, path.name


def test_default_model_on_held_out_kitti_frames(
    default_model: Path, kitti_road_root: Path
) -> None:
    """Devkit MaxF (URBAN) on the seeded validation split, run as the node runs it on a CPU."""
    samples = data.split(kitti_road_root, "val")
    assert len(samples) == 46
    metrics = evaluate_backend(
        load_backend(default_model, "auto", "cpu"), samples, workers=1, progress=False
    ).compute()
    assert metrics["URBAN"]["MaxF"] > MAXF_FLOOR
    all_road = metrics["URBAN"]["posNum"] / (
        metrics["URBAN"]["posNum"] + metrics["URBAN"]["negNum"]
    )
    assert metrics["URBAN"]["IoU"] > all_road + 0.4
    assert np.isfinite([m["AP"] for m in metrics.values()]).all()


GOLDEN = ROOT / "test" / "golden"


def test_default_model_matches_its_stored_golden_maps(default_model: Path) -> None:
    """torch fp32 at the working size on a shipped KITTI frame, against stored PNGs.

    The PNGs were stored when the model was shipped. Regenerate after changing the default model
    with ``FCN_ROAD_SEG_WRITE_GOLDEN=1 pytest -k golden``. Different CPUs may round a few pixels
    near P = 0.5 differently, hence the small tolerances.
    """
    import os

    from fcn_road_seg.segmenter import Segmenter

    bgr = cv2.imread(str(ROOT / "data" / "kitti" / "image_2" / "um_000005.png"))
    result = Segmenter(load_backend(default_model, "torch", "cpu")).segment(Frame(bgr, "bgr8"))
    paths = {name: GOLDEN / f"um_000005_{name}.png" for name in ("mask", "confidence")}
    if os.environ.get("FCN_ROAD_SEG_WRITE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for name, path in paths.items():
            assert cv2.imwrite(str(path), getattr(result, name))
    mask = cv2.imread(str(paths["mask"]), cv2.IMREAD_UNCHANGED)
    confidence = cv2.imread(str(paths["confidence"]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == confidence.shape == (375, 1242) and set(np.unique(mask)) == {0, 255}
    assert 0.15 < (mask > 0).mean() < 0.6  # the golden itself is a plausible road mask
    assert (result.mask != mask).mean() < 1e-3
    assert (np.abs(result.confidence.astype(int) - confidence) > 2).mean() < 1e-3


def test_native_size_runs_the_default_model_on_a_cpu(default_model: Path) -> None:
    """``network_size: native`` with the shipped model on a CPU (once refused: the INT8 companion
    was fixed at 188x624): ``auto`` runs its dynamic INT8 companion at the frame's own size."""
    backend = load_backend(default_model, "auto", "cpu", network_size="native")
    assert backend.name in ("onnxruntime", "openvino")
    assert backend.network_input(375, 1242)[0] is None  # no resize: each frame's own size
    maps = backend.infer(Frame(kitti_frame(), "bgr8"))
    assert maps.mask.shape == (375, 1242) and set(np.unique(maps.mask)) <= {0, 255}
    assert backend.frame_sizes[375, 1242] == (375, 1242)  # the network saw the frame as it is
