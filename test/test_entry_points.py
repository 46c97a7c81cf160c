"""Every module with a ``main`` runs with ``python -m``, and every console script names one."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fcn_road_seg"
ROS = ("fcn_road_seg.ros.node", "fcn_road_seg.ros.lifecycle_node")


def modules_with_main() -> list[str]:
    """Dotted names of the package's modules that define a top-level ``main``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` from the repository root."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def test_the_modules_with_main_are_the_expected_ones() -> None:
    """The list the next tests walk is the real one (a new tool is not silently left out)."""
    found = modules_with_main()
    assert set(ROS) <= set(found)
    assert {"fcn_road_seg.tools.segment_bag", "fcn_road_seg.training.train"} <= set(found)
    assert len(found) == 14, found


@pytest.mark.parametrize("module", [m for m in modules_with_main() if m not in ROS])
def test_python_m_prints_its_usage(module: str) -> None:
    """``python -m <module> --help`` reaches argparse: exit 0 and a usage line.

    Without a ``__main__`` guard the module imports, does nothing and exits 0 with no output.
    """
    done = run_module(module, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout[:200]


@pytest.mark.parametrize("module", ROS)
def test_python_m_starts_the_node(module: str) -> None:
    """The nodes under ``python -m``: a bad parameter is a one-line fatal error and exit 1.

    Both check their parameters at construction (the lifecycle node loads no model before
    configure, so a bad choice is what both refuse before spinning).
    """
    pytest.importorskip("rclpy")
    done = run_module(module, "--ros-args", "-p", "backend:=nope")
    assert done.returncode == 1
    assert "cannot start" in done.stderr and "backend" in done.stderr


def test_console_scripts_name_functions_that_exist() -> None:
    """Each ``console_scripts`` entry of setup.py points at a module defining that function."""
    text = (ROOT / "setup.py").read_text().replace("{PACKAGE}", "fcn_road_seg")
    entries = re.findall(r'"([\w-]+) = ([\w.]+):(\w+)"', text)
    assert len(entries) == 13, entries  # every module with a main but the demo (make demo)
    for name, module, function in entries:
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body), (
            f"{name}: {module}:{function}"
        )
