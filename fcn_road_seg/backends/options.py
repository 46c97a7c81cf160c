"""The backends' names, resize policies and ``BackendOptions``: each backend's own settings."""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime", "openvino")
RESIZE_POLICIES = ("letterbox", "stretch")


@dataclass(frozen=True)
class BackendOptions:
    """Each backend's own settings, reachable from the node's parameters and every tool's flags."""

    # torch: auto | fp32 | fp16 | bf16; TensorRT: auto | fp32 | fp16 | int8;
    # OpenVINO: auto | fp32 | bf16 | fp16 (what the ONNX model leaves in float);
    # ONNX Runtime: auto, or the precision the model was exported in
    precision: str = "auto"
    compile: bool = False  # torch.compile the network (torch)
    threads: int = 0  # CPU threads of ONNX Runtime and OpenVINO (0 = their default)
    rebuild: str = "never"  # TensorRT .engine files: never | if-stale
    workspace_gb: float = 4.0  # TensorRT builder workspace
    timing_cache: str = ""  # TensorRT timing cache file ("" = none)
    flip: bool = False  # every backend: also run the mirrored frame and average P(road)

    def for_backend(self, kind: str) -> dict:
        """The constructor keywords of backend ``kind``."""
        if kind == "torch":
            return {"precision": self.precision, "compile": self.compile}
        if kind in ("onnxruntime", "openvino"):
            return {"threads": self.threads, "precision": self.precision}
        return {
            "precision": self.precision,
            "rebuild": self.rebuild,
            "workspace_gb": self.workspace_gb,
            "timing_cache": self.timing_cache or None,
        }
