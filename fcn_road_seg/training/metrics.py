"""The KITTI Road devkit's pixel metrics: P(road) histograms, MaxF, AP and operating points.

For every image, inside the valid area (target != 255), road pixels and non-road pixels are
histogrammed by P(road) against the 256 thresholds k/255: FN[k] = #road with P < k/255 and
FP[k] = #non-road with P >= k/255. Sums over a set (per category and all together, ``URBAN``) give
MaxF, the devkit's 11-point average precision and PRE/REC/FPR/FNR/IoU at the MaxF threshold.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from . import data

URBAN = "URBAN"
NUM_THRESHOLDS = 256
THRESHOLDS = np.arange(NUM_THRESHOLDS) / 255.0  # the devkit's thresholds, float64
METRIC_KEYS = ("MaxF", "AP", "PRE", "REC", "FPR", "FNR", "IoU", "threshold")
NODE_THRESHOLD = 0.5  # the node's default mask threshold: F50, PRE50, REC50 are measured there


class RoadEvaluator:
    """Per-category P(road) histograms for road and non-road pixels; torch tensors on any device.

    ``hist[c, y, b]`` counts valid pixels of category c and label y whose P(road) reaches exactly b
    thresholds (b = #{k : k/255 <= P}, 0..256), so FN[k] = sum_{b<=k} hist[c, 1, b] and
    FP[k] = sum_{b>k} hist[c, 0, b].
    """

    def __init__(self, categories: Sequence[str], device: torch.device | str = "cpu") -> None:
        self.categories = list(categories)
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.hist = torch.zeros(
            len(self.categories), 2, NUM_THRESHOLDS + 1, dtype=torch.int64, device=device
        )
        self._thresholds = torch.tensor(THRESHOLDS, dtype=torch.float64, device=device)
        # [category, label, P >= NODE_THRESHOLD]: the node's own 0.5 mask, counted exactly
        self.hard = torch.zeros(len(self.categories), 2, 2, dtype=torch.int64, device=device)

    def update(self, prob: torch.Tensor, target: torch.Tensor, category: str) -> None:
        """Add one image (or a batch of one category): P(road) and labels of the same shape."""
        if prob.shape != target.shape:
            raise ValueError(
                f"P(road) shape {tuple(prob.shape)} != target shape {tuple(target.shape)}"
            )
        valid = target != data.IGNORE_INDEX
        # Count of thresholds <= P, compared in float64 like the devkit: exact for P == k/255.
        b = torch.bucketize(prob[valid].double(), self._thresholds, right=True)
        y = (target[valid] == 1).long()
        counts = torch.bincount(y * (NUM_THRESHOLDS + 1) + b, minlength=2 * (NUM_THRESHOLDS + 1))
        self.hist[self.index[category]] += counts.view(2, NUM_THRESHOLDS + 1)
        hard = y * 2 + (prob[valid] >= NODE_THRESHOLD).long()
        self.hard[self.index[category]] += torch.bincount(hard, minlength=4).view(2, 2)

    def reduce_from_all_processes(self) -> None:
        """Sum the histograms over DDP ranks (no-op without an initialised process group)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.hist)
            torch.distributed.all_reduce(self.hard)

    def counts(self, category: str = URBAN) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(FN[256], FP[256], posNum, negNum) of a category or of all (``URBAN``).

        As the devkit's evalExp.
        """
        hist = self.hist.sum(0) if category == URBAN else self.hist[self.index[category]]
        neg, pos = hist.cpu().numpy()
        fn = np.cumsum(pos)[:NUM_THRESHOLDS]
        fp = neg.sum() - np.cumsum(neg)[:NUM_THRESHOLDS]
        return fn, fp, int(pos.sum()), int(neg.sum())

    def compute(self) -> dict[str, dict[str, float]]:
        """Metrics per category that has valid pixels, plus ``URBAN`` over all of them."""
        out = {}
        for cat in [*self.categories, URBAN]:
            fn, fp, pos, neg = self.counts(cat)
            if pos + neg:
                hard = self.hard.sum(0) if cat == URBAN else self.hard[self.index[cat]]
                (tn, fp50), (fn50, tp) = hard.tolist()
                at_node = operating_point(tp, fp50, fn50, tn)
                out[cat] = {
                    **max_f_metrics(fn, fp, pos, neg),
                    **{f"{k}50": at_node[k] for k in ("F", "PRE", "REC")},
                }
        return out


def operating_point(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """PRE, REC, F, IoU, FPR, FNR, accuracy of a hard decision (the devkit's calcEvalMeasures)."""

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan

    pre, rec = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "PRE": pre,
        "REC": rec,
        "F": ratio(2 * pre * rec, pre + rec) if tp else 0.0,
        "IoU": ratio(tp, tp + fp + fn),
        "FPR": ratio(fp, fp + tn),
        "FNR": ratio(fn, tp + fn),
        "ACC": ratio(tp + tn, tp + fp + fn + tn),
        "TP": tp,
        "FP": fp,
        "FN": fn,
        "TN": tn,
    }


def max_f_metrics(fn: np.ndarray, fp: np.ndarray, pos: int, neg: int) -> dict[str, float]:
    """MaxF, AP and the operating point at the MaxF threshold (devkit's pxEval_maximizeFMeasure).

    The devkit drops thresholds where recall == precision == 0 (i.e. TP == 0) from
    precision/recall, but then indexes the unfiltered TP/FP arrays with the argmax over the
    filtered ones; here the filter is applied consistently. Its 1e-10 guards are not needed once
    TP > 0, so perfect results come out as exactly 1.
    """
    tp, tn = pos - fn, neg - fp
    kept = np.flatnonzero(tp > 0)
    if not len(kept):
        return {
            "MaxF": 0.0,
            "AP": 0.0,
            **{k: math.nan for k in METRIC_KEYS[2:]},
            "posNum": pos,
            "negNum": neg,
        }
    precision, recall = tp[kept] / (tp[kept] + fp[kept]), tp[kept] / pos
    # 11-point Pascal VOC
    ap = np.mean([precision[recall >= i * 0.1].max(initial=0.0) for i in range(11)])
    f = 2 * tp[kept] / (2 * tp[kept] + fp[kept] + fn[kept])  # = 2PR / (P + R)
    k = kept[int(f.argmax())]
    point = operating_point(float(tp[k]), float(fp[k]), float(fn[k]), float(tn[k]))
    return {
        "MaxF": float(f.max()),
        "AP": float(ap),
        **{m: point[m] for m in ("PRE", "REC", "FPR", "FNR", "IoU")},
        "threshold": float(THRESHOLDS[k]),
        **{m: point[m] for m in ("TP", "FP", "FN", "TN")},
        "posNum": pos,
        "negNum": neg,
    }


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A fixed-width table: one row per category and URBAN, metrics in percent, threshold as is.

    F, PRE and REC at the node's threshold follow where they were measured.
    """
    extra = [k for k in ("F50", "PRE50", "REC50") if all(k in m for m in metrics.values())]
    head = f"{'category':<10}" + "".join(f"{k:>10}" for k in (*METRIC_KEYS, *extra))
    rows = [
        f"{cat:<10}"
        + "".join(f"{100 * m[k]:>10.2f}" for k in METRIC_KEYS[:-1])
        + f"{m['threshold']:>10.3f}"
        + "".join(f"{100 * m[k]:>10.2f}" for k in extra)
        for cat, m in metrics.items()
    ]
    return "\n".join([head, *rows])
