"""throttle.py: error lines throttled per reason, with a fake clock."""

from __future__ import annotations

from fcn_road_seg.throttle import ReasonThrottle, reason_of


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_three_kinds_of_bad_message_log_three_lines_then_wait() -> None:
    clock = Clock()
    throttle = ReasonThrottle(5.0, clock=clock)
    lines = [
        "bad image message: unsupported encoding 'nv24'",
        "bad image message: data length 10 does not match step*height = 4*3 = 12",
        "bad image message: yuyv needs an even width, got 7x4",
    ]
    assert [throttle.admit(line) for line in lines] == lines
    clock.now += 1.0
    again = "bad image message: data length 11 does not match step*height = 4*3 = 12"
    assert throttle.admit(again) is None  # the same reason, other numbers
    assert throttle.admit(lines[0]) is None
    assert throttle.admit("bad image message: unsupported encoding 'uyvy10'") is not None
    clock.now += 4.5  # 5.5 s after the first lines
    assert throttle.admit(lines[1]) == lines[1] + " (1 more like it in the last 6 s)"
    assert throttle.admit(lines[2]) == lines[2]
    assert throttle.admit(lines[1]) is None


def test_a_reason_is_the_text_without_its_numbers() -> None:
    assert reason_of("frame is 200x60 but camera_info says 310.5x93") == (
        "frame is #x# but camera_info says #x#"
    )


def test_only_so_many_reasons_are_remembered() -> None:
    clock = Clock()
    throttle = ReasonThrottle(5.0, max_reasons=2, clock=clock)
    for text in ("a", "b", "c"):
        assert throttle.admit(text) == text
    assert throttle.admit("a") == "a"  # forgotten, so logged again
    assert throttle.admit("c") is None
