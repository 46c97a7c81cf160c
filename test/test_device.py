"""device.py: the torch devices this package runs on, and clear errors for others."""

from __future__ import annotations

import pytest
import torch

from fcn_road_seg.device import resolve_device
from fcn_road_seg.errors import ModelError


@pytest.mark.parametrize("name", ["xpu", "mps", "meta", "cpu:1", "gpu"])
def test_other_devices_are_refused_naming_the_choices(name: str) -> None:
    with pytest.raises(
        ModelError, match=f"device must be auto, cpu, cuda or cuda:N, got '{name}'"
    ):
        resolve_device(name)


def test_cpu_and_auto_without_a_gpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ModelError, match="'cuda:0' requested but CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_index_past_the_last_is_refused() -> None:
    count = torch.cuda.device_count()
    with pytest.raises(ModelError, match=f"there are {count} CUDA devices"):
        resolve_device(f"cuda:{count}")
