"""INT8 for CPUs: ONNX Runtime static quantization (QDQ, per-channel), calibrated on real frames.

The fp32 graph (uint8 ``image`` in, ``prob`` out) is quantized with activations in uint8 and
weights in int8 per output channel, which x86 CPUs with VNNI run as int8 dot products. The weights
use 7 bits of the 8 (``reduce_range``): x86 CPUs without VNNI (AVX2, AVX-512 alone) multiply with
``vpmaddubsw``, whose int16 sum of two uint8 x int8 products saturates for full-range weights
(2 x 255 x 127 > 32767); ONNX Runtime and OpenVINO both use it there. With 7 bits the sum stays
below 32767 and every CPU computes the same numbers. The first convolution, on the image, stays
in float for the CPU (it is 0.5 % of the multiply-accumulates). Calibration
frames are fitted to the network input exactly as the runtime fits them. Nodes named in
``keep_fp32`` (for example the score layers of the skips, or the last upsampling) stay in float.
With ``tensorrt=True`` the Q/DQ is symmetric int8 instead, the form TensorRT builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..backends import fit
from ..backends.onnx_backend import import_onnxruntime
from ..errors import ModelError
from ..model import INPUT

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: what every CPU export does beyond the calibration (recorded in its metadata)
CPU_SCHEME = {"weight_bits": 7, "first_conv": "float"}


def fitted_frames(images: Sequence[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """RGB frames fitted to the network input, as 1 x H x W x 3 uint8.

    Stretched, with area interpolation when shrinking.
    """
    return [
        fit(torch.from_numpy(np.ascontiguousarray(rgb))[None], size, "stretch")[0].numpy()
        for rgb in images
    ]


def _reader(frames: Sequence[np.ndarray]) -> Any:
    """An onnxruntime CalibrationDataReader over ``frames``."""
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self._it, None)
            return None if frame is None else {INPUT: frame}

        def rewind(self) -> None:
            self._it = iter(frames)

    return FrameReader()


def conv_nodes(onnx_path: str | Path) -> list[tuple[str, str]]:
    """(name, op type) of the Conv and ConvTranspose nodes, in graph order.

    To choose ``keep_fp32`` from.
    """
    import onnx

    return [
        (n.name, n.op_type)
        for n in onnx.load(str(onnx_path)).graph.node
        if n.op_type in ("Conv", "ConvTranspose")
    ]


def quantize_int8(
    fp32_path: str | Path,
    output: str | Path,
    frames: Sequence[np.ndarray],
    keep_fp32: Sequence[str] = (),
    method: str = "minmax",
    tensorrt: bool = False,
) -> None:
    """Quantize the fixed-shape fp32 model at ``fp32_path`` into ``output``.

    ``tensorrt``: Q/DQ that TensorRT's explicit quantization builds instead, symmetric int8
    activations (zero point 0) and float biases, on the Conv layers only (the small bilinear
    upsamplings stay float). Not atomic by itself.
    """
    import_onnxruntime()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ModelError(
            f"unknown calibration method '{method}'; choose one of {CALIBRATION_METHODS}"
        )
    if not frames:
        raise ModelError("INT8 calibration needs at least one frame")
    prepared = Path(output).with_name(Path(output).name + ".pre.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        nodes = conv_nodes(prepared)
        unknown = [n for n in keep_fp32 if n not in {name for name, _ in nodes}]
        if unknown:  # quantize_static would quantize them silently
            raise ModelError(
                f"--keep-fp32: no Conv or ConvTranspose node is named {', '.join(unknown)}; "
                f"the graph's are {', '.join(name for name, _ in nodes)}"
            )
        quantize_static(
            str(prepared),
            str(output),
            _reader(frames),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=not tensorrt,  # 7-bit weights: exact on CPUs without VNNI too
            op_types_to_quantize=["Conv"] if tensorrt else ["Conv", "ConvTranspose"],
            extra_options={"ActivationSymmetric": True, "QuantizeBias": False} if tensorrt else {},
            # the first Conv sees the image: 0.5 % of the MACs, and in float it halves the
            # mask's disagreement with fp32 on real frames (7-bit weights, 3 input channels)
            nodes_to_exclude=list(keep_fp32) + ([] if tensorrt else [nodes[0][0]]),
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[method],
        )
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime.quantization raises many types
        raise ModelError(f"INT8 quantization of {fp32_path} failed: {exc}") from exc
    finally:
        prepared.unlink(missing_ok=True)
