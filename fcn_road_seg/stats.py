"""Health numbers for the node's diagnostics: FPS and latency over a sliding window, plus counters.

Pure and thread-safe: the worker records frames, the diagnostics timer reads a ``Summary``.
``health`` turns a summary into a level, a message and key/value pairs (DiagnosticStatus fields).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Summary:
    """The numbers over the last ``window_s`` seconds and totals.

    Latencies are in ms; None without frames.
    """

    window_s: float
    fps: float
    latency_median_ms: float | None
    latency_p99_ms: float | None
    frames: int
    bad: int
    dropped: int


class Stats:
    """Per-frame latencies in a sliding window, and counts of frames and bad messages.

    The window is ``window_s`` seconds, stretched back to hold at least the last ``min_frames``
    frames that finished within ``max_age_s``: a model taking longer per frame than the window
    still reports a steady FPS instead of flipping between "no frame" and a fraction: its true
    rate, whenever the diagnostics timer reads it, falling only once frames stop arriving.
    """

    def __init__(
        self,
        window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        min_frames: int = 5,
        max_age_s: float = 60.0,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self.min_frames = min_frames
        self.max_age_s = max(max_age_s, window_s)
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, float]] = deque()  # (finish time, latency in s)
        self._frames = 0
        self._bad = 0

    def frame(self, latency_s: float, now: float | None = None) -> None:
        """Record one segmented frame that took ``latency_s`` from arrival to published.

        It finished at ``now``.
        """
        now = self._clock() if now is None else now
        with self._lock:
            self._recent.append((now, latency_s))
            self._frames += 1
            self._prune(now)

    def bad_message(self) -> None:
        """Count one message that could not be segmented."""
        with self._lock:
            self._bad += 1

    def summary(self, dropped: int = 0, now: float | None = None) -> Summary:
        """The window's FPS and latency percentiles at ``now``; ``dropped`` is passed through.

        FPS is the frames finished in the window divided by the window, or by the time since the
        start while that is shorter. Over a window stretched back to hold the last frames, it is
        their rate, (n - 1) / (last - first), but no more than n / (now - first): the rate if the
        next frame finished now (0 with a single frame).
        """
        now = self._clock() if now is None else now
        with self._lock:
            self._prune(now)
            finished = [t for t, _ in self._recent]
            latencies = np.array([lat for _, lat in self._recent]) * 1e3
            frames, bad = self._frames, self._bad
        window = self.window_s
        if finished and finished[0] <= now - self.window_s:  # stretched to hold the last frames
            window = now - finished[0]
            n, span = len(finished), finished[-1] - finished[0]
            rate = (n - 1) / span if span > 0 else math.inf  # frames finished at the same time
            fps = min(rate, n / window) if n > 1 else 0.0
        else:
            span = min(self.window_s, now - self._start)
            fps = len(finished) / span if span > 0 else 0.0
        median, p99 = (
            np.percentile(latencies, [50, 99]).tolist() if latencies.size else (None, None)
        )
        return Summary(window, fps, median, p99, frames, bad, dropped)

    def _prune(self, now: float) -> None:
        """Forget frames before the window.

        Except the last ``min_frames`` younger than ``max_age_s``.
        """
        while self._recent and (
            self._recent[0][0] <= now - self.max_age_s
            or (self._recent[0][0] <= now - self.window_s and len(self._recent) > self.min_frames)
        ):
            self._recent.popleft()


def _ms(value: float | None) -> str:
    """Milliseconds with one decimal, or ``n/a``."""
    return "n/a" if value is None else f"{value:.1f}"


def health(
    summary: Summary, backend: str, network_size: str = "", warnings: Sequence[str] = ()
) -> tuple[str, str, list[tuple[str, str]]]:
    """(level ``OK``/``WARN``, message, key/value pairs) for a DiagnosticStatus.

    ``warnings`` (about the model, e.g. an INT8 companion that was not used) make the level
    ``WARN``; each is one ``warning`` value and the first one ends the message.
    """
    values = [
        ("FPS", f"{summary.fps:.1f}"),
        ("latency median (ms)", _ms(summary.latency_median_ms)),
        ("latency p99 (ms)", _ms(summary.latency_p99_ms)),
        ("frames segmented", str(summary.frames)),
        ("dropped frames", str(summary.dropped)),
        ("bad messages", str(summary.bad)),
        ("window (s)", f"{summary.window_s:.3g}"),
        ("backend", backend),
        ("network size", network_size),
        *(("warning", warning) for warning in warnings),
    ]
    if summary.latency_median_ms is None:
        level, message = "WARN", f"no frame segmented in the last {summary.window_s:.3g} s"
    else:
        level = "WARN" if warnings else "OK"
        message = f"{summary.fps:.1f} FPS, median latency {summary.latency_median_ms:.1f} ms"
    if warnings:
        message += f"; {warnings[0]}"
    return level, message, values
