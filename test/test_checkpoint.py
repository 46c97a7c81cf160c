"""training/checkpoint.py: atomic writes and the slim checkpoint for deployment."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fcn_road_seg.model import load_checkpoint_model
from fcn_road_seg.training.weights import build_model
from fcn_road_seg.training.checkpoint import save_checkpoint, slim_checkpoint
from fcn_road_seg.training.train import get_args_parser


def test_checkpoint_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint_last.pt"
    save_checkpoint({"step": 1}, target)
    with pytest.raises(Exception):
        # fails half-way through writing
        save_checkpoint({"step": 2, "unpicklable": lambda: None}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_last.pt"
    ]  # no partial file left


def test_slim_checkpoint_loads_for_deployment(tmp_path: Path) -> None:
    model = build_model(None, fc_channels=8, fc6_kernel=3)
    args = get_args_parser().parse_args(["--data-path", "x"])
    path = tmp_path / "model_best_fp16.pt"
    save_checkpoint(slim_checkpoint(model, {"MaxF": 0.5}, args), path)
    loaded = load_checkpoint_model(path)
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.half().float())
