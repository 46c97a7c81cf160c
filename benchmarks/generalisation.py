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
import sys
from typing import Sequence

from fcn_road_seg.atomic import write_json
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


def sizings(
    args: argparse.Namespace, working_height: int | None, shapes: dict[str, tuple[int, int]]
) -> list[tuple[str, dict[str, str]]]:
    """(label, network_size per dataset): the working scale, ``--stretch``, each ``--scale``."""
    out = [("working scale", dict.fromkeys(shapes, "auto"))]
    if args.stretch:
        out.append((f"stretched {args.stretch}", dict.fromkeys(shapes, args.stretch)))
    if args.scale and working_height is None:
        raise SystemExit("--scale: the model records no working height")
    for factor in args.scale:
        lines = round(working_height * factor)
        out.append(
            (
                f"{factor:g} x working scale",
                {root: f"{lines}x{round(w * lines / h)}" for root, (h, w) in shapes.items()},
            )
        )
    return out


def rows(args: argparse.Namespace) -> list[dict[str, object]]:
    """One row per model, sizing and dataset."""
    val = {root: data.split(root, "val") for root in args.data_path}
    shapes = {root: data.read_image(samples[0].image).shape[:2] for root, samples in val.items()}
    out = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        backends = {"auto": load_backend(path, args.backend, args.device)}
        for sizing, size_of in sizings(args, backends["auto"].working_height, shapes):
            for root, samples in val.items():
                size = size_of[root]
                if size not in backends:
                    backends[size] = load_backend(
                        path, args.backend, args.device, network_size=size
                    )
                backend = backends[size]
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
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
