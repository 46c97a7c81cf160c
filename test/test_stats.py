"""stats.py: FPS and latency numbers for /diagnostics, against hand-computed values."""

from __future__ import annotations

import pytest

from fcn_road_seg.stats import Stats, Summary, health


def stats_at(start: float = 100.0, window_s: float = 2.0, min_frames: int = 0) -> Stats:
    """Stats whose clock reads ``start`` when created; a pure time window.

    Every call below passes ``now``.
    """
    return Stats(window_s=window_s, clock=lambda: start, min_frames=min_frames)


def test_no_frames() -> None:
    summary = stats_at().summary(now=101.0)
    assert summary == Summary(
        window_s=2.0,
        fps=0.0,
        latency_median_ms=None,
        latency_p99_ms=None,
        frames=0,
        bad=0,
        dropped=0,
    )


def test_fps_and_latency_over_a_full_window() -> None:
    stats = stats_at()
    for i in range(10):  # frames at 103.0 .. 104.8 taking 10, 20, ..., 100 ms
        stats.frame((i + 1) * 0.010, now=103.0 + 0.2 * i)
    summary = stats.summary(dropped=3, now=104.9)
    assert summary.fps == pytest.approx(10 / 2.0)
    assert summary.latency_median_ms == pytest.approx(55.0)  # between 50 and 60
    assert summary.latency_p99_ms == pytest.approx(99.1)  # 90 + 0.91 * (100 - 90)
    assert (summary.frames, summary.bad, summary.dropped) == (10, 0, 3)


def test_old_frames_leave_the_window_but_stay_counted() -> None:
    stats = stats_at()
    stats.frame(0.5, now=103.0)
    stats.frame(0.010, now=104.5)
    stats.frame(0.030, now=105.5)
    summary = stats.summary(now=105.5)  # window (103.5, 105.5]: the first frame is out
    assert summary.fps == pytest.approx(2 / 2.0)
    assert summary.latency_median_ms == pytest.approx(20.0)
    assert summary.frames == 3
    assert stats.summary(now=107.5).latency_median_ms is None


def test_fps_uses_the_time_since_start_while_shorter_than_the_window() -> None:
    stats = stats_at(window_s=5.0)
    for t in (100.25, 100.5, 100.75):
        stats.frame(0.020, now=t)
    assert stats.summary(now=101.0).fps == pytest.approx(3 / 1.0)


def test_slow_frames_keep_a_steady_fps() -> None:
    """A frame every 4 s with a 2 s window.

    The window stretches over the last 3 frames, FPS stays 0.25.
    """
    stats = stats_at(min_frames=3)
    for k in range(6):
        stats.frame(3.9, now=104.0 + 4 * k)
        for dt in (0.0, 1.0, 3.0):  # the diagnostics timer fires at any time between frames
            summary = stats.summary(now=104.0 + 4 * k + dt)
            if k >= 2:
                assert summary.fps == pytest.approx(0.25, abs=1e-12)
                assert summary.latency_median_ms == pytest.approx(3900)
                assert summary.window_s == pytest.approx(8 + dt)  # back to the oldest frame kept
    level, message, _ = health(stats.summary(now=124.0), "torch on cpu")
    assert level == "OK" and message == "0.2 FPS, median latency 3900.0 ms"  # 0.25 rounds to even


def test_fps_falls_once_slow_frames_stop_arriving() -> None:
    """Frames at 104, 108 and 112 (0.25 Hz), then none: after the 4 s interval FPS is 3 frames
    over the time since the first, the rate if the next one finished now."""
    stats = stats_at(min_frames=3)
    for t in (104.0, 108.0, 112.0):
        stats.frame(0.5, now=t)
    assert stats.summary(now=116.0).fps == pytest.approx(0.25, abs=1e-12)  # 3 / 12 = 2 / 8
    assert stats.summary(now=120.0).fps == pytest.approx(3 / 16, abs=1e-12)
    assert stats.summary(now=136.0).fps == pytest.approx(3 / 32, abs=1e-12)
    assert stats.summary(now=172.0).fps == 0.0  # 60 s after the last one: max_age_s


def test_frames_finishing_together_in_a_stretched_window() -> None:
    """Two frames at the same time, read 3 s later: no interval to divide by, 2 over 3 s."""
    stats = stats_at(min_frames=3)
    stats.frame(0.5, now=104.0)
    stats.frame(0.5, now=104.0)
    assert stats.summary(now=107.0).fps == pytest.approx(2 / 3, abs=1e-12)


def test_frames_older_than_max_age_leave_even_the_stretched_window() -> None:
    stats = Stats(window_s=2.0, clock=lambda: 100.0, min_frames=3, max_age_s=30.0)
    stats.frame(1.0, now=101.0)
    assert stats.summary(now=120.0).latency_median_ms == pytest.approx(1000)
    summary = stats.summary(now=131.5)
    assert summary.latency_median_ms is None and summary.fps == 0.0 and summary.frames == 1


def test_bad_messages_are_counted() -> None:
    stats = stats_at()
    stats.bad_message()
    stats.bad_message()
    assert stats.summary(now=100.5).bad == 2


def test_a_non_positive_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="window_s must be positive, got 0"):
        Stats(window_s=0)


def test_health_ok_with_every_value() -> None:
    summary = Summary(
        window_s=5.0,
        fps=9.96,
        latency_median_ms=41.04,
        latency_p99_ms=87.25,
        frames=120,
        bad=2,
        dropped=7,
    )
    level, message, values = health(summary, "torch on cpu", "188x624 (stretch)")
    assert level == "OK"
    assert message == "10.0 FPS, median latency 41.0 ms"
    assert values == [
        ("FPS", "10.0"),
        ("latency median (ms)", "41.0"),
        ("latency p99 (ms)", "87.2"),
        ("frames segmented", "120"),
        ("dropped frames", "7"),
        ("bad messages", "2"),
        ("window (s)", "5"),
        ("backend", "torch on cpu"),
        ("network size", "188x624 (stretch)"),
    ]


def test_health_warns_without_recent_frames() -> None:
    summary = Summary(
        window_s=5.0,
        fps=0.0,
        latency_median_ms=None,
        latency_p99_ms=None,
        frames=3,
        bad=4,
        dropped=0,
    )
    level, message, values = health(summary, "torch on cpu")
    assert (level, message) == ("WARN", "no frame segmented in the last 5 s")
    assert dict(values)["latency median (ms)"] == "n/a" and dict(values)["bad messages"] == "4"


def test_model_warnings_make_the_status_warn_and_are_listed() -> None:
    """An INT8 companion that was not used reaches /diagnostics: level, message and values."""
    summary = Summary(
        window_s=5.0,
        fps=9.96,
        latency_median_ms=41.04,
        latency_p99_ms=87.25,
        frames=120,
        bad=0,
        dropped=0,
    )
    warning = "INT8 companion /m/x.int8.onnx not used: it has no metadata x.int8.onnx.json"
    level, message, values = health(summary, "torch on cpu", "188x624 (stretch)", [warning])
    assert level == "WARN"
    assert message == f"10.0 FPS, median latency 41.0 ms; {warning}"
    assert values[-1] == ("warning", warning) and values[-2] == (
        "network size",
        "188x624 (stretch)",
    )
    idle = Summary(5.0, 0.0, None, None, 0, 0, 0)
    level, message, _ = health(idle, "torch on cpu", "", [warning])
    assert (level, message) == ("WARN", f"no frame segmented in the last 5 s; {warning}")
