"""atomic.py: nothing half-written under a final name; a killed writer's leftovers are removed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcn_road_seg.atomic import (
    atomic_path,
    check_target,
    remove_leftovers,
    temp_dir_for,
    write_json,
)
from fcn_road_seg.errors import DataError

from conftest import ROOT

WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from fcn_road_seg.atomic import atomic_path
with atomic_path({target!r}) as tmp:
    tmp.write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_writer_go_with_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(root=str(ROOT), target=str(target))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert (
        len(left) == 1
        and left[0].startswith(f".model.pt.{child.pid}.")
        and left[0].endswith(".partial")
    )
    assert not target.exists()
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"complete")
    assert [p.name for p in tmp_path.iterdir()] == [
        "model.pt"
    ] and target.read_bytes() == b"complete"


def test_a_living_writers_temporary_is_kept(tmp_path: Path) -> None:
    mine = tmp_path / f".bag.{os.getpid()}.abc.partial"
    mine.mkdir()
    dead = tmp_path / ".bag.999999999.xyz.partial"
    (dead / "inner").mkdir(parents=True)
    init = tmp_path / ".bags.1.x.partial"  # pid 1 is always running
    init.write_text("")
    assert remove_leftovers(tmp_path) == [dead]
    assert mine.is_dir() and init.is_file() and not dead.exists()


def test_dead_writers_leftovers_of_every_name_go_not_only_the_targets(tmp_path: Path) -> None:
    """A SIGKILLed segment_bag leaves its bag, video and sheet temporaries: all go at once."""
    dead = [
        tmp_path / ".seg.999999999.a1b2c3d4.partial",
        tmp_path / ".overlay.mp4.999999998.zz_9.partial.mp4",
        tmp_path / ".m.int8.onnx.999999997.q.partial.fp32.onnx",
        tmp_path / ".out.999999996.old.partial",
    ]
    (dead[0] / "seg").mkdir(parents=True)
    (dead[0] / "seg" / "seg.db3").write_bytes(b"x" * 1000)
    for path in dead[1:]:
        path.write_bytes(b"x")
    kept = [tmp_path / ".hidden", tmp_path / ".a.partial", tmp_path / "x.999999999.a.partial"]
    for path in kept:
        path.write_text("mine")
    assert sorted(remove_leftovers(tmp_path)) == sorted(dead)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_check_target_removes_dead_leftovers_at_start(tmp_path: Path) -> None:
    stale = tmp_path / ".video.mp4.999999999.abc.partial.mp4"
    stale.write_bytes(b"x")
    assert check_target(tmp_path / "bag") == tmp_path / "bag"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "target, words",
    [
        ("/proc/x", "cannot write output /proc/x: No such file or directory in /proc"),
        ("/sys/x", "cannot write output /sys/x: Operation not permitted in /sys"),
        ("", "output '' must name a file or folder of its own"),
        (".", "output '.' must name a file or folder of its own"),
        ("..", "output '..' must name a file or folder of its own"),
        ("/", "output '/' must name a file or folder of its own"),
    ],
)
def test_outputs_that_cannot_be_written_are_named(target: str, words: str) -> None:
    if target.startswith(("/proc", "/sys")) and not Path(target).parent.is_dir():
        pytest.skip(f"{Path(target).parent} is not mounted here")
    with pytest.raises(DataError) as info:
        check_target(target)
    assert str(info.value) == words or str(info.value).startswith(words)


def test_an_output_below_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(
        DataError,
        match=f"cannot write --output {tmp_path}/afile/sub/x: {tmp_path}/afile is a file",
    ):
        check_target(tmp_path / "afile" / "sub" / "x", "--output")


def test_a_read_only_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK) and os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        with pytest.raises(DataError, match=f"cannot write output {folder}/x: Permission denied"):
            check_target(folder / "x")
    finally:
        folder.chmod(0o755)


def test_a_temporary_folder_has_the_usual_permissions(tmp_path: Path) -> None:
    """mkdtemp makes 0700; the folder an output becomes gets 0777 & ~umask, like mkdir's."""
    old = os.umask(0o022)
    try:
        folder = temp_dir_for(tmp_path / "out")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755
        os.umask(0o027)
        assert stat.S_IMODE(temp_dir_for(tmp_path / "out2").stat().st_mode) == 0o750
    finally:
        os.umask(old)


def test_folders_are_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "folder"
    with atomic_path(target, directory=True) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("a")
        time.sleep(0.01)
    assert [p.name for p in target.iterdir()] == ["a.txt"] and [
        p.name for p in tmp_path.iterdir()
    ] == ["folder"]


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    with pytest.raises(DataError, match=r"-o .*m\.pt is an input of this run"):
        check_target(tmp_path / "sub" / ".." / "m.pt", "-o", inputs=[model])
    assert model.read_bytes() == b"weights"


def test_a_file_output_that_is_a_folder_and_the_reverse_are_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    with pytest.raises(DataError, match=r"-o .*adir is a folder; give a file name"):
        check_target(tmp_path / "adir", "-o", folder=False)
    with pytest.raises(DataError, match=r"--output-dir .*afile is a file; give a folder"):
        check_target(tmp_path / "afile", "--output-dir", folder=True)
    assert check_target(tmp_path / "adir", "--output-dir", folder=True) == tmp_path / "adir"
    assert check_target(tmp_path / "afile", "-o", folder=False) == tmp_path / "afile"


def test_the_current_folder_may_be_written_into_but_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_target(".", "--output-dir", folder=True) == Path(".")
    with pytest.raises(DataError, match="must name a file or folder of its own"):
        check_target(".", "--output")


def test_json_reports_hold_null_where_a_metric_is_undefined(tmp_path: Path) -> None:
    """Python's json writes NaN, which no strict JSON reader (jq, JavaScript) accepts."""
    target = write_json(
        tmp_path / "metrics.json",
        {"FPR": float("nan"), "bins": [1.5, float("inf"), (float("-inf"), 2)], "n": 3},
    )
    assert target.read_text() == (
        '{\n  "FPR": null,\n  "bins": [\n    1.5,\n    null,\n    [\n      null,\n      2\n'
        '    ]\n  ],\n  "n": 3\n}\n'
    )
