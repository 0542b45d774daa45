"""The transport's watchdog: deadlines fire whatever order they arrive in."""

from __future__ import annotations

import threading

from aep_extract.sources._transport import Deadlines


def wait_until_expired(watch: object, seconds: float = 10.0) -> bool:
    done = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if getattr(watch, "expired", False):
            return True
        done.wait(0.01)
    return False


def test_an_earlier_deadline_wakes_the_watchdog() -> None:
    deadlines = Deadlines()
    late = [deadlines.watch(3600.0) for _ in range(3)]  # the watchdog sleeps long
    early = deadlines.watch(0.05)
    assert wait_until_expired(early)
    assert early.reason == "deadline"
    assert not any(watch.expired for watch in late)
    for watch in [*late, early]:
        watch.release()


def test_a_later_deadline_does_not_hide_an_earlier_one() -> None:
    deadlines = Deadlines()
    first = deadlines.watch(0.1)
    later = [deadlines.watch(3600.0) for _ in range(3)]
    assert wait_until_expired(first)
    assert not any(watch.expired for watch in later)
    for watch in [first, *later]:
        watch.release()
