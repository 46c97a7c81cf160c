"""Log throttling per reason, not per call site: a second kind of fault is never hidden behind the
first. No ROS.

rclpy's ``throttle_duration_sec`` throttles one logging call, whatever its text, so three different
malformed messages arriving within the period log one line. ``ReasonThrottle`` lets each reason
through once per period and counts the repeats it held back, reported with its next line. A reason
is the message with its numbers blanked: "data length 10 does not match ..." and "data length 12
does not match ..." are one reason, "unsupported encoding 'nv24'" and "... 'uyvy10'" are two.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Callable

_NUMBERS = re.compile(r"\d+(\.\d+)?")


def reason_of(text: str) -> str:
    """The kind of a log line: ``text`` with every number replaced by ``#``."""
    return _NUMBERS.sub("#", text)


class ReasonThrottle:
    """Admit each reason at most once per ``period_s`` seconds.

    At most ``max_reasons`` reasons are remembered (the oldest is forgotten first), so a stream of
    ever-new texts cannot grow it without bound.
    """

    def __init__(
        self,
        period_s: float,
        max_reasons: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.period_s = period_s
        self.max_reasons = max_reasons
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # reason -> (last logged, held back since)
        self._lock = threading.Lock()  # the worker and the executor's callbacks both log

    def admit(self, text: str) -> str | None:
        """The line to log for ``text`` now, or None while its reason is throttled.

        A line after a throttled stretch says how many of that reason were not logged.
        """
        reason, now = reason_of(text), self._clock()
        with self._lock:
            last, held = self._seen.get(reason, (None, 0))
            if last is not None and now - last < self.period_s:
                self._seen[reason] = (last, held + 1)
                return None
            self._seen.pop(reason, None)
            self._seen[reason] = (now, 0)
            if len(self._seen) > self.max_reasons:
                del self._seen[next(iter(self._seen))]
        return f"{text} ({held} more like it in the last {now - last:.0f} s)" if held else text
