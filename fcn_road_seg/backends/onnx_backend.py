"""ONNX Runtime backend: the exported ``RoadProbability`` graph, uint8 ``image`` -> float ``prob``.

On CPU the session reads the fitted uint8 tensor's memory directly. With CUDA (onnxruntime-gpu), an
IOBinding hands ONNX Runtime the torch CUDA tensors themselves: pixels go up as uint8 and P(road)
stays on the GPU for the shared post-processing. The input size (fixed or dynamic) comes from the
model's own input shape; symbolic height/width mean dynamic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import ModelError
from ..model import INPUT, OUTPUT, check_metadata
from ..metadata import read_sidecar, sha256_file, sidecar_path
from .base import Backend

INPUT_TYPE, OUTPUT_TYPE = "tensor(uint8)", "tensor(float)"


def import_onnxruntime() -> Any:
    """The onnxruntime module, or a ModelError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError(
            "ONNX Runtime is not installed: "
            "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA), "
            "or pip install 'fcn_road_seg[onnx]'"
        ) from exc
    return onnxruntime


def _fixed(dim: Any) -> bool:
    """A concrete (not symbolic) dimension."""
    return isinstance(dim, int) and dim > 0


def _nhwc_rgb(shape: Sequence[Any]) -> bool:
    """A 1 x H x W x 3 shape (batch 1 or symbolic)."""
    return len(shape) == 4 and shape[3] == 3 and (shape[0] == 1 or not _fixed(shape[0]))


def io_problems(inputs: Sequence[Any], outputs: Sequence[Any]) -> list[str]:
    """Problems with a session's inputs/outputs for an fcn_road_seg model (empty when nothing)."""
    problems = []
    if len(inputs) != 1 or inputs[0].name != INPUT or inputs[0].type != INPUT_TYPE:
        found = ", ".join(f"'{i.name}' {i.type} {i.shape}" for i in inputs)
        problems.append(
            f"expected one input '{INPUT}' {INPUT_TYPE} [1, H, W, 3], found {found or 'none'}"
        )
    elif not _nhwc_rgb(inputs[0].shape):
        problems.append(f"input '{INPUT}' has shape {inputs[0].shape}, expected [1, H, W, 3]")
    if (
        len(outputs) != 1
        or outputs[0].name != OUTPUT
        or outputs[0].type != OUTPUT_TYPE
        or len(outputs[0].shape) != 3
    ):
        found = ", ".join(f"'{o.name}' {o.type} {o.shape}" for o in outputs)
        problems.append(
            f"expected one output '{OUTPUT}' {OUTPUT_TYPE} [1, H, W], found {found or 'none'}"
        )
    return problems


def input_size(shape: Sequence[Any]) -> tuple[int, int] | None:
    """(H, W) of a fixed N x H x W x 3 input shape, None if height and width are both symbolic."""
    h, w = shape[1], shape[2]
    fixed = [_fixed(h), _fixed(w)]
    if all(fixed):
        return int(h), int(w)
    if any(fixed):
        raise ValueError(f"input shape {list(shape)} fixes only one of height and width")
    return None


def sidecar_problems(
    meta: Mapping[str, Any], path: Path, size: tuple[int, int] | None
) -> list[str]:
    """How an ONNX model's metadata disagrees with the file (empty when it does not).

    Its own SHA-256 when the metadata records one, and the graph's input (``size``: fixed H, W or
    None for symbolic ones) against the metadata's shape, or its ``dynamic`` flag.
    """
    problems = []
    if meta.get("onnx_sha256") not in (None, sha256_file(path)):
        problems.append(
            "the file's SHA-256 is not the one its metadata records (changed, truncated or "
            "replaced since it was exported)"
        )
    graph = "dynamic" if size is None else f"{size[0]}x{size[1]}"
    shape = meta["input"].get("shape") if isinstance(meta.get("input"), dict) else None
    if meta.get("dynamic"):
        claimed = "dynamic"
    elif isinstance(shape, list) and len(shape) == 4:
        claimed = f"{shape[1]}x{shape[2]}"
    else:
        claimed = graph  # no shape recorded: nothing to compare
    if claimed != graph:
        problems.append(f"its metadata says the input is {claimed}, the graph's is {graph}")
    return problems


def checked_sidecar(path: Path, size: tuple[int, int] | None) -> dict[str, Any] | None:
    """The metadata beside an ONNX model (None when there is none), checked against the file
    (``sidecar_problems``) and for a usable temperature and working scale; a ModelError naming
    the file otherwise."""
    meta = read_sidecar(path)
    if meta is None:
        return None
    problems = sidecar_problems(meta, path, size)
    if problems:
        raise ModelError(
            f"{path} does not match its metadata {sidecar_path(path).name}: {'; '.join(problems)}"
        )
    check_metadata(meta, f"model metadata {sidecar_path(path)}")
    return meta


def _check_precision(path: Path, precision: str) -> None:
    """ONNX Runtime runs a model at the precision it was exported in: any other is a ModelError."""
    if precision == "auto":
        return
    own = (read_sidecar(path) or {}).get("precision")
    if precision != own:
        raise ModelError(
            f"precision {precision}: ONNX Runtime runs {path} as it was exported "
            f"({own or 'no metadata says how'}); use precision auto, backend openvino "
            "(fp32, bf16, fp16), or a model exported at that precision"
        )


class OnnxBackend(Backend):
    """Runs an exported ONNX model with ONNX Runtime, on CPU or (onnxruntime-gpu) CUDA."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        device: torch.device,
        resize_policy: str = "letterbox",
        threads: int = 0,
        precision: str = "auto",
    ) -> None:
        ort = import_onnxruntime()
        self.model_path = Path(model_path)
        _check_precision(self.model_path, precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # no busy-waiting after a run: the frame's post-processing (and other nodes) need the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(model_path), options, providers=self._providers(ort, device)
            )
        except Exception as exc:
            # onnxruntime raises its own exception types for unreadable models
            raise ModelError(f"cannot load ONNX model {model_path}: {exc}") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        problems = io_problems(inputs, outputs)
        try:
            size = None if problems else input_size(inputs[0].shape)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ModelError(
                f"{model_path} is not an fcn_road_seg ONNX model: {'; '.join(problems)} "
                "(export one with fcn-road-export)"
            )
        meta = checked_sidecar(self.model_path, size)
        super().__init__(device, size, resize_policy)
        self.set_model_metadata(meta)

    @staticmethod
    def _providers(ort: Any, device: torch.device) -> list[Any]:
        """CPU only on a CPU device; CUDA, then CPU for what CUDA cannot run, on a CUDA device."""
        if device.type == "cpu":
            return ["CPUExecutionProvider"]
        if device.type != "cuda" or "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelError(
                f"device '{device}' needs ONNX Runtime's CUDAExecutionProvider, "
                "which this onnxruntime "
                f"lacks ({', '.join(ort.get_available_providers())}): pip install onnxruntime-gpu"
            )
        return [
            ("CUDAExecutionProvider", {"device_id": device.index or 0}),
            "CPUExecutionProvider",
        ]

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """P(road) for the fitted uint8 image: a plain run on CPU, an IOBinding on CUDA tensors."""
        if self.device.type == "cpu":
            return torch.from_numpy(self.session.run([OUTPUT], {INPUT: image.numpy()})[0])
        prob = torch.empty(image.shape[:3], dtype=torch.float32, device=self.device)
        binding = self.session.io_binding()
        index = self.device.index or 0
        binding.bind_input(INPUT, "cuda", index, np.uint8, tuple(image.shape), image.data_ptr())
        binding.bind_output(OUTPUT, "cuda", index, np.float32, tuple(prob.shape), prob.data_ptr())
        # ONNX Runtime reads on its own stream
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(binding)  # returns once the outputs are written
        return prob

    def _release(self) -> None:
        """Drop the ONNX Runtime session."""
        self.session = None

    def describe(self) -> str:
        """Adds the execution providers to the base description."""
        return (
            f"{super().describe()} {self.model_path.name} "
            f"[{', '.join(self.session.get_providers())}]"
        )
