"""Encoder-init ablation: validation curves of training runs that differ only in ``--weights``.

Reads each run's ``log.csv`` (written by ``fcn-road-train``), prints a Markdown table of
validation MaxF / AP / IoU at every epoch the runs share, and plots MaxF and the training loss
against the step.

    .venv/bin/python benchmarks/encoder_ablation.py \\
        HED=runs/kitti_hed scratch=runs/kitti_scratch --plot docs/encoder_ablation.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence


def read_log(folder: Path) -> list[dict[str, float]]:
    """The rows of ``folder/log.csv`` as floats."""
    path = folder / "log.csv"
    if not path.is_file():
        raise SystemExit(f"no log.csv in {folder}")
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: one row per shared epoch, MaxF / AP / IoU of each run."""
    names = list(runs)
    epochs = min(len(rows) for rows in runs.values())
    head = ["epoch", "step", *[f"{n} MaxF / AP / IoU (%)" for n in names]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i in range(epochs):
        cells = [f"{int(runs[names[0]][i]['epoch']) + 1}", f"{int(runs[names[0]][i]['step'])}"]
        for n in names:
            r = runs[n][i]
            cells.append(
                f"{100 * r['val_MaxF']:.2f} / {100 * r['val_AP']:.2f} / {100 * r['val_IoU']:.2f}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Validation MaxF and training loss against the step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in runs.items():
        steps = [r["step"] for r in rows]
        a.plot(steps, [100 * r["val_MaxF"] for r in rows], marker=".", label=name)
        b.plot(steps, [r["train_loss"] for r in rows], marker=".", label=name)
    a.set(
        xlabel="step (batch 4)",
        ylabel="validation MaxF (%)",
        title="KITTI Road validation MaxF (URBAN)",
    )
    b.set(xlabel="step (batch 4)", ylabel="training loss", title="training loss", yscale="log")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "runs", nargs="+", metavar="NAME=FOLDER", help="a label and a training output folder"
    )
    p.add_argument("--plot", help="write the curves to this PNG")
    args = p.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        runs[name] = read_log(Path(folder))
    print(table(runs))
    if args.plot:
        plot(runs, Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
