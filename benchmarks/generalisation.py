"""Generalisation ablation: models x network sizing x datasets, through the runtime's own path.

Each model runs exactly as the node runs it (``load_backend`` + ``Backend.probability``: fit,
network, P(road) back at the frame's size) on each dataset's validation split, once at the
working scale (``network_size auto``: each frame keeps its aspect ratio) and once stretched to a
fixed shape (``--stretch``, e.g. KITTI's 188x624), and optionally at other scales with the aspect
ratio kept (``--scale 0.8 --scale 1.33``: the working height times each factor, a stand-in for a
camera with a wider or narrower field of view, whose road looks smaller or larger). Prints a
Markdown table of MaxF, F, precision and recall at the node's threshold 0.5, and the MaxF
threshold.

    .venv/bin/python benchmarks/generalisation.py \\
        --model KITTI-only=runs/kitti/model_best_fp16.pt --model mixed=runs/mixed/model.pt \\
        --data-path data/data_road --data-path ../shared/data/camvid_road --stretch 188x624
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from fcn_road_seg.backends import BACKENDS, load_backend
from fcn_road_seg.training import data
from fcn_road_seg.training.evaluate import evaluate_backend
from fcn_road_seg.training.metrics import URBAN


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", action="append", required=True, metavar="NAME=PATH", help="once per model"
    )
    p.add_argument(
        "--data-path", action="append", required=True, help="KITTI-layout folder, once per set"
    )
    p.add_argument("--stretch", default=None, metavar="HxW", help="also run stretched to HxW")
    p.add_argument(
        "--scale",
        type=float,
        action="append",
        default=[],
        metavar="F",
        help="also run at F x the working height, each dataset's aspect ratio kept (its first "
        "validation frame's); once per factor",
    )
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the rows here")
    return p


def scaled(path: str, args: argparse.Namespace, factor: float, root: str) -> str:
    """``HxW`` for ``factor`` x the model's working height on ``root``'s frames, aspect kept."""
    height = load_backend(path, args.backend, args.device).working_height
    if height is None:
        raise SystemExit(f"--scale: {path} records no working height")
    h, w = data.read_image(data.split(root, "val")[0].image).shape[:2]
    lines = round(height * factor)
    return f"{lines}x{round(w * lines / h)}"


def rows(args: argparse.Namespace) -> list[dict[str, object]]:
    """One row per model, sizing and dataset."""
    out = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        sizings = [
            ("working scale", {root: "auto" for root in args.data_path}),
            *(
                [(f"stretched {args.stretch}", dict.fromkeys(args.data_path, args.stretch))]
                if args.stretch
                else []
            ),
            *(
                (f"{f:g} x working scale", {r: scaled(path, args, f, r) for r in args.data_path})
                for f in args.scale
            ),
        ]
        for sizing, size_of in sizings:
            for root in args.data_path:
                backend = load_backend(path, args.backend, args.device, network_size=size_of[root])
                samples = data.split(root, "val")
                m = evaluate_backend(backend, samples, args.workers, progress=False).compute()
                m = m[URBAN]
                out.append(
                    {
                        "model": name,
                        "sizing": sizing,
                        "dataset": f"{data.dataset_name(root)} val ({len(samples)})",
                        "network": backend.network_size_text(),
                        **{k: m[k] for k in ("MaxF", "F50", "PRE50", "REC50", "threshold")},
                    }
                )
                r = out[-1]
                print(
                    f"done: {r['model']}, {r['sizing']}, {r['dataset']}: MaxF "
                    f"{100 * r['MaxF']:.2f}, F@0.5 {100 * r['F50']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    return out


def table(result: list[dict[str, object]]) -> str:
    head = "| model | sizing | dataset | MaxF | F@0.5 | PRE@0.5 | REC@0.5 | best threshold |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in result:
        pct = " | ".join(f"{100 * r[k]:.2f}" for k in ("MaxF", "F50", "PRE50", "REC50"))
        lines.append(
            f"| {r['model']} | {r['sizing']} | {r['dataset']} | {pct} | {r['threshold']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    result = rows(args)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
