"""training/ema.py: the weight average's decay and its updates, against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcn_road_seg.training.ema import ema_decay, make_ema


@pytest.mark.parametrize(
    "epochs, steps, decay",
    [(1.0, 100, 0.99), (2.0, 50, 0.99), (0.5, 4, 0.5), (0.1, 4, 0.0)],
    ids=["one-epoch", "two-epochs", "half-epoch", "under-a-step"],
)
def test_decay_is_one_minus_one_over_the_horizon_in_steps(
    epochs: float, steps: int, decay: float
) -> None:
    assert ema_decay(epochs, steps) == pytest.approx(decay)


def test_zero_epochs_is_off() -> None:
    assert make_ema(nn.Linear(1, 1), 0.0, 10) is None


def test_first_update_copies_then_each_blends_by_the_decay() -> None:
    model = nn.Linear(1, 1, bias=False)
    ema = make_ema(model, 0.5, 4)  # decay 1 - 1 / 2 = 0.5
    for value in (2.0, 4.0, 0.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update_parameters(model)
    # 2 (copied), then 0.5 * 2 + 0.5 * 4 = 3, then 0.5 * 3 + 0.5 * 0 = 1.5
    assert ema.module.weight.item() == 1.5
    assert model.weight.item() == 0.0  # the raw weights are left alone
