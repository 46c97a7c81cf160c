"""TensorRT backend: metadata checks, build planning for TensorRT 10 and 11, engine I/O checks.

Those run without TensorRT; the engine build/run/reject tests need TensorRT and a CUDA GPU.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from fcn_road_seg.backends import load_backend
from fcn_road_seg.metadata import read_sidecar, write_sidecar
from fcn_road_seg.backends.tensorrt_build import BuildPlan, _size, main, plan_build
from fcn_road_seg.backends.tensorrt_common import (
    ENGINE_FORMAT,
    OnnxInfo,
    TrtFeatures,
    compare_metadata,
    engine_io_problems,
    inspect_onnx,
    onnx_source,
    qdq_problem,
    tensorrt_ready,
    trt_features,
)
from fcn_road_seg.errors import ModelError

TRT10 = TrtFeatures("10.13.0.35", weak_typing=True, implicit_int8=True, strongly_typed_flag=True)
TRT11 = TrtFeatures("11.4.0.106", weak_typing=False, implicit_int8=False, strongly_typed_flag=True)
FOUND = {
    "tensorrt": "10.13.0.35",
    "gpu": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "engine_sha256": "ab" * 32,
}
META = {"format": ENGINE_FORMAT, **FOUND, "precision": "fp16", "onnx_sha256": "cd" * 32}


def onnx_info(fp16: bool = False, qdq: bool = False, shape: tuple = (1, 384, 1248, 3)) -> OnnxInfo:
    """An OnnxInfo without a file."""
    return OnnxInfo(Path("m.onnx"), "00" * 32, shape, fp16, qdq)


# --- metadata comparison -------------------------------------------------------------------------


def test_matching_metadata_has_no_problems() -> None:
    assert compare_metadata(META, FOUND) == ([], [])
    assert compare_metadata(META, {**FOUND, "onnx_sha256": "cd" * 32, "precision": "fp16"}) == (
        [],
        [],
    )
    assert compare_metadata(META, {**FOUND, "precision": "auto"}) == ([], [])


def test_tensorrt_version_mismatch_is_incompatible() -> None:
    incompatible, _ = compare_metadata({**META, "tensorrt": "10.3.0.26"}, FOUND)
    assert incompatible == [
        "it was built with TensorRT 10.3.0.26 but this is TensorRT 10.13.0.35 (an engine only "
        "loads in the TensorRT version that built it)"
    ]


def test_compute_capability_mismatch_names_both_gpus() -> None:
    incompatible, _ = compare_metadata(
        {**META, "compute_capability": "8.6", "gpu": "NVIDIA GeForce RTX 3090"}, FOUND
    )
    assert incompatible == [
        "it was built for compute capability 8.6 (NVIDIA GeForce RTX 3090) but this GPU "
        "(NVIDIA H100 80GB HBM3) is 9.0"
    ]


def test_engine_bytes_that_do_not_match_the_metadata_are_corrupt() -> None:
    incompatible, _ = compare_metadata(META, {**FOUND, "engine_sha256": "ef" * 32})
    assert len(incompatible) == 1 and "corrupt, truncated or replaced" in incompatible[0]


def test_several_problems_are_all_reported() -> None:
    incompatible, stale = compare_metadata(
        {**META, "tensorrt": "11.0", "compute_capability": "7.5"}, FOUND
    )
    assert len(incompatible) == 2 and stale == []


@pytest.mark.parametrize(
    "meta, message",
    [
        (
            {"tensorrt": "10.13.0.35"},
            "its metadata lacks format, compute_capability, engine_sha256",
        ),
        (
            {**META, "format": "something/2"},
            "its metadata format is 'something/2', not 'fcn_road_seg.engine/1'",
        ),
    ],
)
def test_foreign_or_incomplete_metadata_is_incompatible(meta: dict, message: str) -> None:
    assert compare_metadata(meta, FOUND)[0] == [message]


def test_stale_but_loadable_engines() -> None:
    _, stale = compare_metadata({**META, "gpu": "NVIDIA H100 PCIe"}, FOUND)
    assert stale == [
        "it was built on NVIDIA H100 PCIe, this is NVIDIA H100 80GB HBM3 "
        "(same compute capability: it loads, but tactics were tuned for the other GPU)"
    ]
    _, stale = compare_metadata(META, {**FOUND, "onnx_sha256": "99" * 32})
    assert stale == ["its ONNX model has changed since it was built"]
    _, stale = compare_metadata(META, {**FOUND, "precision": "fp32"})
    assert stale == ["it is fp16, fp32 was asked for"]


# --- build planning: TensorRT 10 (weak typing, implicit INT8), TensorRT 11 (strong typing only) --


def test_fp16_on_tensorrt_10_uses_the_builder_flag() -> None:
    assert plan_build(onnx_info(), "fp16", TRT10) == BuildPlan("fp16", False, ("FP16",))
    assert plan_build(onnx_info(), "auto", TRT10) == BuildPlan("fp16", False, ("FP16",))
    assert plan_build(onnx_info(), "fp32", TRT10) == BuildPlan("fp32", False)


def test_fp16_on_tensorrt_11_needs_an_fp16_model() -> None:
    with pytest.raises(
        ModelError,
        match=r"TensorRT 11.4.0.106 has no FP16 builder flag.*fcn-road-export --fp16.*"
        r"AutoCast",
    ):
        plan_build(onnx_info(), "fp16", TRT11)
    assert plan_build(onnx_info(), "auto", TRT11) == BuildPlan("fp32", True)
    assert plan_build(onnx_info(fp16=True), "fp16", TRT11) == BuildPlan("fp16", True)
    assert plan_build(onnx_info(fp16=True), "auto", TRT11) == BuildPlan("fp16", True)
    assert plan_build(onnx_info(fp16=True), "auto", TRT10) == BuildPlan("fp16", True)


def test_int8_calibration_where_tensorrt_still_has_it() -> None:
    assert plan_build(onnx_info(), "int8", TRT10) == BuildPlan(
        "int8", False, ("INT8", "FP16"), calibrate=True
    )


@pytest.mark.parametrize("features", [TRT11, TrtFeatures("10.16", True, False, True)])
def test_int8_without_implicit_calibration_points_to_explicit_quantization(
    features: TrtFeatures,
) -> None:
    with pytest.raises(
        ModelError,
        match=r"no implicit INT8 calibration.*has no Q/DQ nodes: use explicit "
        r"quantization.*symmetric int8.*QuantFormat.QDQ.*ActivationSymmetric.*ModelOpt.*"
        r"not fcn-road-export --int8.*--int8",
    ):
        plan_build(onnx_info(), "int8", features)


def test_quantized_models_build_as_int8() -> None:
    assert plan_build(onnx_info(qdq=True), "int8", TRT10) == BuildPlan(
        "int8", False, ("INT8", "FP16")
    )
    assert plan_build(onnx_info(qdq=True), "auto", TRT11) == BuildPlan("int8", True)
    with pytest.raises(ModelError, match="is quantized .*build it as int8, not fp16"):
        plan_build(onnx_info(qdq=True), "fp16", TRT10)


def test_precision_contradicting_the_model_or_unknown() -> None:
    with pytest.raises(ModelError, match="is an fp16 model: build it as fp16"):
        plan_build(onnx_info(fp16=True), "fp32", TRT10)
    with pytest.raises(ModelError, match="unknown precision 'int4'"):
        plan_build(onnx_info(), "int4", TRT10)


def test_trt_features_tells_tensorrt_10_from_11() -> None:
    class Config10:
        int8_calibrator = None

    trt10 = SimpleNamespace(
        __version__="10.13.0.35",
        BuilderFlag=SimpleNamespace(FP16=1, INT8=2),
        IInt8EntropyCalibrator2=object,
        IBuilderConfig=Config10,
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1),
    )
    trt11 = SimpleNamespace(
        __version__="11.4.0.106",
        BuilderFlag=SimpleNamespace(TF32=0),
        IBuilderConfig=object,
        NetworkDefinitionCreationFlag=SimpleNamespace(),
    )
    assert trt_features(trt10) == TRT10
    assert trt_features(trt11) == TrtFeatures("11.4.0.106", False, False, False)


# --- ONNX inspection, engine I/O, paths ----------------------------------------------------------


def small_onnx(
    path: Path,
    dims: list,
    cast_to: int | None = None,
    qdq: bool = False,
    name: str = "image",
    zero: tuple[int, int] | None = None,
) -> Path:
    """A tiny stand-in graph with our I/O names.

    uint8 image -> Cast [-> QuantizeLinear -> DequantizeLinear] -> ReduceMean over channels ->
    prob; ``zero`` = (ONNX type, value) of the Q/DQ zero point, none by default.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", [name], ["x"], to=cast_to or TensorProto.FLOAT)]
    last = "x"
    if qdq:
        params = ["s", "z"] if zero else ["s"]
        nodes += [
            helper.make_node("QuantizeLinear", ["x", *params], ["q"]),
            helper.make_node("DequantizeLinear", ["q", *params], ["dq"]),
        ]
        last = "dq"
    nodes += [
        helper.make_node("ReduceMean", [last, "axes"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["prob"], to=TensorProto.FLOAT),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [3]),
        helper.make_tensor("s", TensorProto.FLOAT, [], [1.0]),
        *([helper.make_tensor("z", zero[0], [], [zero[1]])] if zero else []),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, TensorProto.UINT8, dims)],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, dims[:3])],
        inits,
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path
    )
    return path


def test_inspect_onnx_reads_shape_and_typing(tmp_path: Path) -> None:
    from onnx import TensorProto

    fixed = inspect_onnx(small_onnx(tmp_path / "fixed.onnx", [1, 384, 1248, 3]))
    assert (
        fixed.input_shape == (1, 384, 1248, 3)
        and not fixed.dynamic
        and not fixed.fp16
        and not fixed.qdq
    )
    assert len(fixed.sha256) == 64
    dynamic = inspect_onnx(small_onnx(tmp_path / "dynamic.onnx", [1, "height", "width", 3]))
    assert dynamic.input_shape == (1, "height", "width", 3) and dynamic.dynamic
    assert inspect_onnx(small_onnx(tmp_path / "half.onnx", [1, 8, 8, 3], TensorProto.FLOAT16)).fp16
    assert inspect_onnx(small_onnx(tmp_path / "q.onnx", [1, 8, 8, 3], qdq=True)).qdq


def test_inspect_onnx_rejects_foreign_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError,
        match=r"other\.onnx is not an fcn_road_seg ONNX model: expected one input "
        r"'image', found \['input'\]",
    ):
        inspect_onnx(small_onnx(tmp_path / "other.onnx", [1, 8, 8, 3], name="input"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\xff\x00garbage" * 5)
    with pytest.raises(ModelError, match=r"cannot read ONNX model .*broken\.onnx"):
        inspect_onnx(broken)


@pytest.mark.parametrize(
    "zero, problem",
    [
        (None, None),
        ((3, 0), None),  # TensorProto.INT8 zero point 0: symmetric, what TensorRT takes
        ((2, 128), "uint8 zero points"),  # TensorProto.UINT8
        ((3, 5), "non-zero (asymmetric) zero points"),
    ],
)
def test_tensorrt_takes_only_symmetric_int8_qdq(
    tmp_path: Path, zero: tuple | None, problem: str | None
) -> None:
    path = small_onnx(tmp_path / "q.onnx", [1, 8, 8, 3], qdq=True, zero=zero)
    assert tensorrt_ready(path) is (problem is None)
    if problem is None:
        assert inspect_onnx(path).qdq
        return
    with pytest.raises(
        ModelError,
        match=rf"TensorRT cannot build .*q\.onnx: its Q/DQ nodes have {re.escape(problem)}; "
        r"TensorRT takes only symmetric int8 .*backend onnxruntime.*ActivationSymmetric",
    ):
        inspect_onnx(path)


def test_the_onnx_runtime_int8_companion_stays_off_tensorrt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped companion's Q/DQ (uint8 activations, int32 biases) is not TensorRT's: on a GPU,
    ``auto`` keeps it on ONNX Runtime, and TensorRT itself refuses it with the reason."""
    import onnx

    from fcn_road_seg.backends import backend_for
    from fcn_road_seg.model import default_model_path

    companion = default_model_path().with_name("fcn8s_kitti.int8.onnx")
    if not companion.is_file():
        pytest.skip(f"the INT8 companion {companion} is not in this checkout")
    assert qdq_problem(onnx.load(str(companion)).graph) == (
        "its Q/DQ nodes have int32 (quantized bias) DequantizeLinear, uint8 zero points; "
        "TensorRT takes only symmetric int8 Q/DQ (zero point 0)"
    )
    monkeypatch.setattr("fcn_road_seg.backends.companion._tensorrt_usable", lambda: True)
    assert backend_for(companion, "auto", "cuda") == "onnxruntime"
    assert backend_for(companion, "tensorrt", "cuda") == "tensorrt"  # asked for: the builder says
    with pytest.raises(ModelError, match=r"TensorRT cannot build .*fcn8s_kitti\.int8\.onnx"):
        inspect_onnx(companion)


def test_engine_io_problems() -> None:
    good = {
        "image": ("INPUT", "UINT8", (1, 384, 1248, 3)),
        "prob": ("OUTPUT", "FLOAT", (1, 384, 1248)),
    }
    assert engine_io_problems(good) == []
    assert engine_io_problems({**good, "image": ("INPUT", "UINT8", (1, -1, -1, 3))}) == []
    assert engine_io_problems({"input": good["image"], "prob": good["prob"]}) == [
        "expected I/O tensors ['image', 'prob'], found ['input', 'prob']"
    ]
    assert engine_io_problems({**good, "image": ("INPUT", "FLOAT", (1, 3, 384, 1248))}) == [
        "'image' is INPUT FLOAT [1, 3, 384, 1248], expected INPUT UINT8 of rank 4"
    ]
    assert engine_io_problems({**good, "image": ("INPUT", "UINT8", (1, 3, 384, 1248))}) == [
        "'image' has shape [1, 3, 384, 1248], expected [1, H, W, 3]"
    ]


def test_onnx_source_prefers_the_model_named_in_the_metadata(tmp_path: Path) -> None:
    engine = tmp_path / "fcn.engine"
    assert onnx_source(engine, None) is None
    (tmp_path / "fcn.onnx").write_bytes(b"x")
    assert onnx_source(engine, None) == tmp_path / "fcn.onnx"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.onnx").write_bytes(b"x")
    assert onnx_source(engine, {"onnx": "models/a.onnx"}) == tmp_path / "models" / "a.onnx"
    assert onnx_source(engine, {"onnx": "gone.onnx"}) == tmp_path / "fcn.onnx"


def test_the_profile_is_tuned_for_the_working_size(tmp_path: Path) -> None:
    from fcn_road_seg.backends.tensorrt_build import default_profile, get_args_parser

    model = small_onnx(tmp_path / "d.onnx", [1, "height", "width", 3])
    assert default_profile(model) == ((32, 32), (384, 1248), (1536, 2048))  # no metadata
    write_sidecar(model, {"working_size": [188, 624]})
    assert default_profile(model) == ((32, 32), (188, 624), (1536, 2048))
    write_sidecar(model, {"working_size": [1600, 2400]})  # larger than the default maximum
    assert default_profile(model) == ((32, 32), (1600, 2400), (1600, 2400))
    args = get_args_parser().parse_args([str(model)])
    assert (args.min_size, args.opt_size, args.max_size) == ((32, 32), None, (1536, 2048))
    # a working size that is no [height, width] was an IndexError before the builder started
    write_sidecar(model, {"working_size": [188]})
    with pytest.raises(ModelError, match=r"model metadata .*d\.onnx\.json.*working_size \[188\]"):
        default_profile(model)


def test_size_argument() -> None:
    assert _size("384x1248") == (384, 1248)
    for bad in ("384", "0x10", "axb"):
        with pytest.raises(Exception, match="HEIGHTxWIDTH|positive"):
            _size(bad)


# --- without TensorRT or a GPU: clear errors, nothing imported at package import -----------------


def test_engine_without_gpu_or_tensorrt_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    engine = tmp_path / "fcn.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(ModelError, match="CUDA is not available"):
        load_backend(engine, "auto", "auto")


def test_a_missing_engine_is_a_model_error_naming_it(tmp_path: Path) -> None:
    """stat() ran before any check: FileNotFoundError, not ModelError."""
    from fcn_road_seg.backends.tensorrt_backend import TensorRTBackend

    with pytest.raises(
        ModelError, match=f"TensorRT model file not found: {tmp_path / 'x.engine'}"
    ):
        TensorRTBackend(tmp_path / "x.engine", torch.device("cuda"))


def test_a_workspace_that_is_no_finite_size_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "m.onnx"), str(tmp_path / "m.engine"), "--workspace-gb", "inf"])
    assert "argument --workspace-gb: must be a finite number in [0.25, 1024] GiB, got inf" in (
        capsys.readouterr().err
    )


def test_missing_tensorrt_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from fcn_road_seg.backends.tensorrt_common import import_tensorrt

    # import now raises ImportError
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(
        ModelError,
        match=r"TensorRT is not installed: pip install tensorrt-cu12 \(built for CUDA 12\.8, as "
        "torch is;",
    ):
        import_tensorrt()
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only torch
    with pytest.raises(
        ModelError, match=r"pip install tensorrt-cu<CUDA major> \(built for a CUDA build of torch"
    ):
        import_tensorrt()


def test_build_cli_without_gpu_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    model = small_onnx(tmp_path / "m.onnx", [1, 8, 8, 3])
    assert main([str(model), str(tmp_path / "m.engine"), "--fp16"]) == 1
    assert "error: device 'cuda' requested but CUDA is not available" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# --- the runner's bindings, with a fake engine and context that record the calls ----------------


class FakeContext:
    """An execution context: the output shape is known once the input shape is set (as in
    TensorRT: -1 for a dynamic dimension before), within a profile up to ``largest`` (H, W)."""

    def __init__(self, shape: tuple[int, ...], largest: tuple[int, int]) -> None:
        self.shape, self.largest, self.calls = shape, largest, []

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.calls.append(("set_input_shape", name, shape))
        if shape[1] > self.largest[0] or shape[2] > self.largest[1]:
            return False
        self.shape = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        self.calls.append(("get_tensor_shape", name))
        return self.shape[:3]


class FakeEngine:
    """A deserialized engine with input ``shape``; ``context=False``: TensorRT cannot make one."""

    def __init__(self, shape: tuple[int, ...], context: bool = True) -> None:
        self.shape = shape
        self.context = FakeContext(shape, (1536, 2048)) if context else None

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shape

    def create_execution_context(self) -> FakeContext | None:
        return self.context


def runner(engine: FakeEngine, working_size: tuple[int, int] | None = None) -> Any:
    """A TensorRTBackend around ``engine`` (no GPU, no TensorRT: only its bookkeeping)."""
    from fcn_road_seg.backends import Backend
    from fcn_road_seg.backends.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend.__new__(TensorRTBackend)
    Backend.__init__(backend, torch.device("cpu"))
    backend.engine_path = Path("m.engine")
    backend._adopt(engine)
    backend.set_model_metadata(None if working_size is None else {"working_size": working_size})
    return backend


def test_a_dynamic_engine_sets_its_input_shape_on_every_call_at_a_network_size() -> None:
    engine = FakeEngine((1, -1, -1, 3))
    backend = runner(engine, working_size=(188, 624))
    backend.set_network_size("auto")
    assert backend.network_input(375, 1242)[0] == (188, 624)  # frames come at the working scale
    assert backend._output_shape((1, 188, 624, 3)) == (1, 188, 624)
    assert backend._output_shape((1, 188, 624, 3)) == (1, 188, 624)
    call = [("set_input_shape", "image", (1, 188, 624, 3)), ("get_tensor_shape", "prob")]
    assert engine.context.calls == call * 2
    with pytest.raises(ModelError, match=r"a 600x1600 image is outside the optimisation profile "):
        backend._output_shape((1, 1600, 600, 3))


def test_a_fixed_engine_never_sets_its_input_shape() -> None:
    engine = FakeEngine((1, 96, 320, 3))
    backend = runner(engine)
    backend.set_network_size("auto")
    assert backend.input_size == (96, 320) and not backend.dynamic
    assert backend._output_shape((1, 96, 320, 3)) == (1, 96, 320)
    assert engine.context.calls == [("get_tensor_shape", "prob")]


def test_no_execution_context_is_a_model_error() -> None:
    with pytest.raises(
        ModelError, match=r"TensorRT could not create an execution context for m\.engine"
    ):
        runner(FakeEngine((1, 96, 320, 3), context=False))


# --- with TensorRT and a CUDA GPU ----------------------------------------------------------------

needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU for TensorRT"
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small FCN8s exported to ONNX at a fixed 96x320 and with dynamic height and width."""
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU for TensorRT")
    from fcn_road_seg.model import FCN8s
    from fcn_road_seg.training.export import export_onnx

    torch.manual_seed(0)
    model = FCN8s(fc_channels=32, fc6_kernel=3).eval()
    with torch.no_grad():
        for layer in (model.score_fr, model.score_pool4, model.score_pool3):
            layer.weight.normal_(0.0, 0.2)
            layer.bias.normal_(0.0, 0.2)
    folder = tmp_path_factory.mktemp("trt")
    paths = {
        "fixed": folder / "fixed.onnx",
        "dynamic": folder / "dynamic.onnx",
        "fixed_fp16": folder / "fixed_fp16.onnx",
    }
    export_onnx(model, paths["fixed"], (96, 320))
    export_onnx(model, paths["dynamic"], (96, 320), dynamic=True)
    export_onnx(model, paths["fixed_fp16"], (96, 320), fp16=True)
    return paths


def fp16_source(exported: dict[str, Path]) -> Path:
    """The fixed model to build FP16 from: fp32 with TensorRT 10's FP16 flag, else (TensorRT 11,
    strong typing only) the fp16 export."""
    import tensorrt

    return exported["fixed" if trt_features(tensorrt).weak_typing else "fixed_fp16"]


def frames() -> list:
    """Random RGB frames: at the input size, smaller (padded), larger (resized)."""
    from fcn_road_seg.image import Frame

    gen = torch.Generator().manual_seed(3)
    return [
        Frame(torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=gen).numpy(), "rgb8")
        for h, w in [(96, 320), (93, 311), (120, 400)]
    ]


@needs_gpu
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_built_engine_matches_onnx_runtime(
    exported: dict, tmp_path: Path, precision: str, tolerance: float
) -> None:
    """The same fitted input to both (a resize on the GPU is torch's, on the CPU OpenCV's); end
    to end on the frames that need no resize."""
    from fcn_road_seg.backends import fit
    from fcn_road_seg.backends.tensorrt_build import build_engine

    engine = tmp_path / f"{precision}.engine"
    meta = build_engine(
        fp16_source(exported) if precision == "fp16" else exported["fixed"],
        engine,
        torch.device("cuda"),
        precision,
        timing_cache=tmp_path / "timing.cache",
    )
    assert (tmp_path / "timing.cache").stat().st_size > 0
    assert read_sidecar(engine) == meta and meta["precision"] == precision
    assert meta["input"]["shape"] == [1, 96, 320, 3] and meta["output"]["shape"] == [1, 96, 320]
    trt_backend = load_backend(engine, "tensorrt", "cuda")
    ort = load_backend(exported["fixed"], "onnxruntime", "cpu")
    assert trt_backend.input_size == (96, 320)
    for frame in frames():
        image, _ = fit(torch.from_numpy(frame.pixels)[None], (96, 320), "letterbox")
        with torch.inference_mode():
            got = trt_backend._forward(image.cuda()).cpu()
            assert float((got - ort._forward(image)).abs().max()) <= tolerance
        assert trt_backend.infer(frame).mask.shape == frame.shape
        if frame.shape[0] <= 96 and frame.shape[1] <= 320:  # padded, never resampled
            got = trt_backend.probability(frame)
            assert got.device.type == "cuda" and got.shape == frame.shape
            assert float((got.cpu() - ort.probability(frame)).abs().max()) <= tolerance


@needs_gpu
def test_tensorrt_ready_int8_builds_and_agrees_with_onnx_runtime(
    exported: dict, tmp_path: Path
) -> None:
    """``quantize_int8(tensorrt=True)``'s symmetric Q/DQ is what TensorRT builds (10 and 11)."""
    from fcn_road_seg.backends import fit
    from fcn_road_seg.backends.tensorrt_build import build_engine
    from fcn_road_seg.training.quantize import quantize_int8

    pytest.importorskip("onnxruntime")
    fitted = [fit(torch.from_numpy(f.pixels)[None], (96, 320), "stretch")[0] for f in frames()]
    qdq = tmp_path / "q.onnx"
    quantize_int8(exported["fixed"], qdq, [f.numpy() for f in fitted], tensorrt=True)
    meta = build_engine(qdq, tmp_path / "q.engine", torch.device("cuda"), "auto")
    assert meta["precision"] == "int8"
    backend = load_backend(tmp_path / "q.engine", "tensorrt", "cuda")
    ort = load_backend(qdq, "onnxruntime", "cpu")
    with torch.inference_mode():
        for image in fitted:
            got = backend._forward(image.cuda()).cpu()
            assert float((got - ort._forward(image)).abs().mean()) <= 0.05


@needs_gpu
def test_dynamic_engine_runs_at_two_sizes(exported: dict, tmp_path: Path) -> None:
    from fcn_road_seg.backends.tensorrt_build import build_engine

    engine = tmp_path / "dynamic.engine"
    build_engine(
        exported["dynamic"],
        engine,
        torch.device("cuda"),
        "fp32",
        profile=((32, 32), (96, 320), (256, 512)),
    )
    backend = load_backend(engine, "tensorrt", "cuda")
    assert backend.input_size is None
    ort = load_backend(exported["dynamic"], "onnxruntime", "cpu")
    for frame in frames()[1:]:
        assert (
            float((backend.probability(frame).cpu() - ort.probability(frame)).abs().max()) <= 1e-3
        )


@needs_gpu
def test_onnx_given_to_tensorrt_builds_and_caches_an_engine_in_the_cache(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    source = fp16_source(exported)
    backend = load_backend(source, "tensorrt", "cuda", precision="fp16")
    engine = backend.engine_path
    assert engine.parent == tmp_path / "cache" / "engines" and engine.is_file()
    assert not source.with_suffix(".engine").exists()
    built = engine.stat().st_mtime_ns
    load_backend(source, "tensorrt", "cuda", precision="fp16")
    assert engine.stat().st_mtime_ns == built  # current: loaded, not rebuilt


@needs_gpu
def test_a_dynamic_model_runs_at_its_working_size_on_an_engine_tuned_for_it(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine built from an .onnx at startup: OPT = the working size in its metadata, and
    the network size set from it (the input shape set on every call)."""
    from fcn_road_seg.backends import fit

    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "d.onnx"
    model.write_bytes(exported["dynamic"].read_bytes())
    write_sidecar(model, {"working_size": [64, 192]})
    backend = load_backend(model, "tensorrt", "cuda", precision="fp32")
    assert read_sidecar(backend.engine_path)["profile"] == [[32, 32], [64, 192], [1536, 2048]]
    assert backend.dynamic and backend.input_size == (64, 192)
    ort = load_backend(model, "onnxruntime", "cpu")
    for frame in frames():
        assert backend.infer(frame).mask.shape == frame.shape
        image, _ = fit(torch.from_numpy(frame.pixels)[None], (64, 192), "stretch")
        with torch.inference_mode():
            got = backend._forward(image.cuda()).cpu()
            assert float((got - ort._forward(image)).abs().max()) <= 1e-3


@needs_gpu
def test_calibration_images_are_finished_before_tensorrt_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """They are made on torch's stream; TensorRT reads them on its own."""
    from fcn_road_seg.backends.tensorrt_build import _calibration_images

    from conftest import KITTI_FRAMES

    if not any(KITTI_FRAMES.glob("*.png")):
        pytest.skip(f"no KITTI sample frames in {KITTI_FRAMES}")
    synced, synchronize = [], torch.cuda.synchronize
    monkeypatch.setattr(
        torch.cuda, "synchronize", lambda device=None: synced.append(device) or synchronize(device)
    )
    images = _calibration_images(KITTI_FRAMES, (96, 320), torch.device("cuda"), 2)
    assert synced == [torch.device("cuda")]
    assert [(tuple(i.shape), i.device.type) for i in images] == [((1, 96, 320, 3), "cuda")] * 2


@needs_gpu
def test_mismatched_or_corrupt_engines_are_model_errors(exported: dict, tmp_path: Path) -> None:
    from fcn_road_seg.backends.tensorrt_build import build_engine

    engine = tmp_path / "m.engine"
    meta = build_engine(exported["fixed"], engine, torch.device("cuda"), "fp32")
    write_sidecar(engine, {**meta, "tensorrt": "9.9.9"})
    with pytest.raises(
        ModelError, match=r"m\.engine cannot be used here: it was built with TensorRT 9\.9\.9"
    ):
        load_backend(engine, "tensorrt", "cuda")
    write_sidecar(engine, {**meta, "compute_capability": "1.0"})
    with pytest.raises(ModelError, match="built for compute capability 1.0"):
        load_backend(engine, "tensorrt", "cuda")
    write_sidecar(engine, meta)
    data = bytearray(engine.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    engine.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the SHA-256"):
        load_backend(engine, "tensorrt", "cuda")
    (tmp_path / "m.onnx").write_bytes(exported["fixed"].read_bytes())
    write_sidecar(engine, {**meta, "onnx": "m.onnx"})
    backend = load_backend(engine, "tensorrt", "cuda", rebuild="if-stale")  # rebuilt from m.onnx
    assert (
        backend.input_size == (96, 320)
        and read_sidecar(engine)["engine_sha256"] != meta["engine_sha256"]
    )


@needs_gpu
def test_garbage_engine_with_valid_looking_metadata_is_a_model_error(
    exported: dict, tmp_path: Path
) -> None:
    from fcn_road_seg.metadata import sha256_file
    from fcn_road_seg.backends.tensorrt_build import build_engine

    engine = tmp_path / "g.engine"
    meta = build_engine(exported["fixed"], engine, torch.device("cuda"), "fp32")
    engine.write_bytes(b"garbage" * 100)
    write_sidecar(engine, {**meta, "engine_sha256": sha256_file(engine)})
    with pytest.raises(ModelError, match=r"TensorRT could not deserialize .*g\.engine"):
        load_backend(engine, "tensorrt", "cuda")


def test_engine_cache_is_keyed_and_outside_the_model_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No TensorRT needed: the path an .onnx's startup engine is cached at."""
    from fcn_road_seg.backends.tensorrt_common import engine_cache_path

    onnx = tmp_path / "models" / "fcn.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"model bytes")
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path / "cache"))
    facts = {"tensorrt": "10.3.0", "gpu": "NVIDIA H200 (SXM)", "compute_capability": "9.0"}
    path = engine_cache_path(onnx, facts, "fp16")
    assert path.parent == tmp_path / "cache" / "engines"
    assert path.name == "fcn-9cb7487000bc86ac-trt10.3.0-NVIDIA-H200-SXM-sm9.0-fp16.engine"
    assert engine_cache_path(onnx, {**facts, "tensorrt": "10.4.0"}, "fp16") != path
    assert engine_cache_path(onnx, facts, "int8") != path
    onnx.write_bytes(b"other model")
    assert engine_cache_path(onnx, facts, "fp16") != path
    monkeypatch.delenv("FCN_ROAD_SEG_CACHE")
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros"))
    assert (
        engine_cache_path(onnx, facts, "fp16").parent
        == tmp_path / "ros" / "fcn_road_seg" / "engines"
    )
