"""training/metrics.py: the KITTI devkit metrics on hand-computed cases and a devkit reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcn_road_seg.training.metrics import RoadEvaluator, operating_point

THRESH = np.arange(256) / 255.0


def devkit_eval_exp(
    gt_road: np.ndarray, prob: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The KITTI devkit's ``evalExp`` (helper.py), verbatim in numpy."""
    thres_inf = np.concatenate(([-np.inf], THRESH, [np.inf]))
    fn_hist = np.histogram(prob[gt_road & valid], bins=thres_inf)[0]
    fn = np.cumsum(fn_hist)[0 : len(THRESH)]
    fp_hist = np.histogram(prob[~gt_road & valid], bins=thres_inf)[0]
    fp = np.flipud(np.cumsum(np.flipud(fp_hist)))[1 : 1 + len(THRESH)]
    return fn, fp, int((gt_road & valid).sum()), int((~gt_road & valid).sum())


def devkit_maxf(fn: np.ndarray, fp: np.ndarray, pos: int, neg: int) -> dict[str, float]:
    """The devkit's ``pxEval_maximizeFMeasure``.

    The argmax is mapped back through the validity filter.
    """
    tp = pos - fn
    recall, precision = tp / float(pos), tp / (tp + fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    recall, precision = recall[keep], precision[keep]
    ap = sum(max(precision[np.where(recall >= i)]) for i in np.arange(0, 1.1, 0.1)) / 11
    f = 2 * precision * recall / (precision + recall + 1e-10)
    k = np.flatnonzero(keep)[f.argmax()]
    return {
        "MaxF": f.max(),
        "AP": ap,
        "PRE": tp[k] / (tp[k] + fp[k]),
        "REC": tp[k] / pos,
        "FPR": fp[k] / neg,
        "FNR": fn[k] / pos,
        "IoU": tp[k] / (tp[k] + fp[k] + fn[k]),
        "threshold": THRESH[k],
    }


def labelled(
    road: list[float], nonroad: list[float], ignored: list[float] = ()
) -> tuple[torch.Tensor, ...]:
    """P(road) and targets (1 x N) for pixel lists of each label."""
    prob = torch.tensor([*road, *nonroad, *ignored], dtype=torch.float32)[None]
    target = torch.tensor([1] * len(road) + [0] * len(nonroad) + [255] * len(ignored))[None]
    return prob, target


def test_perfect_prediction() -> None:
    target = torch.tensor([[1, 1, 0, 255], [0, 1, 0, 255]])
    evaluator = RoadEvaluator(["um"])
    evaluator.update(target.clamp(max=1).float(), target, "um")
    m = evaluator.compute()["URBAN"]
    assert (m["MaxF"], m["AP"], m["IoU"], m["PRE"], m["REC"], m["FPR"], m["FNR"]) == (
        1,
        1,
        1,
        1,
        1,
        0,
        0,
    )
    assert (m["posNum"], m["negNum"]) == (3, 3)
    assert m["threshold"] == 1 / 255  # first threshold above P = 0
    assert evaluator.compute()["um"] == m


def test_constructed_case_exact_values() -> None:
    # Road: 6 at 0.9, 2 at 0.3. Non-road: 1 at 0.8, 4 at 0.25, 7 at 0.1.
    # Ignored pixels must not count.
    prob, target = labelled(
        [0.9] * 6 + [0.3] * 2, [0.8] + [0.25] * 4 + [0.1] * 7, [1.0] * 5 + [0.0] * 5
    )
    evaluator = RoadEvaluator(["uu"])
    evaluator.update(prob, target, "uu")
    m = evaluator.compute()["URBAN"]
    # Best operating point: 0.25 < t <= 0.3, i.e. the first threshold 64/255:
    # TP 8, FP 1, FN 0, TN 11.
    assert m["threshold"] == 64 / 255
    assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (8, 1, 0, 11)
    assert m["MaxF"] == pytest.approx(16 / 17, abs=1e-9)
    assert m["PRE"] == pytest.approx(8 / 9) and m["REC"] == 1 and m["IoU"] == pytest.approx(8 / 9)
    assert m["FPR"] == pytest.approx(1 / 12) and m["FNR"] == 0
    # 11-point AP: recall 1 up to t = 0.3 (best precision 8/9),
    # recall 0.75 with precision 1 up to t = 0.9.
    assert m["AP"] == pytest.approx((8 * 1.0 + 3 * 8 / 9) / 11)
    fn, fp, pos, neg = evaluator.counts()
    assert (pos, neg) == (8, 12)
    assert fn[0] == 0 and fn[int(0.3 * 255)] == 0 and fn[int(0.3 * 255) + 1] == 2 and fn[255] == 8
    assert (
        fp[0] == 12 and fp[int(0.1 * 255) + 1] == 5 and fp[64] == 1 and fp[int(0.8 * 255) + 1] == 0
    )


def test_ignored_pixels_change_nothing() -> None:
    prob, target = labelled([0.9, 0.4, 0.7], [0.2, 0.6, 0.05])
    a, b = RoadEvaluator(["x"]), RoadEvaluator(["x"])
    a.update(prob, target, "x")
    prob2, target2 = labelled([0.9, 0.4, 0.7], [0.2, 0.6, 0.05], [0.0, 0.5, 1.0, 0.99])
    b.update(prob2, target2, "x")
    assert torch.equal(a.hist, b.hist)
    assert a.compute() == b.compute()


def test_thresholds_are_exact_at_k_over_255() -> None:
    # P exactly k/255 (as the devkit reads 8-bit PNGs) counts as road at threshold k and below
    # only.
    k = torch.arange(256)
    for dtype in (torch.float64, torch.float32):
        evaluator = RoadEvaluator(["c"])
        prob = (k.double() / 255).to(dtype)
        evaluator.update(prob, torch.ones(256, dtype=torch.long), "c")
        fn = evaluator.counts()[0]
        reference = devkit_eval_exp(np.ones(256, bool), prob.double().numpy(), np.ones(256, bool))[
            0
        ]
        assert np.array_equal(fn, reference)
        if dtype == torch.float64:
            assert np.array_equal(fn, np.arange(256))  # FN[j] = #{k < j}


def test_matches_devkit_reference_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    evaluator = RoadEvaluator(["um", "umm"])
    per_cat: dict[str, list[np.ndarray]] = {"um": [], "umm": []}
    for i in range(6):
        cat = ["um", "umm"][i % 2]
        target = rng.choice([0, 1, 255], (20, 30), p=[0.5, 0.4, 0.1])
        noisy = np.clip((target == 1) * 0.6 + rng.normal(0.2, 0.25, target.shape), 0, 1)
        prob = np.where(
            rng.random(target.shape) < 0.2, rng.integers(0, 256, target.shape) / 255, noisy
        )
        prob = prob.astype(np.float32)
        evaluator.update(torch.from_numpy(prob), torch.from_numpy(target), cat)
        per_cat[cat].append(np.stack([prob, target]))
    metrics = evaluator.compute()
    for cat in ["um", "umm", "URBAN"]:
        stack = np.concatenate(
            [x for c, xs in per_cat.items() if cat in (c, "URBAN") for x in xs], axis=1
        )
        prob, target = stack[0].astype(np.float64), stack[1]
        ref_counts = devkit_eval_exp(target == 1, prob, target != 255)
        got = evaluator.counts(cat)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref_counts)), cat
        ref = devkit_maxf(*ref_counts)
        for key, value in ref.items():
            assert metrics[cat][key] == pytest.approx(value, abs=1e-9), (cat, key)
    assert 0.5 < metrics["URBAN"]["MaxF"] < 1 and 0.5 < metrics["URBAN"]["AP"] < 1


def test_operating_point_of_hand_counts() -> None:
    """The devkit's calcEvalMeasures on the counts of three hard predictions of labels
    [road, road, non-road x 3] (and one ignored pixel): road everywhere, nowhere, and
    [road, non-road, non-road, non-road, road] (TP, FN, TN, TN, FP)."""
    road = operating_point(tp=2, fp=3, fn=0, tn=0)
    assert road["IoU"] == pytest.approx(2 / 5) and road["F"] == pytest.approx(4 / 7)
    assert (road["PRE"], road["REC"], road["FPR"], road["FNR"]) == (
        pytest.approx(2 / 5),
        1,
        1,
        0,
    )
    none = operating_point(tp=0, fp=0, fn=2, tn=3)
    assert (none["IoU"], none["F"], none["REC"], none["FPR"], none["FNR"]) == (0, 0, 0, 0, 1)
    assert np.isnan(none["PRE"])  # 0 / 0: nothing predicted
    mixed = operating_point(tp=1, fp=1, fn=1, tn=2)
    assert mixed["PRE"] == mixed["REC"] == mixed["F"] == 0.5
    assert mixed["IoU"] == pytest.approx(1 / 3) and mixed["FPR"] == pytest.approx(1 / 3)
    assert mixed["FNR"] == 0.5 and mixed["ACC"] == pytest.approx(3 / 5)
    assert (mixed["TP"], mixed["FP"], mixed["FN"], mixed["TN"]) == (1, 1, 1, 2)


def test_hard_0_1_maps_at_the_nodes_threshold() -> None:
    """The same three predictions as P(road) 0 or 1: F, PRE and REC at 0.5 are theirs by hand
    (the ignored pixel, predicted road, counts nowhere)."""
    target = torch.tensor([[1, 1, 0, 0, 0, 255]])
    cases = {
        "everywhere": ([1, 1, 1, 1, 1, 1], (4 / 7, 2 / 5, 1.0)),
        "mixed": ([1, 0, 0, 0, 1, 1], (0.5, 0.5, 0.5)),
    }
    for name, (pred, (f, pre, rec)) in cases.items():
        evaluator = RoadEvaluator(["um"])
        evaluator.update(torch.tensor([pred], dtype=torch.float32), target, "um")
        m = evaluator.compute()["um"]
        assert (m["F50"], m["PRE50"], m["REC50"]) == (
            pytest.approx(f),
            pytest.approx(pre),
            pytest.approx(rec),
        ), name
    nowhere = RoadEvaluator(["um"])
    nowhere.update(torch.zeros(1, 6), target, "um")
    m = nowhere.compute()["um"]
    assert (m["F50"], m["REC50"]) == (0, 0) and np.isnan(m["PRE50"])


def test_f_at_the_nodes_threshold_counts_p_equal_half_as_road() -> None:
    """The constructed case at the node's 0.5 mask: TP 6 (0.9), FN 2 (0.3), FP 1 (0.8)."""
    prob, target = labelled(
        [0.9] * 6 + [0.3] * 2, [0.8] + [0.25] * 4 + [0.1] * 7, [1.0] * 5 + [0.0] * 5
    )
    evaluator = RoadEvaluator(["uu"])
    evaluator.update(prob, target, "uu")
    m = evaluator.compute()["URBAN"]
    assert m["F50"] == pytest.approx(12 / 15) and m["PRE50"] == pytest.approx(6 / 7)
    assert m["REC50"] == pytest.approx(6 / 8)
    edge = RoadEvaluator(["uu"])  # P exactly 0.5 is road in the node's mask (P >= 0.5)
    edge.update(torch.tensor([0.5, 0.5]), torch.tensor([1, 0]), "uu")
    assert edge.compute()["uu"]["PRE50"] == 0.5 and edge.compute()["uu"]["REC50"] == 1.0
