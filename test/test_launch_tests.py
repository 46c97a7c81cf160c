"""The launch_testing files in ``test/launch/``, each in a Python process of its own.

That is how ROS 2 runs launch tests (ament_cmake's ``add_launch_test`` starts one process per
file), and why: in the one pytest process of ``colcon test``, after the OpenVINO and INT8 tests,
launch_testing's asyncio loop crashed with SIGSEGV (gdb: a Handle calling a freed function
object), while each launch file passed alone. Skipped where launch_testing cannot be imported;
a launch file that skips (no KITTI frame) is reported as a skip with its reason.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")

LAUNCH_TESTS = sorted((Path(__file__).parent / "launch").glob("*.py"))
TIMEOUT_S = 900  # each file waits up to 120 s per reply itself; this only stops a hang


@pytest.mark.parametrize("path", LAUNCH_TESTS, ids=lambda p: p.stem)
def test_launch_file_passes_in_its_own_process(path: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
    try:
        run = subprocess.run(
            [*command, f"--junitxml={report}", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{path.name} still ran after {TIMEOUT_S} s:\n{exc.stdout or ''}")
    output = f"{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, f"{path.name} exited with {run.returncode}:\n{output}"
    suite = ET.parse(report).getroot().find("testsuite")
    tests, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    if tests and skipped == tests:
        reasons = {s.get("message") for s in suite.iter("skipped")}
        pytest.skip(f"{path.name}: {'; '.join(sorted(reasons))}")
    assert tests > skipped, f"{path.name} ran no test:\n{output}"
