"""backends/selection.py: ``backend: auto`` on a CPU measures its candidates and keeps the fastest.

The timer is injected where the outcome must be known (no timing flakiness); one test runs the
real timer and checks the choice against the times it recorded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from fcn_road_seg.backends import BackendOptions, load_backend
from fcn_road_seg.backends.selection import Candidate, choice_path, cpu_candidates, select
from fcn_road_seg.backends.torch_backend import TorchBackend, cpu_has_bf16
from fcn_road_seg.errors import ModelError

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino", reason="needs OpenVINO: pip install 'fcn_road_seg[openvino]'")

TORCH = f"torch {'bf16' if cpu_has_bf16() else 'fp32'}"
CPU = {"model": "Test CPU 9000", "flags": "0123456789abcdef", "cores": 2}


def opener(network_size: str = "auto"):
    """Open a candidate as ``load_backend`` does."""
    return lambda c: load_backend(
        c.model, c.kind, "cpu", network_size=network_size, options=c.options
    )


def scripted(ms: dict[str, float]):
    """A timer that gives each backend kind a fixed time, counting its calls."""

    def time_ms(backend) -> float:
        time_ms.calls.append(backend.name)
        return ms[backend.name]

    time_ms.calls = []
    return time_ms


def never(backend) -> float:
    raise AssertionError(f"{backend.name} was timed, the cached choice should have been used")


@pytest.fixture
def candidates(int8_checkpoint: Path) -> list[Candidate]:
    return cpu_candidates(int8_checkpoint, "auto", "cpu", BackendOptions())


def test_a_checkpoint_with_a_companion_has_three_candidates(int8_checkpoint: Path) -> None:
    companion = int8_checkpoint.with_name("m.int8.onnx")
    found = cpu_candidates(int8_checkpoint, "auto", "cpu", BackendOptions())
    assert [(c.label, c.model, c.kind) for c in found] == [
        ("openvino int8", companion, "openvino"),
        ("onnxruntime int8", companion, "onnxruntime"),
        (TORCH, int8_checkpoint, "torch"),
    ]
    assert found[2].options.precision == TORCH.split()[1]
    assert [c.label for c in cpu_candidates(companion, "auto", "cpu", BackendOptions())] == [
        "openvino int8",
        "onnxruntime int8",
    ]


@pytest.mark.parametrize(
    "backend,options",
    [
        ("torch", BackendOptions()),
        ("openvino", BackendOptions()),
        ("auto", BackendOptions(precision="fp32")),
        ("auto", BackendOptions(compile=True)),
    ],
)
def test_explicit_settings_are_never_measured(
    int8_checkpoint: Path, backend: str, options: BackendOptions
) -> None:
    assert cpu_candidates(int8_checkpoint, backend, "cpu", options) == []


def test_nothing_to_choose_without_a_companion(tiny_model: Path) -> None:
    assert cpu_candidates(tiny_model, "auto", "cpu", BackendOptions()) == []
    assert (
        cpu_candidates(tiny_model.with_name("missing.pt"), "auto", "cpu", BackendOptions()) == []
    )


@pytest.mark.parametrize("fastest", ["openvino", "onnxruntime", "torch"])
def test_auto_keeps_the_fastest_candidate(
    candidates: list[Candidate], tmp_path: Path, fastest: str
) -> None:
    ms = {"openvino": 30.0, "onnxruntime": 40.0, "torch": 50.0, fastest: 10.0}
    timer = scripted(ms)
    backend = select(candidates, opener(), {}, timer, tmp_path, CPU)
    assert backend.name == fastest and timer.calls == ["openvino", "onnxruntime", "torch"]
    times = ", ".join(
        f"{label} {ms[kind]:.1f} ms"
        for label, kind in [
            ("openvino int8", "openvino"),
            ("onnxruntime int8", "onnxruntime"),
            (TORCH, "torch"),
        ]
    )
    label = {"openvino": "openvino int8", "onnxruntime": "onnxruntime int8", "torch": TORCH}
    assert backend.selection == f"auto chose {label[fastest]} (measured now: {times})"


def test_the_choice_is_cached_per_model_files_and_cpu(
    candidates: list[Candidate], tmp_path: Path
) -> None:
    first = select(
        candidates,
        opener(),
        {},
        scripted({"openvino": 9, "onnxruntime": 5, "torch": 7}),
        tmp_path,
        CPU,
    )
    [path] = tmp_path.iterdir()
    assert path.name.startswith("m.int8-Test-CPU-9000-") and path.suffix == ".json"
    stored = json.loads(path.read_text())
    assert stored["chosen"] == "onnxruntime int8"
    assert stored["times_ms"] == {"openvino int8": 9, "onnxruntime int8": 5, TORCH: 7}
    again = select(candidates, opener(), {}, never, tmp_path, CPU)
    assert first.name == again.name == "onnxruntime"
    assert again.selection.startswith("auto chose onnxruntime int8 (measured 20")
    assert f"cached in {path}" in again.selection
    # another CPU, or other settings: measured again, into a file of its own
    other = select(
        candidates,
        opener(),
        {},
        scripted({"openvino": 1, "onnxruntime": 5, "torch": 7}),
        tmp_path,
        {**CPU, "flags": "f" * 16},
    )
    assert other.name == "openvino" and len(list(tmp_path.iterdir())) == 2
    sized = select(
        candidates,
        opener("native"),
        {"network_size": "native"},
        scripted({"openvino": 9, "onnxruntime": 5, "torch": 1}),
        tmp_path,
        CPU,
    )
    assert sized.name == "torch" and len(list(tmp_path.iterdir())) == 3


def test_a_changed_model_file_is_measured_again(int8_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("m.pt", "m.int8.onnx", "m.int8.onnx.json"):
        shutil.copy(int8_checkpoint.with_name(name), folder / name)
    found = cpu_candidates(folder / "m.pt", "auto", "cpu", BackendOptions())
    cache = tmp_path / "cache"
    select(
        found, opener(), {}, scripted({"openvino": 9, "onnxruntime": 5, "torch": 7}), cache, CPU
    )
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(folder / "m.int8.onnx"))
    model.doc_string = "re-exported"  # the same network in other bytes: another SHA-256
    onnx.save(model, str(folder / "m.int8.onnx"))
    sidecar = folder / "m.int8.onnx.json"  # re-exported: its metadata records the new SHA-256
    meta = json.loads(sidecar.read_text())
    meta["onnx_sha256"] = hashlib.sha256((folder / "m.int8.onnx").read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta))
    assert (
        select(
            found,
            opener(),
            {},
            scripted({"openvino": 1, "onnxruntime": 5, "torch": 7}),
            cache,
            CPU,
        ).name
        == "openvino"
    )


def remeasured(candidates: list[Candidate], folder: Path, spoil: Callable[[Path], None]) -> Any:
    """Select with onnxruntime fastest, ``spoil`` the cached choice, then select with openvino
    fastest: the backend the second selection returns."""
    select(
        candidates,
        opener(),
        {},
        scripted({"openvino": 9, "onnxruntime": 5, "torch": 7}),
        folder,
        CPU,
    )
    [path] = folder.iterdir()
    spoil(path)
    return select(
        candidates,
        opener(),
        {},
        scripted({"openvino": 1, "onnxruntime": 5, "torch": 7}),
        folder,
        CPU,
    )


def test_an_unreadable_cache_file_is_measured_again(
    candidates: list[Candidate], tmp_path: Path
) -> None:
    backend = remeasured(candidates, tmp_path, lambda path: path.write_text("{ not json"))
    [path] = tmp_path.iterdir()
    assert backend.name == "openvino" and json.loads(path.read_text())["chosen"] == "openvino int8"


@pytest.mark.parametrize("drop", ["times_ms", "errors", "measured"])
def test_a_cache_file_missing_an_entry_is_measured_again(
    candidates: list[Candidate], tmp_path: Path, drop: str
) -> None:
    """A hand-edited choice whose key still matches but lacks an entry crashed with KeyError."""

    def without_entry(path: Path) -> None:
        choice = json.loads(path.read_text())
        del choice[drop]
        path.write_text(json.dumps(choice))

    backend = remeasured(candidates, tmp_path, without_entry)
    assert backend.name == "openvino" and backend.selection.startswith(
        "auto chose openvino int8 (measured now: openvino int8 1.0 ms"
    )


def test_a_candidate_that_cannot_run_is_named_and_skipped(
    candidates: list[Candidate], tmp_path: Path
) -> None:
    def open_candidate(c: Candidate):
        if c.kind == "openvino":
            raise ModelError("OpenVINO cannot compile m.int8.onnx: test")
        return opener()(c)

    backend = select(
        candidates, open_candidate, {}, scripted({"onnxruntime": 5, "torch": 7}), tmp_path, CPU
    )
    assert backend.name == "onnxruntime"
    assert backend.selection == (
        "auto chose onnxruntime int8 (measured now: openvino int8 failed (OpenVINO cannot "
        f"compile m.int8.onnx: test), onnxruntime int8 5.0 ms, {TORCH} 7.0 ms)"
    )

    def nothing(c: Candidate):
        raise ModelError(f"{c.kind} is broken")

    with pytest.raises(
        ModelError, match="backend auto: no backend can run the model here: openvino int8 failed"
    ):
        select(candidates, nothing, {}, never, tmp_path / "none", CPU)


def test_load_backend_auto_keeps_what_it_measured_fastest(
    int8_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real timer: whatever the machine, the winner is the lowest time recorded."""
    monkeypatch.setenv("FCN_ROAD_SEG_CACHE", str(tmp_path))
    backend = load_backend(int8_checkpoint, "auto", "cpu")
    [path] = (tmp_path / "backends").iterdir()
    stored = json.loads(path.read_text())
    assert list(stored["times_ms"]) == ["openvino int8", "onnxruntime int8", TORCH]
    assert stored["chosen"] == min(stored["times_ms"], key=stored["times_ms"].get)
    assert backend.name == stored["chosen"].split()[0]
    assert backend.selection.startswith(f"auto chose {stored['chosen']} (measured now: ")
    assert load_backend(int8_checkpoint, "auto", "cpu").name == backend.name  # from the cache
    assert isinstance(load_backend(int8_checkpoint, "torch", "cpu"), TorchBackend)
    assert load_backend(int8_checkpoint, "torch", "cpu").selection == ""


def test_choice_files_are_named_by_model_cpu_and_key(tmp_path: Path) -> None:
    key = {"cpu": {"model": "Intel(R) Xeon(R) Platinum 8480+"}, "candidates": []}
    path = choice_path(key, "fcn8s_kitti.int8", tmp_path)
    assert path.parent == tmp_path
    assert path.name.startswith("fcn8s_kitti.int8-Intel-R-Xeon-R-Platinum-8480-")
    assert (
        choice_path({**key, "settings": {"network_size": "native"}}, "fcn8s_kitti.int8", tmp_path)
        != path
    )
