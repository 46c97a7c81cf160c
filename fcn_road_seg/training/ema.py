"""An exponential moving average of the weights (``--ema-epochs``), by torch.optim.swa_utils.

Validation, the best checkpoint and the exported model use the average; the optimizer steps the
raw weights. A horizon in epochs, not a per-step decay, so that one value suits any dataset size
and batch size.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_decay(epochs: float, steps_per_epoch: int) -> float:
    """Per-step decay d whose horizon 1 / (1 - d) is ``epochs`` epochs (0 below one step)."""
    return max(0.0, 1.0 - 1.0 / (epochs * steps_per_epoch))


def make_ema(model: nn.Module, epochs: float, steps_per_epoch: int) -> AveragedModel | None:
    """The average of ``model``'s parameters and buffers over about ``epochs`` epochs of steps;
    None for 0 (off). Its first ``update_parameters`` copies the model."""
    if epochs == 0:
        return None
    decay = ema_decay(epochs, steps_per_epoch)
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
