"""Atomic file and folder writes: write beside the target, fsync, then rename over it.

The temporary sibling is named ``.<name>.<pid>.<random>.partial``. A run killed before its rename
(SIGKILL, power loss) leaves one behind; the next write into that folder (and ``check_target``,
which the tools call at start) removes every one whose process is gone. The file (or every file of
a folder) and the parent folder are fsynced around the rename, so a crash can never leave a
complete-looking but empty file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import DataError

#: ``.<name>.<pid>.<random>.partial``, maybe followed by a suffix an encoder needs (``.mp4``)
_TEMPORARY = re.compile(r"\..+\.(\d+)\.[a-z0-9_]+\.partial(\..+)?")


def _alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    """The process's umask (reading it means setting it: it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def temp_dir_for(target: Path) -> Path:
    """A new temporary folder beside ``target``, named like ``atomic_path``'s.

    Dead leftovers are removed first. The folder gets the usual permissions (``mkdtemp`` makes
    0700), so the output it becomes is like any other folder.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target.parent)
    tmp = Path(
        tempfile.mkdtemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent
        )
    )
    tmp.chmod(0o777 & ~_umask())
    return tmp


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporaries that dead writers left in ``folder``; returns what was removed.

    Only names of this module's form whose process id is not running (on this machine) go.
    """
    removed = []
    for stale in folder.glob(".*.partial*"):
        match = _TEMPORARY.fullmatch(stale.name)
        if match is None or _alive(int(match[1])):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def check_target(
    target: str | os.PathLike,
    what: str = "output",
    *,
    folder: bool | None = None,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """``target`` as a Path once it is known that it can be written; call it before any work.

    ``folder``: None for a file or a folder that a write replaces whole, False for a file, True
    for a folder that files are written into (it may be the current folder). DataError naming it
    when a replaced target names no file of its own (``""``, ``.``, ``..``, ``/``), when it is
    one of ``inputs`` (a write would destroy it), a folder where a file is wanted or the reverse,
    when a folder above it is a file, or when it cannot be written (``/proc``, ``/sys``, read-only
    or no permission). The leftovers of dead writers in its folder are removed.
    """
    path, absolute = Path(target), Path(os.path.abspath(target))
    replaced = path.name in ("", "..") or absolute == Path.cwd() or absolute in Path.cwd().parents
    if replaced and folder is not True:
        raise DataError(
            f"{what} '{target}' must name a file or folder of its own, not the current folder "
            "or one above it"
        )
    for source in inputs:
        if absolute.resolve() == Path(os.path.abspath(source)).resolve():
            raise DataError(
                f"{what} {target} is an input of this run; writing it would destroy it"
            )
    if folder is False and path.is_dir():
        raise DataError(f"{what} {target} is a folder; give a file name")
    if folder is True and path.exists() and not path.is_dir():
        raise DataError(f"{what} {target} is a file; give a folder")
    parent = absolute if folder is True else absolute.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise DataError(f"cannot write {what} {target}: {existing} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".probe.", dir=existing))
    except OSError as exc:
        raise DataError(f"cannot write {what} {target}: {exc.strerror} in {existing}") from exc
    if existing == parent:
        remove_leftovers(parent)
    return path


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
    remove_leftovers(target.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    if directory:
        tmp_path.unlink()
    else:
        # mkstemp makes 0600; give the file the usual permissions
        tmp_path.chmod(0o666 & ~_umask())
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


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(target: str | os.PathLike, report: Any) -> Path:
    """Write ``report`` as indented, strictly valid JSON, atomically: NaN and inf become null."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    return Path(target)
