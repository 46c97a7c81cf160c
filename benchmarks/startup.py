"""What the model checks cost at startup: ``load_backend`` of the default model on a CPU.

The INT8 companion is checked against its checkpoint both ways before it is used (SHA-256 of the
checkpoint and of the ONNX file, the graph's input against the metadata). This prints the time of
those checks alone and of the whole ``load_backend`` (median of ``--repeat`` runs), as CPU time of
this process, which a busy machine disturbs less than wall time, and as wall time.

    .venv/bin/python benchmarks/startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcn_road_seg.backends import check_companion, load_backend  # noqa: E402
from fcn_road_seg.backends.onnx_backend import sidecar_problems  # noqa: E402
from fcn_road_seg.metadata import read_sidecar  # noqa: E402
from fcn_road_seg.model import default_model_path  # noqa: E402


def timed(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median (CPU ms, wall ms) of ``repeat`` calls."""
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        func()
        cpu.append(1e3 * (time.process_time() - c))
        wall.append(1e3 * (time.perf_counter() - w))
    return statistics.median(cpu), statistics.median(wall)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default=str(default_model_path()), help="checkpoint with a companion"
    )
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    companion, reason = check_companion(args.model)
    if companion is None:
        print(f"no usable INT8 companion beside {args.model}: {reason or 'none'}")
        return 1
    meta = read_sidecar(companion)
    shape = meta["input"]["shape"]
    size = None if meta.get("dynamic") else (shape[1], shape[2])
    rows = [
        ("companion link (both SHA-256)", lambda: check_companion(args.model)),
        ("ONNX file against its metadata", lambda: sidecar_problems(meta, companion, size)),
        ("load_backend(auto, cpu), all of it", lambda: load_backend(args.model, "auto", "cpu")),
    ]
    print(f"| step ({Path(args.model).name}, median of {args.repeat}) | CPU ms | wall ms |")
    print("|---|---|---|")
    for name, func in rows:
        cpu, wall = timed(func, args.repeat)
        print(f"| {name} | {cpu:.0f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
