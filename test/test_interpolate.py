"""training/interpolate.py: (1 - alpha) A + alpha B, weight by weight (WiSE-FT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fcn_road_seg.model import read_checkpoint, untrained_model
from fcn_road_seg.training.interpolate import main


def save(path: Path, seed: int, **meta) -> dict[str, torch.Tensor]:
    model = untrained_model(seed=seed, fc_channels=8, fc6_kernel=3)
    torch.save({"model": model.state_dict(), "model_config": model.config, **meta}, path)
    return model.state_dict()


def test_weights_are_the_weighted_mean_and_b_metadata_is_kept(tmp_path: Path) -> None:
    wa = save(tmp_path / "a.pt", 1, working_size=[64, 96], temperature=1.5)
    wb = save(tmp_path / "b.pt", 2, working_height=48, datasets=["kitti", "city"])
    out = tmp_path / "ab.pt"
    assert (
        main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--alpha", "0.25", "-o", str(out)])
        == 0
    )
    model, meta = read_checkpoint(out)
    for k, v in model.state_dict().items():
        want = (0.75 * wa[k] + 0.25 * wb[k]).half().float()
        assert torch.equal(v, want), k
    assert meta["working_height"] == 48 and meta["datasets"] == ["kitti", "city"]
    assert meta["interpolated"] == {"a": "a.pt", "b": "b.pt", "alpha": 0.25}
    assert "temperature" not in meta  # A's T does not describe the new model


def test_different_models_and_a_bad_alpha_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    save(tmp_path / "a.pt", 1)
    other = untrained_model(fc_channels=16, fc6_kernel=3)
    torch.save({"model": other.state_dict(), "model_config": other.config}, tmp_path / "c.pt")
    args = [str(tmp_path / "a.pt"), str(tmp_path / "c.pt"), "-o", str(tmp_path / "x.pt")]
    assert main([*args, "--alpha", "0.5"]) == 1
    assert "different models" in capsys.readouterr().err
    assert (
        main([str(tmp_path / "a.pt"), str(tmp_path / "a.pt"), "-o", "x.pt", "--alpha", "2"]) == 1
    )
    assert "--alpha must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_an_output_that_names_an_input_or_a_folder_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    save(tmp_path / "a.pt", 1)
    save(tmp_path / "b.pt", 2)
    before = (tmp_path / "a.pt").read_bytes()
    a, b = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    assert main([a, b, "--alpha", "0.3", "-o", a]) == 1
    assert f"-o {a} is an input of this run" in capsys.readouterr().err
    assert (tmp_path / "a.pt").read_bytes() == before
    (tmp_path / "out").mkdir()
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")  # never read: the output is first
    assert (
        main([a, str(tmp_path / "corrupt.pt"), "--alpha", "0.3", "-o", str(tmp_path / "out")]) == 1
    )
    assert "is a folder; give a file name" in capsys.readouterr().err
