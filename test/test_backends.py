"""Backends: ONNX Runtime against torch on real KITTI frames.

Also fixed/dynamic inputs, fit/unfit, load_backend.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fcn_road_seg.backends import Fit, backend_for, fit, load_backend, unfit
from fcn_road_seg.backends.base import PAD_RGB
from fcn_road_seg.metadata import read_sidecar, sidecar_path, write_sidecar
from fcn_road_seg.backends.onnx_backend import OnnxBackend, input_size
from fcn_road_seg.backends.torch_backend import TorchBackend
from fcn_road_seg.errors import ModelError
from fcn_road_seg.image import Frame
from fcn_road_seg.model import default_model_path, load_checkpoint_model, untrained_model
from fcn_road_seg.training.export import export_onnx

from conftest import KITTI_FRAMES, kitti_frame

CPU = torch.device("cpu")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def kitti_frames(count: int) -> list[np.ndarray]:
    """The first ``count`` real 1242x375 KITTI Road frames shipped with the project (BGR)."""
    names = [p.name for p in sorted(KITTI_FRAMES.glob("*.png"))[:count]]
    return [
        kitti_frame(name) for name in names or ["um_000005.png"]
    ]  # none shipped: kitti_frame skips


def exported(tiny_model: Path, name: str, size: tuple[int, int], dynamic: bool = False) -> Path:
    """``tiny_model`` exported to ONNX beside it (no parity check: test_export covers that)."""
    path = tiny_model.parent / name
    if not path.exists():
        export_onnx(load_checkpoint_model(tiny_model), path, size, dynamic)
    return path


@pytest.fixture(scope="module")
def kitti_onnx(tiny_model: Path) -> Path:
    """The default deployment shape: fixed 1 x 384 x 1248 x 3."""
    return exported(tiny_model, "kitti.onnx", (384, 1248))


@pytest.fixture(scope="module")
def small_onnx(tiny_model: Path) -> Path:
    """A small fixed-shape model (96 x 320), so that many odd sizes stay cheap."""
    return exported(tiny_model, "small.onnx", (96, 320))


@pytest.fixture(scope="module")
def dynamic_onnx(tiny_model: Path) -> Path:
    """Symbolic height and width."""
    return exported(tiny_model, "dynamic.onnx", (64, 96), dynamic=True)


@pytest.fixture(scope="module")
def torch_cpu(tiny_model: Path) -> TorchBackend:
    """The reference: the same checkpoint run by torch."""
    return load_backend(tiny_model, "torch", "cpu")


def compare(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """max |dP| and the fraction of pixels whose mask (P >= 0.5) differs."""
    assert got.shape == want.shape
    return float((got - want).abs().max()), float(((got >= 0.5) != (want >= 0.5)).float().mean())


@pytest.fixture(scope="module")
def kitti_dynamic(dynamic_onnx: Path) -> list[tuple[Frame, torch.Tensor]]:
    """Two real KITTI frames and P(road) from the dynamic ONNX model at their own 375x1242 size."""
    ort = load_backend(dynamic_onnx, "onnxruntime", "cpu")
    return [
        (frame, ort.probability(frame))
        for frame in (Frame(bgr, "bgr8") for bgr in kitti_frames(2))
    ]


def test_onnx_matches_torch_on_real_kitti_frames(
    kitti_dynamic: list, torch_cpu: TorchBackend
) -> None:
    for frame, p_onnx in kitti_dynamic:
        assert p_onnx.shape == (375, 1242)
        max_abs, mask_fraction = compare(p_onnx, torch_cpu.probability(frame))
        assert max_abs <= 1e-4 and mask_fraction <= 1e-4, (max_abs, mask_fraction)


def test_letterbox_pads_kitti_into_384x1248_without_resampling(
    kitti_onnx: Path, kitti_dynamic: list
) -> None:
    frame, p_dynamic = kitti_dynamic[0]
    bgr = frame.pixels
    assert bgr.shape == (375, 1242, 3)
    fixed = load_backend(kitti_onnx, "onnxruntime", "cpu")
    assert fixed.input_size == (384, 1248)
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))[None]
    padded, how = fit(rgb, fixed.input_size, "letterbox")
    assert how == Fit((375, 1242), (375, 1242))
    assert torch.equal(padded[:, :375, :1242], rgb)
    assert (padded[0, 375:] == torch.tensor(PAD_RGB, dtype=torch.uint8)).all()
    assert (padded[0, :, 1242:] == torch.tensor(PAD_RGB, dtype=torch.uint8)).all()
    p_fixed = fixed.probability(frame)
    # The only difference left is the padding itself: the model pads its normalised input with
    # exact zeros, the letterbox with the nearest uint8 colour to the ImageNet mean (about 0.005
    # after normalisation).
    max_abs, mask_fraction = compare(p_fixed, p_dynamic)
    assert max_abs <= 1e-3 and mask_fraction <= 5e-4, (max_abs, mask_fraction)


@pytest.mark.parametrize("policy", ["letterbox", "stretch"])
def test_fixed_shape_model_returns_masks_at_the_exact_input_size(
    small_onnx: Path, policy: str
) -> None:
    backend = load_backend(small_onnx, "onnxruntime", "cpu", resize_policy=policy)
    assert backend.input_size == (96, 320)
    rng = np.random.default_rng(1)
    for h, w in [(96, 320), (93, 310), (375, 1242), (37, 501), (101, 57), (1, 1)]:
        maps = backend.infer(Frame(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "rgb8"))
        assert maps.mask.shape == maps.confidence.shape == (h, w), (policy, h, w)
        assert maps.mask.dtype == np.uint8 and set(np.unique(maps.mask)) <= {0, 255}


def test_every_encoding_gives_the_same_mask_on_a_fixed_shape_model(small_onnx: Path) -> None:
    backend = load_backend(small_onnx, "onnxruntime", "cpu")
    bgr = cv2.resize(kitti_frames(1)[0], (311, 94), interpolation=cv2.INTER_AREA)
    want = backend.infer(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "rgb8")).mask
    for encoding, pixels in [
        ("bgr8", bgr),
        ("bgra8", cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)),
        ("rgba8", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)),
    ]:
        assert np.array_equal(backend.infer(Frame(pixels, encoding)).mask, want), encoding
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    mono = backend.infer(Frame(gray[..., None], "mono8")).mask
    grey_rgb = backend.infer(Frame(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), "rgb8")).mask
    assert np.array_equal(mono, grey_rgb)


def test_dynamic_model_runs_at_two_sizes_like_torch(
    dynamic_onnx: Path, torch_cpu: TorchBackend
) -> None:
    backend = load_backend(dynamic_onnx, "onnxruntime", "cpu")
    assert backend.input_size is None
    bgr = kitti_frames(1)[0]
    for w, h in [(576, 160), (311, 94)]:
        frame = Frame(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), "bgr8")
        got = backend.probability(frame)
        assert got.shape == (h, w)
        max_abs, mask_fraction = compare(got, torch_cpu.probability(frame))
        assert max_abs <= 1e-4 and mask_fraction <= 1e-4, (w, h, max_abs, mask_fraction)


def test_fit_and_unfit_round_trips() -> None:
    image = torch.randint(0, 256, (1, 375, 1242, 3), dtype=torch.uint8)
    same, how = fit(image, None, "letterbox")
    assert same is image and how == Fit((375, 1242), (375, 1242))
    shrunk, how = fit(image, (160, 320), "letterbox")  # too big: shrunk to fit, aspect ratio kept
    assert shrunk.shape == (1, 160, 320, 3) and how == Fit((375, 1242), (97, 320))
    stretched, how = fit(image, (160, 576), "stretch")
    assert stretched.shape == (1, 160, 576, 3) and how == Fit((375, 1242), (160, 576))
    prob = torch.rand(1, 160, 576)
    assert unfit(prob, how).shape == (375, 1242)
    # crop only, no copy
    assert unfit(prob, Fit((100, 200), (100, 200))).data_ptr() == prob.data_ptr()
    constant = torch.full((1, 160, 576), 0.25)
    assert torch.allclose(unfit(constant, how), torch.tensor(0.25))


def test_corrupt_onnx_is_a_model_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07 definitely not a protobuf" * 10)
    with pytest.raises(ModelError, match="broken.onnx"):
        load_backend(path, "onnxruntime", "cpu")


def foreign_model(path: Path, input_type: int = onnx.TensorProto.FLOAT, name: str = "x") -> Path:
    """A valid ONNX model that is not ours: Identity on a 1 x 8 x 8 x 3 tensor."""
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Identity", [name], ["y"])],
        "foreign",
        [helper.make_tensor_value_info(name, input_type, [1, 8, 8, 3])],
        [helper.make_tensor_value_info("y", input_type, [1, 8, 8, 3])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path
    )
    return path


def test_foreign_onnx_is_a_model_error_saying_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError,
        match=r"other\.onnx is not an fcn_road_seg ONNX model: expected one input "
        r"'image' tensor\(uint8\).*found 'x' tensor\(float\)",
    ):
        load_backend(foreign_model(tmp_path / "other.onnx"), "onnxruntime", "cpu")
    with pytest.raises(ModelError, match="expected one output 'prob'"):
        load_backend(
            foreign_model(tmp_path / "named.onnx", onnx.TensorProto.UINT8, "image"),
            "onnxruntime",
            "cpu",
        )


def half_size_model(path: Path) -> Path:
    """An ONNX model with our names and types whose ``prob`` has symbolic sizes of its own: the
    mean of the channels / 255 at every second row and column (half the input's size)."""
    from onnx import TensorProto as T, helper

    ints = {"axes": [3], "starts": [0, 0], "ends": [1 << 30, 1 << 30], "steps": [2, 2]}
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["image"], ["f"], to=T.FLOAT),
            helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
            helper.make_node("Div", ["m", "k"], ["p"]),
            helper.make_node("Slice", ["p", "starts", "ends", "sliced", "steps"], ["prob"]),
        ],
        "half",
        [helper.make_tensor_value_info("image", T.UINT8, [1, "h", "w", 3])],
        [helper.make_tensor_value_info("prob", T.FLOAT, [1, "h2", "w2"])],
        [
            *(helper.make_tensor(k, T.INT64, [len(v)], v) for k, v in ints.items()),
            helper.make_tensor("sliced", T.INT64, [2], [1, 2]),
            helper.make_tensor("k", T.FLOAT, [], [255.0]),
        ],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), path
    )
    return path


def test_a_model_whose_output_is_not_the_input_size_is_a_model_error(tmp_path: Path) -> None:
    """Its 50x80 P(road) for a 100x160 frame came back as 50x80 mask and confidence maps, not
    at the frame's size."""
    backend = load_backend(half_size_model(tmp_path / "half.onnx"), "onnxruntime", "cpu")
    frame = Frame(np.full((100, 160, 3), 51, np.uint8), "rgb8")
    with pytest.raises(ModelError) as info:
        backend.infer(frame)
    assert str(info.value).startswith(
        f"{tmp_path / 'half.onnx'} returned P(road) of shape [1, 50, 80] for a 100x160 image, "
        "expected [1, 100, 160]"
    )


def test_input_size_from_the_model_shape() -> None:
    assert input_size([1, 384, 1248, 3]) == (384, 1248)
    assert input_size([1, "height", "width", 3]) is None
    assert input_size([None, None, None, 3]) is None
    with pytest.raises(ValueError, match="only one of height and width"):
        input_size([1, 384, "width", 3])


def test_load_backend_picks_by_file_type(
    tiny_model: Path, small_onnx: Path, tmp_path: Path
) -> None:
    assert isinstance(load_backend(tiny_model, "auto", "cpu"), TorchBackend)
    onnx_backend = load_backend(small_onnx, "onnxruntime", "cpu")
    assert (
        isinstance(onnx_backend, OnnxBackend) and "CPUExecutionProvider" in onnx_backend.describe()
    )
    # TensorRT builds its engine from the ONNX model
    assert backend_for(small_onnx, "tensorrt") == "tensorrt"
    assert (
        backend_for("model.engine", "auto") == backend_for("model.plan", "tensorrt") == "tensorrt"
    )
    assert backend_for("model.pth", "auto") == "torch"


@pytest.mark.parametrize(
    "usable, device, expected",
    [
        (True, "cpu", "onnxruntime"),
        (True, "cpu:0", "onnxruntime"),
        (True, "auto", "tensorrt"),
        (True, "cuda:1", "tensorrt"),
        (False, "auto", "onnxruntime"),
        (False, "cuda", "onnxruntime"),
    ],
)
def test_auto_picks_tensorrt_only_where_it_can_run(
    small_onnx: Path, monkeypatch: pytest.MonkeyPatch, usable: bool, device: str, expected: str
) -> None:
    monkeypatch.setattr("fcn_road_seg.backends.companion._tensorrt_usable", lambda: usable)
    assert backend_for(small_onnx, "auto", device) == expected


@pytest.mark.parametrize(
    "backend, model, message",
    [
        ("torch", "small.onnx", "backend 'torch' cannot run .*small.onnx"),
        ("onnxruntime", "tiny.pt", "backend 'onnxruntime' cannot run .*tiny.pt"),
        ("tensorrt", "tiny.pt", "backend 'tensorrt' cannot run .*tiny.pt"),
        ("onnxruntime", "model.engine", "backend 'onnxruntime' cannot run .*model.engine"),
        ("auto", "weights.bin", "cannot tell the model type of .*weights.bin"),
        ("openvino", "tiny.pt", "backend 'openvino' runs ONNX models.*tiny.int8.onnx"),
        ("openvino", "model.engine", "backend 'openvino' cannot run .*model.engine"),
        ("vulkan", "tiny.pt", "unknown backend 'vulkan'"),
    ],
)
def test_load_backend_rejects_wrong_combinations(
    tiny_model: Path, small_onnx: Path, backend: str, model: str, message: str
) -> None:
    path = tiny_model.parent / model
    if not path.exists():
        path.write_bytes(b"x")
    with pytest.raises(ModelError, match=message):
        load_backend(path, backend, "cpu")


def test_load_backend_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file not found: .*nothing\.onnx"):
        load_backend(tmp_path / "nothing.onnx", "auto", "cpu")


def test_onnx_on_cuda_without_the_cuda_provider_is_a_clear_error(small_onnx: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(ModelError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        OnnxBackend(small_onnx, torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_onnx_on_cuda_matches_cpu(small_onnx: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs onnxruntime-gpu (CUDAExecutionProvider)")
    frame = Frame(cv2.resize(kitti_frames(1)[0], (311, 94)), "bgr8")
    gpu = load_backend(small_onnx, "onnxruntime", "cuda")
    got = gpu.probability(frame)
    assert got.device.type == "cuda"
    max_abs, _ = compare(
        got.cpu(), load_backend(small_onnx, "onnxruntime", "cpu").probability(frame)
    )
    assert max_abs <= 1e-3


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_gpu
def test_gpu_uploads_go_through_one_pinned_buffer_per_shape(tiny_model: Path) -> None:
    from fcn_road_seg.backends import PinnedBuffers, upload

    bgr = kitti_frames(2)
    backend = load_backend(tiny_model, "torch", "cuda")
    for frame in bgr:
        backend.infer(Frame(frame, "bgr8"))
    assert list(backend.pinned.buffers) == [(375, 1242, 3)]  # one buffer, refilled
    host, _ = backend.pinned.buffers[(375, 1242, 3)]
    assert host.is_pinned() and np.array_equal(host.numpy(), bgr[-1])
    pinned = PinnedBuffers(keep=2)
    uploads = [upload(Frame(frame, "bgr8"), torch.device("cuda"), pinned) for frame in bgr]
    for got, want in zip(uploads, bgr):  # the first upload is intact after the second
        assert np.array_equal(got[0].cpu().numpy(), want[..., ::-1])  # RGB
    for size in ((94, 311), (120, 400)):
        upload(Frame(cv2.resize(bgr[0], size[::-1]), "bgr8"), torch.device("cuda"), pinned)
    assert list(pinned.buffers) == [(94, 311, 3), (120, 400, 3)]  # at most ``keep``, oldest out


@needs_gpu
def test_torch_on_cuda_lets_cudnn_tune_and_keeps_compiled_outputs(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cuDNN autotuning is on for CUDA; a compiled (CUDA graph) network's outputs are copies, not
    the graph's buffer that the next frame overwrites."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    eager = TorchBackend(tiny_model, torch.device("cuda"), precision="fp32")
    assert torch.backends.cudnn.benchmark is True
    compiled = TorchBackend(tiny_model, torch.device("cuda"), precision="fp32", compile=True)
    gen = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (1, 96, 320, 3), dtype=torch.uint8, generator=gen).cuda()
        for _ in range(2)
    ]
    with torch.inference_mode():
        kept = [compiled._forward(images[i % 2]) for i in range(6)]  # past the graph's recording
        for i, got in enumerate(kept):
            assert float((got - eager._forward(images[i % 2])).abs().max()) <= 1e-3


def test_sidecar_round_trip_and_errors(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    assert read_sidecar(model) is None
    assert (
        write_sidecar(model, {"dynamic": False}) == sidecar_path(model) == tmp_path / "m.onnx.json"
    )
    assert read_sidecar(model) == {"dynamic": False}
    sidecar_path(model).write_text("{not json")
    with pytest.raises(ModelError, match=r"m\.onnx\.json"):
        read_sidecar(model)


def test_cpu_and_gpu_fitting_agree() -> None:
    """``fit``'s OpenCV path (CPU) and torch path (GPU; also run here on CPU tensors, and on CUDA
    where there is one) against pictures whose result is known by hand, and ``unfit`` likewise."""
    from fcn_road_seg.backends.base import _fit_cpu, _fit_torch

    devices = [CPU, *([torch.device("cuda")] if torch.cuda.is_available() else [])]
    paths = [("cpu", _fit_cpu, CPU)] + [(f"torch {d}", _fit_torch, d) for d in devices]

    def fitted(path: tuple, pixels: np.ndarray, valid: tuple, size: tuple) -> np.ndarray:
        _, fit_with, device = path
        out = fit_with(torch.from_numpy(pixels)[None].to(device), valid, size)
        assert out.dtype == torch.uint8 and out.shape == (1, *size, 3)
        return out[0].cpu().numpy()

    assert PAD_RGB == (124, 116, 104)  # round(255 * (0.485, 0.456, 0.406))

    # Pure padding, no resampling: the frame top-left, the ImageNet mean colour around it.
    rgb = cv2.cvtColor(kitti_frames(1)[0], cv2.COLOR_BGR2RGB)
    padded = np.empty((384, 1248, 3), np.uint8)
    padded[:] = (124, 116, 104)
    padded[:375, :1242] = rgb
    for path in paths:
        np.testing.assert_array_equal(fitted(path, rgb, (375, 1242), (384, 1248)), padded, path[0])

    # A constant picture shrunk by a non-integer factor (375x1242 -> 97x320) and padded: any
    # normalised filter keeps the constant.
    shrunk = np.empty((160, 320, 3), np.uint8)
    shrunk[:] = (124, 116, 104)
    shrunk[:97] = (77, 150, 3)
    constant = np.empty((375, 1242, 3), np.uint8)
    constant[:] = (77, 150, 3)
    for path in paths:
        np.testing.assert_array_equal(
            fitted(path, constant, (97, 320), (160, 320)), shrunk, path[0]
        )

    # Blocks halved (8x16 -> 4x8): the picture is col_step * [x >= 8] + row_step * [y >= 4].
    # Area averaging (CPU) gives each 2x2 block's value exactly. Antialiased bilinear (torch) at
    # scale 2 is the triangle filter over 4 input pixels, weights (1, 3, 3, 1) / 8, so the output
    # pixel on each side of a step mixes 1/8 of the other side: 200 -> 25 | 175, 40 -> 5 | 35.
    col_step, row_step = np.array([200, 120, 80]), np.array([40, 80, 16])
    x, y = np.arange(16), np.arange(8)
    blocks = ((x[None, :, None] >= 8) * col_step + (y[:, None, None] >= 4) * row_step).astype(
        np.uint8
    )
    area_cols, area_rows = np.array([0, 0, 0, 0, 8, 8, 8, 8]), np.array([0, 0, 8, 8])
    tent_cols, tent_rows = np.array([0, 0, 0, 1, 7, 8, 8, 8]), np.array([0, 1, 7, 8])
    area = (area_cols[None, :, None] * col_step + area_rows[:, None, None] * row_step) // 8
    tent = (tent_cols[None, :, None] * col_step + tent_rows[:, None, None] * row_step) // 8
    for path in paths:
        expected = area if path[0] == "cpu" else tent
        np.testing.assert_array_equal(fitted(path, blocks, (4, 8), (4, 8)), expected, path[0])
    assert (area != tent).sum() == 4 * 8 * 3 - 2 * 6 * 3  # they differ only next to the steps

    # Upscaled 2x2 -> 4x4 (bilinear on both paths, half-pixel centres: 0, 1/4, 3/4, 1 of the
    # way) and padded to 5x6.
    steps = np.zeros((2, 2, 3), np.uint8)
    steps[:, 1] = (200, 120, 80)
    upscaled = np.empty((5, 6, 3), np.uint8)
    upscaled[:] = (124, 116, 104)
    upscaled[:4, :4] = np.array([0, 0.25, 0.75, 1])[None, :, None] * [200, 120, 80]
    for path in paths:
        np.testing.assert_array_equal(fitted(path, steps, (4, 4), (5, 6)), upscaled, path[0])

    # unfit: crop the valid 2x2, bilinear back to 4x4: 0, 1/4, 3/4, 1 along each row.
    prob = torch.tensor([[[0.0, 1.0, 9.0], [0.0, 1.0, 9.0], [9.0, 9.0, 9.0]]])
    for device in devices:
        back = unfit(prob.to(device), Fit((4, 4), (2, 2))).cpu()
        assert torch.equal(back, torch.tensor([[0.0, 0.25, 0.75, 1.0]]).expand(4, 4)), device

    # A random map 160x576 -> 375x1242 against half-pixel bilinear transcribed in float64: OpenCV
    # (CPU) is exact to float32 rounding; torch (GPU) computes the source coordinates in float32,
    # up to 4e-5 off at x ~ 575.
    def bilinear_axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    prob = torch.rand(1, 160, 576, generator=torch.Generator().manual_seed(0))
    (y0, y1, fy), (x0, x1, fx) = bilinear_axis(375, 160), bilinear_axis(1242, 576)
    p = prob[0].double().numpy()
    rows = p[y0] * (1 - fy)[:, None] + p[y1] * fy[:, None]
    reference = rows[:, x0] * (1 - fx) + rows[:, x1] * fx
    for device, tolerance in zip(devices, (1e-6, 1e-4)):
        back = unfit(prob.to(device), Fit((375, 1242), (160, 576))).cpu().double().numpy()
        assert np.abs(back - reference).max() < tolerance, device


def test_missing_onnxruntime_is_a_clear_error(
    small_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # import now raises ImportError
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ModelError, match="ONNX Runtime is not installed: pip install onnxruntime"):
        load_backend(small_onnx, "onnxruntime", "cpu")


# --- the model's working size --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sized_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint that records its working size, 64x96, as fcn-road-train writes it."""
    path = tmp_path_factory.mktemp("sized") / "sized.pt"
    model = untrained_model(fc_channels=32, fc6_kernel=3)
    torch.save(
        {"model": model.state_dict(), "model_config": model.config, "working_size": [64, 96]}, path
    )
    return path


def network_shapes(backend) -> list[tuple[int, ...]]:
    """Record the shape of every tensor that reaches the backend's network."""
    seen, forward = [], backend._forward

    def spy(image: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(image.shape))
        return forward(image)

    backend._forward = spy
    return seen


@pytest.mark.parametrize(
    "requested,shape",
    # auto: 64 rows, 250 * 64 / 150 = 106.7 columns rounded to a multiple of 8 = 104
    [("auto", (1, 64, 104, 3)), ("native", (1, 150, 250, 3)), ("96x160", (1, 96, 160, 3))],
)
def test_network_runs_at_the_models_working_size(
    sized_model: Path, requested: str, shape: tuple
) -> None:
    backend = load_backend(sized_model, "torch", "cpu", network_size=requested)
    seen = network_shapes(backend)
    frame = Frame(np.random.default_rng(0).integers(0, 256, (150, 250, 3), dtype=np.uint8), "rgb8")
    maps = backend.infer(frame)
    assert seen == [shape]
    assert maps.mask.shape == maps.confidence.shape == (150, 250)
    assert ("64 rows, aspect ratio kept" in backend.describe()) == (requested == "auto")
    assert f"150x250 -> {shape[1]}x{shape[2]}" in backend.describe()


def test_working_size_maps_equal_a_manual_resize_and_back(sized_model: Path) -> None:
    """Area-shrink the frame to the working scale (64 rows, its aspect ratio kept: 64x104),
    run the net, bilinear P back. The backend does exactly that."""
    backend = load_backend(sized_model, "torch", "cpu")
    rgb = np.random.default_rng(1).integers(0, 256, (150, 250, 3), dtype=np.uint8)
    small = cv2.resize(rgb, (104, 64), interpolation=cv2.INTER_AREA)
    with torch.inference_mode():
        p = backend.net(torch.from_numpy(small)[None])[0].numpy()
    want = cv2.resize(p, (250, 150), interpolation=cv2.INTER_LINEAR)
    got = backend.probability(Frame(rgb, "rgb8")).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_exported_model_carries_the_working_size(sized_model: Path, tmp_path: Path) -> None:
    from fcn_road_seg.training.export import main as export_main

    fixed, dynamic = tmp_path / "fixed.onnx", tmp_path / "dynamic.onnx"
    assert export_main([str(sized_model), "-o", str(fixed), "--check-frames", "1"]) == 0
    assert (
        export_main([str(sized_model), "-o", str(dynamic), "--dynamic", "--check-frames", "1"])
        == 0
    )
    assert read_sidecar(fixed)["working_size"] == [64, 96] and read_sidecar(fixed)["input"][
        "shape"
    ] == [1, 64, 96, 3]
    # 150x225 at the working scale (64 rows, aspect kept) is exactly the fixed export's 64x96
    frame = Frame(np.random.default_rng(2).integers(0, 256, (150, 225, 3), dtype=np.uint8), "rgb8")
    want = load_backend(sized_model, "torch", "cpu").probability(frame)
    for path in (fixed, dynamic):
        backend = load_backend(path, "onnxruntime", "cpu")
        seen = network_shapes(backend)
        got = backend.probability(frame)
        assert seen == [(1, 64, 96, 3)] and got.shape == (150, 225)
        assert (got - want).abs().max().item() < 1e-4
    with pytest.raises(
        ModelError, match=r"network_size '96x160': this model's input is fixed at 64x96"
    ):
        load_backend(fixed, "onnxruntime", "cpu", network_size="96x160")


@pytest.mark.parametrize("value", ["big", "10x10", "64x"])
def test_bad_network_size_is_named(sized_model: Path, value: str) -> None:
    with pytest.raises(ModelError, match=f"network_size '{value}'"):
        load_backend(sized_model, "torch", "cpu", network_size=value)


# --- an ONNX model against its metadata ----------------------------------------------------------


def with_sidecar(model: Path, folder: Path, **meta) -> Path:
    """A copy of ``model`` in ``folder`` with ``meta`` as its sidecar."""
    copy = folder / model.name
    copy.write_bytes(model.read_bytes())
    write_sidecar(copy, meta)
    return copy


def fixed_meta(h: int, w: int, **more) -> dict:
    return {"dynamic": False, "input": {"name": "image", "shape": [1, h, w, 3]}, **more}


@pytest.mark.parametrize(
    "meta, words",
    [
        (fixed_meta(128, 128), "its metadata says the input is 128x128, the graph's is 64x64"),
        ({"dynamic": True}, "its metadata says the input is dynamic, the graph's is 64x64"),
        (fixed_meta(64, 64, onnx_sha256="0" * 64), "the file's SHA-256 is not the one its"),
        (fixed_meta(64, 64, working_size=[10**9, 10**9]), "working_size [1000000000, 10000"),
        (fixed_meta(64, 64, temperature=True), "temperature True is not a positive number"),
    ],
)
def test_onnx_metadata_that_does_not_describe_the_file_is_a_model_error(
    tiny_model: Path, tmp_path: Path, meta: dict, words: str
) -> None:
    """A sidecar claiming 128x128 was accepted over a 64x64 graph."""
    model = with_sidecar(exported(tiny_model, "g64.onnx", (64, 64)), tmp_path, **meta)
    with pytest.raises(ModelError, match=f"{model}") as info:
        load_backend(model, "onnxruntime", "cpu")
    assert words in str(info.value)


def test_onnx_metadata_that_describes_the_file_is_used(
    tiny_model: Path, dynamic_onnx: Path, tmp_path: Path
) -> None:
    from fcn_road_seg.metadata import sha256_file

    fixed = exported(tiny_model, "g64.onnx", (64, 64))
    meta = fixed_meta(64, 64, onnx_sha256=sha256_file(fixed), working_size=[64, 64])
    assert load_backend(
        with_sidecar(fixed, tmp_path, **meta), "onnxruntime", "cpu"
    ).input_size == (
        64,
        64,
    )
    dynamic = with_sidecar(
        dynamic_onnx,
        tmp_path,
        dynamic=True,
        input={"shape": [1, "height", "width", 3]},
        working_size=[64, 96],
    )
    opened = load_backend(dynamic, "onnxruntime", "cpu")
    assert opened.input_size is None and opened.working_size == (64, 96)


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_close_releases_the_network_and_is_idempotent(
    kind: str, tiny_model: Path, kitti_onnx: Path
) -> None:
    """After ``close`` nothing holds the network: its module or session is freed (a weak
    reference to it dies), and a second ``close`` is harmless."""
    import gc
    import weakref

    backend = load_backend(tiny_model if kind == "torch" else kitti_onnx, kind, "cpu")
    held = weakref.ref(backend.net if kind == "torch" else backend.session)
    backend.close()
    backend.close()
    gc.collect()
    assert held() is None


def test_onnxruntime_refuses_a_precision_it_cannot_give(small_onnx: Path) -> None:
    """precision fp16 or int8 with ONNX Runtime used to load and run the graph unchanged."""
    for precision in ("fp16", "int8", "fp32"):
        with pytest.raises(ModelError) as info:
            load_backend(small_onnx, "onnxruntime", "cpu", precision=precision)
        assert str(info.value) == (
            f"precision {precision}: ONNX Runtime runs {small_onnx} as it was exported (no "
            "metadata says how); use precision auto, backend openvino (fp32, bf16, fp16), or a "
            "model exported at that precision"
        )
    companion = default_model_path().with_suffix(".int8.onnx")
    with pytest.raises(ModelError, match=r"as it was exported \(int8\); use precision auto"):
        load_backend(companion, "onnxruntime", "cpu", precision="fp16")
    # the model's own precision is what it runs anyway
    assert load_backend(companion, "onnxruntime", "cpu", precision="int8").name == "onnxruntime"
