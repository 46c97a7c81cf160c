"""The shipped default model: it loads, it is small enough to ship, and it finds the road on real held-out images."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fcn_road_seg.model import default_model_path, load_checkpoint_model
from training import data, evaluate

VAL_IMAGES = 12
EVAL_SIZE = ("180", "240")


@pytest.fixture(scope="module")
def default_model() -> Path:
    """The default checkpoint, or a skip with the reason when this checkout does not ship one."""
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"no default model at {path} (it is trained with training/train.py on camvid_road)")
    return path


def test_default_model_fits_in_the_repository(default_model: Path) -> None:
    assert default_model.stat().st_size <= 40 * 1024 * 1024
    model = load_checkpoint_model(default_model)
    assert model.config["num_classes"] == 2


def test_default_model_beats_trivial_predictions_on_held_out_camvid(default_model: Path, camvid_root: Path,
                                                                    tmp_path: Path) -> None:
    stems = data.read_stems(camvid_root / "val.txt")[::8][:VAL_IMAGES]  # CamVid's own validation split
    split = tmp_path / "val_subset.txt"
    split.write_text("\n".join(stems) + "\n")
    out = tmp_path / "eval"
    assert evaluate.main(["--data-path", str(camvid_root), "--model", str(default_model), "--split", str(split),
                          "--size", *EVAL_SIZE, "--device", "cpu", "--workers", "0", "--output", str(out)]) == 0
    urban = json.loads((out / "metrics.json").read_text())["metrics"]["URBAN"]
    targets = [torch.from_numpy(data.read_target(s.target)) for s in data.select(data.list_samples(camvid_root),
                                                                                  stems, split)]
    all_road = evaluate.hard_metrics(torch.cat([t.flatten() for t in targets]) != 255,
                                     torch.cat([t.flatten() for t in targets]))
    assert urban["IoU"] > all_road["IoU"] + 0.2  # all-road IoU is the road fraction (~0.3); all-non-road is 0
    assert urban["MaxF"] > 0.8
