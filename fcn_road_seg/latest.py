"""A one-item, thread-safe slot that keeps only the newest item.

Latency first: old frames are dropped. The producer (a subscription callback) ``put``s without ever
blocking; the consumer (the inference worker) ``take``s the newest item, blocking until one arrives
or the slot is closed. An item replaced before anyone took it counts as dropped.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Latest(Generic[T]):
    """Holds at most one item; a new ``put`` replaces (and drops) an item not yet taken."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item`` as the newest.

        Returns False (and stores nothing) once the slot is closed.
        """
        with self._cond:
            if self._closed:
                return False
            self._dropped += self._full
            self._item, self._full = item, True
            self._cond.notify()
            return True

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` seconds (None: forever).

        None on timeout or when closed.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._full or self._closed, timeout)
            if self._closed or not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Stop: wake every waiting ``take`` (which returns None) and refuse further items."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    @property
    def dropped(self) -> int:
        """Items replaced before they were taken."""
        return self._dropped
