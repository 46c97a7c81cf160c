"""Atomic file and folder writes: write beside the target, fsync, then rename over it.

The temporary sibling is named ``.<name>.<pid>.<random>.partial``. A run killed before its rename
(SIGKILL, power loss) leaves one behind; the next write of the same target removes those whose
process is gone. The file (or every file of a folder) and the parent folder are fsynced around the
rename, so a crash can never leave a complete-looking but empty file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_dir_for(target: Path) -> Path:
    """A new temporary folder beside ``target``, named like ``atomic_path``'s.

    Dead leftovers are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    return Path(
        tempfile.mkdtemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent
        )
    )


def remove_leftovers(target: Path) -> list[Path]:
    """Remove the temporaries of earlier, dead writers of ``target``; returns what was removed."""
    removed = []
    for stale in target.parent.glob(f".{target.name}.*.partial*"):
        parts = stale.name[len(target.name) + 2 :].split(".")
        if not parts[0].isdigit() or _alive(int(parts[0])):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync a file, or every file of a folder tree and the folders themselves."""
    if not path.is_dir():
        _fsync(path)
        return
    for folder, _, files in os.walk(path):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success fsync and rename it to ``target``.

    On error the temporary path is removed.

    With ``directory=True`` the temporary path does not exist yet, so that tools which
    insist on creating their output folder themselves (rosbag2 writers) can use it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    if directory:
        tmp_path.unlink()
    else:
        umask = os.umask(0)
        os.umask(umask)
        tmp_path.chmod(0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        if tmp_path.exists():
            fsync_tree(tmp_path)
        os.replace(tmp_path, target)
        _fsync(target.parent)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise
