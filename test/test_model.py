"""model.py: FCN-8s shapes, bilinear upsampling init, skip scaling, torchvision VGG16 weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fcn_road_seg.errors import ModelError
from fcn_road_seg.model import (
    POOL3_END,
    POOL3_SCALE,
    POOL4_END,
    POOL4_SCALE,
    FCN8s,
    scaled_size,
    working_height_of,
)
from fcn_road_seg.training.weights import build_model, load_vgg16_weights

LIGHT = {"fc_channels": 16, "fc6_kernel": 3}


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """torchvision's VGG16 state dict saved as a weights file.

    Exact keys and shapes, random values.
    """
    torch.manual_seed(0)
    state = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16-local.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def features_state(vgg16_file: tuple[Path, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Only the ``features.*`` entries: all that a light-head model needs."""
    return {k: v for k, v in vgg16_file[1].items() if k.startswith("features.")}


def _full_shell() -> FCN8s:
    """A full-head (4096, 7x7) model on the meta device: no cost to initialise 120M fc weights."""
    with torch.device("meta"):
        return FCN8s()


@pytest.mark.parametrize("size", [(97, 131), (33, 65), (1, 1)])
def test_output_shape_at_odd_sizes(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = FCN8s(**LIGHT).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 2, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(375, 1242), (370, 1224), (374, 1238)])
def test_output_shape_at_kitti_resolutions(size: tuple[int, int]) -> None:
    with torch.device("meta"):  # shapes only: the real arithmetic is covered at the smaller sizes
        out = FCN8s().eval()(torch.empty(1, 3, *size))
    assert out.shape == (1, 2, *size)


@pytest.mark.parametrize("name,factor", [("upscore2", 2), ("upscore_pool4", 2), ("upscore8", 8)])
def test_transposed_convs_start_as_bilinear_upsampling(name: str, factor: int) -> None:
    layer = getattr(FCN8s(**LIGHT), name)
    torch.manual_seed(1)
    x = torch.randn(1, 2, 7, 9)
    with torch.no_grad():
        out = layer(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == ref.shape == (1, 2, 7 * factor, 9 * factor)
    # Interior: away from the border, where zero padding differs from interpolate's edge clamping.
    inner = (..., slice(factor, -factor), slice(factor, -factor))
    torch.testing.assert_close(out[inner], ref[inner], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[..., 0, 0], ref[..., 0, 0])  # the border really is different


def test_skips_are_scaled() -> None:
    torch.manual_seed(2)
    model = FCN8s(**LIGHT).eval()
    seen: dict[str, torch.Tensor] = {}
    model.features[POOL3_END - 1].register_forward_hook(
        lambda m, i, o: seen.__setitem__("pool3", o)
    )
    model.features[POOL4_END - 1].register_forward_hook(
        lambda m, i, o: seen.__setitem__("pool4", o)
    )
    model.score_pool3.register_forward_pre_hook(lambda m, i: seen.__setitem__("in3", i[0]))
    model.score_pool4.register_forward_pre_hook(lambda m, i: seen.__setitem__("in4", i[0]))
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 96))
    assert (POOL4_SCALE, POOL3_SCALE) == (0.01, 0.0001)
    assert seen["pool4"].abs().max() > 0
    torch.testing.assert_close(seen["in4"], seen["pool4"] * 0.01)
    torch.testing.assert_close(seen["in3"], seen["pool3"] * 0.0001)


def test_score_layers_start_at_zero() -> None:
    model = FCN8s(**LIGHT).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
    assert torch.count_nonzero(out) == 0  # zero-initialised score layers: P(road) = 0.5 everywhere


def test_imagenet_format_weights_are_copied(
    vgg16_file: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, state = vgg16_file
    model = _full_shell().to_empty(device="cpu")
    assert load_vgg16_weights(model, str(path)) == ["features", "fc6", "fc7"]
    for k, v in model.features.state_dict().items():
        assert torch.equal(v, state[f"features.{k}"]), k
    assert torch.equal(model.fc6.weight, state["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(model.fc6.bias, state["classifier.0.bias"])
    assert torch.equal(model.fc7.weight[:, :, 0, 0], state["classifier.3.weight"])
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"])
    # fc6 as a convolution on a 7x7 pool5 equals the classifier's first linear layer on the
    # flattened map.
    pool5 = torch.randn(1, 512, 7, 7)
    with torch.no_grad():
        conv = F.conv2d(pool5, model.fc6.weight, model.fc6.bias)[0, :, 0, 0]
        linear = F.linear(
            pool5.flatten(1), state["classifier.0.weight"], state["classifier.0.bias"]
        )[0]
    torch.testing.assert_close(conv, linear, atol=1e-4, rtol=1e-4)


def test_light_head_takes_features_only(
    tmp_path: Path, features_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "features.pth"
    torch.save(features_state, path)
    model = FCN8s(**LIGHT)
    fc6 = model.fc6.weight.clone()
    assert load_vgg16_weights(model, str(path)) == ["features"]
    assert torch.equal(model.features[28].weight, features_state["features.28.weight"])
    assert torch.equal(model.fc6.weight, fc6)


def test_missing_key_names_file_and_key(
    tmp_path: Path, features_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "missing.pth"
    torch.save({k: v for k, v in features_state.items() if k != "features.10.weight"}, path)
    with pytest.raises(ModelError, match=r"missing\.pth.*features\.10\.weight"):
        build_model(str(path), **LIGHT)


def test_wrong_shape_names_file_key_and_shape(
    tmp_path: Path, features_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "shape.pth"
    torch.save({**features_state, "features.0.weight": torch.zeros(64, 1, 3, 3)}, path)
    expected = r"shape\.pth.*features\.0\.weight: \(64, 1, 3, 3\) \(expected \(64, 3, 3, 3\)\)"
    with pytest.raises(ModelError, match=expected):
        build_model(str(path), **LIGHT)


def test_full_head_needs_classifier(
    tmp_path: Path, features_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "nofc.pth"
    torch.save(features_state, path)
    with pytest.raises(ModelError, match=r"nofc\.pth.*classifier\.0\.weight"):
        load_vgg16_weights(_full_shell(), str(path))


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b"not a torch file at all", "cannot read weights .*: not a PyTorch file"),
        (None, "holds a list, not a state dict"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, content: bytes | None, pattern: str) -> None:
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=pattern) as info:
        build_model(str(path), **LIGHT)
    assert str(path) in str(info.value)


def test_truncated_file_names_the_file(
    tmp_path: Path, features_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "truncated.pth"
    torch.save(features_state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="cannot read weights .*: truncated or corrupt") as info:
        build_model(str(path), **LIGHT)
    assert str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"weights file not found: {tmp_path / 'nope.pth'}"):
        build_model(str(tmp_path / "nope.pth"), **LIGHT)


def _checkpoint(path: Path, **entries) -> Path:
    model = FCN8s(**LIGHT)
    torch.save({"model": model.state_dict(), "model_config": model.config, **entries}, path)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: torch.save({"model": [1, 2, 3], "model_config": {}}, p),
            "'model' is a list, not a state dict",
        ),
        (
            lambda p: torch.save({"model": {}, "model_config": "big"}, p),
            "'model_config' is a str, not a mapping",
        ),
        (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        (lambda p: p.mkdir(), "is a directory, not a file"),
        (lambda p: p.write_bytes(bytes(range(256)) * 40), "not a PyTorch file (UnpicklingError)"),
        (
            lambda p: (
                torch.save({"model": {}, "model_config": {}}, p)
                or p.write_bytes(p.read_bytes()[:300])
            ),
            "truncated or corrupt",
        ),
    ],
)
def test_bad_checkpoints_are_one_clear_model_error(tmp_path: Path, make, message: str) -> None:
    from fcn_road_seg.model import read_checkpoint

    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(ModelError) as info:
        read_checkpoint(path)
    text = str(info.value)
    assert str(path) in text and message in text and "weights_only" not in text


def test_a_checkpoint_holding_python_objects_is_not_called_corrupt(tmp_path: Path) -> None:
    """An intact checkpoint with an ``args`` Namespace (as many training scripts save) was
    reported as 'truncated or corrupt'."""
    import argparse

    from fcn_road_seg.model import read_checkpoint

    path = _checkpoint(tmp_path / "args.pt", args=argparse.Namespace(lr=0.1))
    with pytest.raises(ModelError) as info:
        read_checkpoint(path)
    assert str(info.value) == (
        f"cannot read model {path}: it holds Python objects (argparse.Namespace) that are not "
        "loaded: only tensors and plain values are, so that no code in the file runs; save "
        "those alone (UnpicklingError)"
    )


def test_nan_weights_are_refused_at_load(tmp_path: Path) -> None:
    from fcn_road_seg.model import read_checkpoint

    model = FCN8s(**LIGHT)
    state = model.state_dict()
    state["score_fr.weight"] = torch.full_like(state["score_fr.weight"], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save({"model": state, "model_config": model.config}, path)
    with pytest.raises(
        ModelError, match=rf"{path}: weights that are NaN or infinite in score_fr.weight"
    ):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "convert, words",
    [
        (
            lambda t: t.to(torch.float8_e4m3fn),
            "score_fr.weight (torch.float8_e4m3fn, torch.strided)",
        ),
        (lambda t: t.to_sparse(), "score_fr.weight (torch.float32, torch.sparse_coo)"),
    ],
)
def test_weights_of_an_odd_dtype_or_layout_are_refused_at_load(
    tmp_path: Path, convert, words: str
) -> None:
    """float8 or sparse weights crashed the NaN check with a bare NotImplementedError."""
    from fcn_road_seg.model import read_checkpoint

    model = FCN8s(**LIGHT)
    state = model.state_dict()
    state["score_fr.weight"] = convert(state["score_fr.weight"])
    path = tmp_path / "odd.pt"
    torch.save({"model": state, "model_config": model.config}, path)
    with pytest.raises(ModelError) as info:
        read_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint {path}: weights that are not dense float16, bfloat16, float32 or float64 "
        f"tensors: {words}"
    )


def test_forward_backward_gives_finite_gradients_everywhere() -> None:
    """One training step's worth: every parameter gets a finite gradient, the loss is finite."""
    torch.manual_seed(0)
    model = FCN8s(**LIGHT).train()
    with torch.no_grad():
        model.score_fr.weight.normal_(0, 0.1)
    x = torch.rand(2, 3, 40, 56)
    target = (torch.rand(2, 40, 56) > 0.5).long()
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (
        model.features[0].weight.grad.abs().sum() > 0
        and model.upscore8.weight.grad.abs().sum() > 0
    )


@pytest.mark.parametrize(
    "frame,height,expected",
    [
        ((375, 1242), 188, (188, 624)),  # 622.7 -> 624: a KITTI frame gets today's 188x624
        ((376, 1241), 188, (188, 624)),  # 620.5 -> 624
        ((360, 480), 188, (188, 248)),  # 250.7 -> 248: CamVid keeps 4:3
        ((100, 10), 64, (64, 8)),  # never below one multiple
    ],
)
def test_scaled_size_keeps_aspect_at_the_working_height(frame, height, expected) -> None:
    assert scaled_size(*frame, height) == expected


def test_working_height_comes_from_the_metadata_or_the_working_size() -> None:
    assert working_height_of({"working_height": 200, "working_size": [188, 624]}) == 200
    assert working_height_of({"working_size": [188, 624]}) == 188  # older files
    assert working_height_of({}) is None and working_height_of(None) is None


def _with_config(path: Path, **config) -> Path:
    """A checkpoint of the LIGHT model's weights whose model_config says ``config``."""
    model = FCN8s(**LIGHT)
    torch.save({"model": model.state_dict(), "model_config": {**model.config, **config}}, path)
    return path


@pytest.mark.parametrize(
    "config, message",
    [
        ({"fc_channels": 20000}, "model_config fc_channels 20000 is not an integer in [1, 4096]"),
        ({"fc_channels": 100000}, "model_config fc_channels 100000 is not an integer in"),
        ({"fc_channels": True}, "model_config fc_channels True is not an integer"),
        ({"num_classes": 3}, "model_config num_classes 3 is not an integer in [2, 2]"),
        ({"fc6_kernel": 4}, "model_config fc6_kernel 4 is not an odd integer in [1, 15]"),
        ({"fc6_kernel": 101}, "model_config fc6_kernel 101 is not an odd integer"),
        ({"dropout": float("nan")}, "model_config dropout nan is not a number in [0, 1)"),
        ({"width": 2}, "model_config has unknown entries ['width']"),
        (
            {"fc_channels": 4096, "fc6_kernel": 15},
            "needs fc6.weight of shape [4096, 512, 15, 15], but the weights have [16, 512, 3, 3]",
        ),
        ({"fc_channels": 17}, "needs fc6.weight of shape [17, 512, 3, 3]"),
    ],
)
def test_checkpoint_configs_are_bounded_before_anything_is_allocated(
    tmp_path: Path, config: dict, message: str
) -> None:
    """fc_channels 20000 reached 2.7 GB and 16 s before its error; 4096 with a 15x15 fc6 would
    build a 2 GB layer for 16-channel weights. Now the config is checked against the weights."""
    import time

    from fcn_road_seg.model import read_checkpoint

    path = _with_config(tmp_path / "big.pt", **config)
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        read_checkpoint(path)
    assert time.perf_counter() - start < 5.0
    assert str(info.value).startswith(f"checkpoint {path}: ") and message in str(info.value)


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"working_size": [10**9, 10**9]}, "working_size [1000000000, 1000000000] is not"),
        ({"working_size": [188, 9000]}, "each in [32, 8192]"),
        ({"working_size": [True, 64]}, "working_size [True, 64] is not"),
        ({"temperature": True}, "temperature True is not a positive number"),
        ({"temperature": float("inf")}, "temperature inf is not a positive number"),
        ({"working_height": 10**6}, "working_height 1000000 is not an integer in [32, 8192]"),
    ],
)
def test_checkpoint_metadata_is_bounded(tmp_path: Path, entries: dict, message: str) -> None:
    """working_size [1e9, 1e9] loaded and the first frame died in cv2 out of memory."""
    from fcn_road_seg.model import read_checkpoint

    path = _checkpoint(tmp_path / "m.pt", **entries)
    with pytest.raises(ModelError, match=f"checkpoint {path}: ") as info:
        read_checkpoint(path)
    assert message in str(info.value)


def test_a_valid_config_and_metadata_load(tmp_path: Path) -> None:
    from fcn_road_seg.model import read_checkpoint

    path = _checkpoint(tmp_path / "m.pt", working_size=[188, 624], temperature=1.5)
    model, meta = read_checkpoint(path)
    assert model.config == {"num_classes": 2, **LIGHT}
    assert meta == {"working_size": [188, 624], "temperature": 1.5}
