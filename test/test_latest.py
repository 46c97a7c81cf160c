"""latest.py: the newest-frame slot between the subscription callback and the inference worker."""

from __future__ import annotations

import threading
import time

from fcn_road_seg.latest import Latest


def test_take_returns_the_item_once() -> None:
    slot: Latest[str] = Latest()
    assert slot.put("a")
    assert slot.take(timeout=0) == "a"
    assert slot.take(timeout=0) is None
    assert slot.dropped == 0


def test_newest_wins_and_replaced_items_count_as_dropped() -> None:
    slot: Latest[int] = Latest()
    assert all(slot.put(i) for i in range(5))  # all taken in, 0..3 replaced
    assert slot.dropped == 4
    assert slot.take(timeout=0) == 4
    assert slot.put(5)
    assert slot.take(timeout=0) == 5
    assert slot.dropped == 4


def test_take_times_out_with_none() -> None:
    slot: Latest[int] = Latest()
    start = time.monotonic()
    assert slot.take(timeout=0.1) is None
    assert 0.09 <= time.monotonic() - start < 2.0


def test_blocking_take_gets_an_item_put_later() -> None:
    slot: Latest[str] = Latest()
    threading.Timer(0.05, slot.put, args=("late",)).start()
    assert slot.take(timeout=5.0) == "late"


def test_close_wakes_a_waiting_worker_and_refuses_items() -> None:
    slot: Latest[int] = Latest()
    got: list[int | None] = []
    worker = threading.Thread(target=lambda: got.append(slot.take()))
    worker.start()
    time.sleep(0.05)
    assert worker.is_alive()
    slot.close()
    worker.join(timeout=5.0)
    assert not worker.is_alive() and got == [None]
    assert slot.put(1) is False
    assert slot.take() is None  # at once: an open, empty slot would wait forever
    assert slot.dropped == 0  # the refused item was never held, so never dropped


def test_close_discards_a_pending_item() -> None:
    slot: Latest[int] = Latest()
    slot.put(1)
    slot.close()
    assert slot.take(timeout=0) is None


def test_a_slow_worker_sees_increasing_items_and_every_item_is_accounted_for() -> None:
    slot: Latest[int] = Latest()
    taken: list[int] = []

    def work() -> None:
        while (item := slot.take()) is not None:
            taken.append(item)
            time.sleep(0.001)

    worker = threading.Thread(target=work)
    worker.start()
    accepted = 0
    for i in range(2000):
        accepted += slot.put(i)
        if i % 100 == 0:
            time.sleep(0.002)
    deadline = time.monotonic() + 5.0
    while taken[-1:] != [1999] and time.monotonic() < deadline:
        time.sleep(0.001)
    slot.close()
    worker.join(timeout=5.0)
    assert not worker.is_alive()
    assert taken[-1] == 1999
    assert taken == sorted(set(taken))
    assert accepted == 2000
    assert slot.dropped == 2000 - len(taken) > 0
