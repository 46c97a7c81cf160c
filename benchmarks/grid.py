"""What road_seg/grid costs per frame, vs rebuilding its lookup maps (only on camera/pose change).

A real KITTI frame (1242x375) through the default model gives the mask and confidence; the grid
core then projects them with KITTI's camera 2 (P2 of um_000000) mounted 1.65 m high, level, for a
few grid sizes, and once more for KITTI's unrectified camera 2 (1392x512, K_02 and plumb_bob D_02
of 2011-09-26), whose maps go through the lens. Times are medians of repeated runs in one process;
compare them as ratios.

    .venv/bin/python benchmarks/grid.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import load_frames, machine  # noqa: E402

from fcn_road_seg import geometry  # noqa: E402
from fcn_road_seg.backends import load_backend  # noqa: E402
from fcn_road_seg.grid import Camera, GridSpec, GroundGrid  # noqa: E402
from fcn_road_seg.image import Frame  # noqa: E402
from fcn_road_seg.tools.kitti import read_calib  # noqa: E402
from fcn_road_seg.model import default_model_path  # noqa: E402

CALIB = ROOT / "test" / "data" / "um_000000_calib.txt"
#: KITTI 2011-09-26 calib_cam_to_cam.txt: camera 2 before rectification (S_02 1392x512)
K_02 = np.array([[959.791, 0.0, 696.0217], [0.0, 956.9251, 224.1806], [0.0, 0.0, 1.0]])
D_02 = np.array([-0.3691481, 0.1968681, 0.001353473, 0.0005677587, -0.06770705])
SPECS = {
    "0.05 m, 40 x 20 m (default)": GridSpec(),
    "0.10 m, 40 x 20 m": GridSpec(0.1),
    "0.05 m, 80 x 40 m": GridSpec(0.05, (0.0, 80.0), (-20.0, 20.0)),
}


def median_ms(func: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``func()`` over ``repeats`` runs, in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    _, [bgr] = load_frames(None, 1)
    backend = load_backend(default_model_path(), "auto", "cpu")
    maps = backend.infer(Frame(bgr, "bgr8"))
    network_ms = median_ms(lambda: backend.infer(Frame(bgr, "bgr8")), max(3, args.repeats // 5))
    camera = Camera(read_calib(CALIB)["P2"].reshape(3, 4), *bgr.shape[:2])
    print(
        f"# {machine()}\n# default model, one KITTI frame 1242x375; "
        f"network + pre/post: {network_ms:.1f} ms"
    )
    print(
        "| grid | cells | rebuild maps (ms) | per frame, binary (ms) | per frame, scaled (ms) | "
        "binary / network |"
    )
    print("|---|---|---|---|---|---|")
    raw = Camera(
        np.hstack([K_02, np.zeros((3, 1))]), 512, 1392, geometry.Lens(K_02, D_02, "plumb_bob")
    )
    raw_maps = [cv2.resize(m, (1392, 512)) for m in (maps.mask, maps.confidence)]
    rows = [(name, spec, camera, (maps.mask, maps.confidence)) for name, spec in SPECS.items()]
    rows.append(("0.05 m, 40 x 20 m, raw 1392x512 (plumb_bob)", GridSpec(), raw, raw_maps))
    for name, spec, camera, (mask, confidence) in rows:
        grid = GroundGrid(spec)
        poses = iter(geometry.camera_from_mount(1.65, 1e-9 * i, 0.0) for i in range(10**6))
        rebuild = median_ms(lambda: grid.update(camera, next(poses)), args.repeats)
        binary = median_ms(lambda: grid.occupancy(mask, confidence), args.repeats)
        grid.mode = "scaled"
        scaled = median_ms(lambda: grid.occupancy(mask, confidence), args.repeats)
        cells = int(np.prod(spec.shape))
        print(
            f"| {name} | {cells} | {rebuild:.2f} | {binary:.2f} | {scaled:.2f} | "
            f"{binary / network_ms:.3f} |"
        )


if __name__ == "__main__":
    main()
