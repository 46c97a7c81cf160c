"""PyTorch backend: a checkpoint run eagerly (or compiled), fp16/bf16 + channels_last on CUDA."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError
from ..model import RoadProbability, read_checkpoint
from .base import Backend

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_has_bf16() -> bool:
    """oneDNN can run bf16 natively here (AVX-512 BF16 or AMX)."""
    return torch.backends.mkldnn.is_available() and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


class TorchBackend(Backend):
    """Runs ``RoadProbability`` over a checkpoint's FCN8s on any torch device, any input size."""

    name = "torch"

    def __init__(
        self,
        model_path: str | Path,
        device: torch.device,
        precision: str = "auto",
        compile: bool = False,
        resize_policy: str = "letterbox",
    ) -> None:
        super().__init__(device, None, resize_policy)
        if precision == "auto":
            precision = "fp16" if device.type == "cuda" else "fp32"
        if precision not in PRECISIONS:
            raise ModelError(
                f"unknown precision '{precision}'; choose one of {sorted(PRECISIONS)} or 'auto'"
            )
        if device.type == "cpu" and precision == "fp16":
            raise ModelError(
                "precision 'fp16' needs CUDA; use fp32, or bf16 on a CPU with AVX-512 BF16 or AMX"
            )
        if device.type == "cpu" and precision == "bf16" and not cpu_has_bf16():
            raise ModelError(
                "precision 'bf16' on CPU needs AVX-512 BF16 or AMX, which this CPU lacks; use fp32"
            )
        self.precision = precision
        fcn, meta = read_checkpoint(model_path)
        self.set_model_metadata(meta)
        self.temperature = float(meta.get("temperature", 1.0))
        net = RoadProbability(fcn, self.temperature).eval()
        net = net.to(device=device, dtype=PRECISIONS[precision])
        if device.type == "cuda" or precision == "bf16":
            net = net.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # the network size is fixed: tune once per shape
        self.compiled = compile
        self.net = torch.compile(net, mode="reduce-overhead", dynamic=False) if compile else net

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """The network in the chosen precision; P(road) comes back as float32.

        Compiled, it replays a CUDA graph into the same output buffer on every call: the result
        is copied out, so that the next frame does not overwrite it.
        """
        prob = self.net(image)
        return prob.clone() if self.compiled else prob

    def _release(self) -> None:
        """Drop the module (and its weights on the device)."""
        self.net = None

    def describe(self) -> str:
        """Adds the precision to the base description."""
        return f"{super().describe()} {self.precision}"
