"""atomic.py: nothing half-written under a final name; a killed writer's leftovers are removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcn_road_seg.atomic import atomic_path, remove_leftovers

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
    target = tmp_path / "bag"
    mine = tmp_path / f".bag.{os.getpid()}.abc.partial"
    mine.mkdir()
    dead = tmp_path / ".bag.999999999.xyz.partial"
    (dead / "inner").mkdir(parents=True)
    other = tmp_path / ".bags.1.x.partial"  # another target's
    other.write_text("")
    assert remove_leftovers(target) == [dead]
    assert mine.is_dir() and other.is_file() and not dead.exists()


def test_folders_are_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "folder"
    with atomic_path(target, directory=True) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("a")
        time.sleep(0.01)
    assert [p.name for p in target.iterdir()] == ["a.txt"] and [
        p.name for p in tmp_path.iterdir()
    ] == ["folder"]
