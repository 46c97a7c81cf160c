"""The CPU rows of ``default_path.py``, timed in interleaved rounds: ratios on a busy machine.

``default_path.py`` times one row after another, which is right on an idle machine. On a machine
shared with other work the load drifts during the minutes that takes, so here every row is opened
first, then each round passes the frames through every row in turn, end to end through
``Segmenter.process``: a load change slows every row alike, and the medians' ratios hold. Speed
only (MaxF comes from ``default_path.py --data-path``).

    .venv/bin/python benchmarks/interleaved.py --frames 4 --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from default_path import KITTI, rows_for  # noqa: E402
from latency import OVERLAY_ALPHA, OVERLAY_COLOR, Row, load_frames, machine  # noqa: E402
from latency import messages, process_all  # noqa: E402

from fcn_road_seg.model import default_model_path  # noqa: E402
from fcn_road_seg.segmenter import Segmenter  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="default_path.py's CPU rows, interleaved")
    p.add_argument("--model", default=str(default_model_path()), help="checkpoint")
    p.add_argument("--images", help="frames to time (default: the shared KITTI samples)")
    p.add_argument("--frames", type=int, default=4, help="frames per round (default 4)")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--warmup", type=int, default=2)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    folder, frames = load_frames(args.images, args.frames)
    msgs = messages(frames, KITTI)
    with tempfile.TemporaryDirectory(prefix="fcn_interleaved_") as tmp:
        rows: list[tuple[str, Segmenter, Row]] = []
        for label, factory in rows_for(Path(args.model), Path(tmp)):
            print(f"{label} ...", file=sys.stderr)
            segmenter = Segmenter(
                factory(), overlay_color=OVERLAY_COLOR, overlay_alpha=OVERLAY_ALPHA
            )
            process_all(segmenter, msgs[: args.warmup], 1)
            rows.append((label, segmenter, Row()))
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds} ...", file=sys.stderr)
            for _, segmenter, row in rows:
                process_all(segmenter, msgs, 1, row)
    print(f"machine: {machine()}")
    print(
        f"model: {args.model}; {len(msgs)} frames of {folder} at 1242x375, end to end, "
        f"{args.rounds} interleaved rounds: {len(msgs) * args.rounds} samples per row"
    )
    print("| backend, network size | ms / frame (median) | FPS | speed-up vs the first row |")
    print("|---|---|---|---|")
    base = rows[0][2].median("total")
    for label, _, row in rows:
        ms = row.median("total")
        print(f"| {label} | {ms:.0f} | {1e3 / ms:.2f} | {base / ms:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
