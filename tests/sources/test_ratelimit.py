"""The adaptive rate limiter: pacing, in-flight cap, AIMD, cooldowns, configuration.

Time is injected: a frozen clock with a recording ``sleep`` shows the slot each
request was given without any real waiting.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from aep_extract import (
    AepConfig,
    Extractor,
    HttpAepSource,
    MemoryCheckpointStore,
    MemorySink,
    RetryConfig,
    ThreadPoolScheduler,
)
from aep_extract._ratelimit import AdaptiveRateLimiter, Permit
from aep_extract.errors import ConfigError
from aep_extract.testing import FakeAepPlatform, FakeRequest

from ..e2e.helpers import DATASET, END, START, expected_tree, sink_tree


class FrozenTime:
    """A clock that stands still; ``sleep`` records per thread and returns at once.

    With the clock frozen, a permit's ``granted_at`` is exactly the slot the limiter
    reserved, so the schedule can be checked without any thread really waiting.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


class TickingTime(FrozenTime):
    """A single-threaded clock that ``sleep`` moves forward."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.now += seconds


def limiter(time: FrozenTime, **options: Any) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(clock=time.monotonic, sleep=time.sleep, **options)


def take(lim: AdaptiveRateLimiter) -> Permit:
    """Acquire and release at once (the request itself does not matter here)."""
    permit = lim.acquire()
    permit.release()
    return permit


def run_threads(count: int, target: Any) -> None:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


# -- rate ------------------------------------------------------------------------


def test_rate_is_bounded_over_many_requests_from_eight_threads():
    time = FrozenTime()
    lim = limiter(time, max_rate=20.0, burst_seconds=0)
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            permit = take(lim)
            with lock:
                granted.append(permit.granted_at)

    run_threads(8, worker)
    granted.sort()
    assert len(granted) == 200
    assert granted[0] == 0.0
    gaps = [b - a for a, b in zip(granted, granted[1:])]
    assert min(gaps) == pytest.approx(1 / 20)
    # 200 requests at 20 per second span 199 intervals: 9.95 s of the frozen clock.
    assert granted[-1] == pytest.approx(199 / 20)
    assert sum(time.sleeps) == pytest.approx(sum(granted))


def test_a_burst_goes_at_once_then_requests_are_paced():
    time = FrozenTime()
    lim = limiter(time, max_rate=10.0, burst_seconds=1.0)
    granted = [take(lim).granted_at for _ in range(15)]
    assert granted[:10] == [0.0] * 10
    assert granted[10:] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_a_sleeping_clock_spends_the_time_the_rate_demands():
    time = TickingTime()
    lim = limiter(time, max_rate=4.0, burst_seconds=0)
    for _ in range(9):
        take(lim)
    assert time.now == pytest.approx(2.0)
    assert time.sleeps == pytest.approx([0.25] * 8)


def test_an_idle_limiter_does_not_save_up_more_than_the_burst():
    time = TickingTime()
    lim = limiter(time, max_rate=2.0, burst_seconds=1.0)
    take(lim)
    time.now += 3600
    idle_until = time.now
    granted = [take(lim).granted_at - idle_until for _ in range(4)]
    assert granted == pytest.approx([0.0, 0.0, 0.5, 1.0])


# -- in flight -------------------------------------------------------------------


def test_max_in_flight_is_never_exceeded_and_is_reached():
    lim = AdaptiveRateLimiter(1e9, max_in_flight=3, burst_seconds=1)
    holders = 0
    most = 0
    lock = threading.Lock()
    # Holders meet in threes before letting go: with a cap below 3 they would never
    # meet (the barrier times out); with none, more would hold at once.
    meet = threading.Barrier(3, timeout=10)

    def worker() -> None:
        nonlocal holders, most
        with lim.acquire():
            with lock:
                holders += 1
                most = max(most, holders)
            meet.wait()
            with lock:
                holders -= 1

    run_threads(9, worker)
    assert most == 3
    assert lim.in_flight == 0


def test_acquire_blocks_while_every_slot_is_held():
    lim = AdaptiveRateLimiter(1e9, max_in_flight=2)
    first, second = lim.acquire(), lim.acquire()
    assert lim.in_flight == 2
    got_one = threading.Event()

    def third() -> None:
        lim.acquire()
        got_one.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not got_one.wait(0.05)
    first.release()
    assert got_one.wait(10)
    thread.join(10)
    second.release()
    assert lim.in_flight == 1  # the thread's permit is still held


def test_release_is_idempotent_and_permits_are_context_managers():
    lim = AdaptiveRateLimiter(1e9, max_in_flight=1)
    permit = lim.acquire()
    permit.release()
    permit.release()  # a second release must not free a slot it does not hold
    assert lim.in_flight == 0
    with lim.acquire() as held:
        assert lim.in_flight == 1
        assert "held" in repr(held)
    assert lim.in_flight == 0
    assert "released" in repr(held)


def test_a_failed_wait_gives_the_slot_back():
    calls: list[float] = []

    def interrupted_once(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 1:
            raise KeyboardInterrupt

    lim = AdaptiveRateLimiter(
        1.0, max_in_flight=1, burst_seconds=0, clock=lambda: 0.0, sleep=interrupted_once
    )
    take(lim)
    with pytest.raises(KeyboardInterrupt):
        lim.acquire()  # must sleep for its slot, and is interrupted
    # Were the slot still taken, this would block: run it where a hang shows.
    run_threads(1, lambda: take(lim))
    assert calls == [1.0, 2.0]
    assert lim.in_flight == 0


# -- AIMD ------------------------------------------------------------------------


def test_a_429_halves_the_rate_and_success_brings_it_back_additively():
    lim = limiter(FrozenTime(), max_rate=50.0)
    lim.throttled(take(lim))
    assert lim.rate == 25.0
    # A second's worth of successes at the current rate adds about 1 request/s.
    for _ in range(25):
        lim.succeeded(take(lim))
    assert 25.9 < lim.rate < 26.0
    for _ in range(2000):
        lim.succeeded(take(lim))
    assert lim.rate == 50.0  # capped at the configured maximum


def test_one_round_of_throttling_cuts_the_rate_once():
    lim = limiter(FrozenTime(), max_rate=40.0)
    in_flight = [take(lim) for _ in range(5)]  # all sent at the old rate
    for permit in in_flight:
        lim.throttled(permit)
    assert lim.rate == 20.0
    lim.succeeded(in_flight[0])  # an old answer does not count either way
    assert lim.rate == 20.0
    lim.throttled(take(lim))  # sent after the cut, and throttled again
    assert lim.rate == 10.0


def test_the_rate_never_drops_below_the_floor():
    lim = limiter(FrozenTime(), max_rate=8.0, min_rate=3.0)
    for _ in range(10):
        lim.throttled(take(lim))
    assert lim.rate == 3.0
    assert limiter(FrozenTime(), max_rate=0.5).min_rate == 0.5


def test_a_cut_is_logged(caplog):
    lim = limiter(FrozenTime(), max_rate=10.0)
    with caplog.at_level(logging.INFO, logger="aep_extract._ratelimit"):
        lim.throttled(take(lim))
    assert "lowered from 10.00 to 5.00" in caplog.text


# -- cooldown --------------------------------------------------------------------


def test_retry_after_pauses_every_thread_until_it_ends(caplog):
    time = FrozenTime(now=100.0)
    lim = limiter(time, max_rate=10.0, burst_seconds=1.0)
    with caplog.at_level(logging.WARNING, logger="aep_extract._ratelimit"):
        lim.throttled(take(lim), retry_after=5.0)
    assert "pausing all requests for 5.00s" in caplog.text
    assert lim.cooldown_until == 105.0
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        permit = take(lim)
        with lock:
            granted.append(permit.granted_at)

    run_threads(8, worker)
    granted.sort()
    # Nobody goes before the end of the pause, and they go one slot apart after it
    # (the cut rate is 5/s), not all at once.
    assert granted == pytest.approx([105.0 + i * 0.2 for i in range(8)])
    assert min(time.sleeps) >= 5.0


def test_a_thread_asleep_on_its_slot_wakes_into_a_new_pause():
    time = FrozenTime()
    lim: AdaptiveRateLimiter

    def sleep(seconds: float) -> None:
        time.sleep(seconds)
        if len(time.sleeps) == 1:
            lim.pause(30.0)  # another thread is told Retry-After meanwhile

    lim = AdaptiveRateLimiter(1.0, burst_seconds=0, clock=time.monotonic, sleep=sleep)
    take(lim)
    assert take(lim).granted_at == 30.0
    assert time.sleeps == [1.0, 30.0]


def test_a_pause_is_capped_and_never_shortened():
    time = FrozenTime()
    lim = limiter(time, max_cooldown=60.0)
    lim.pause(3600.0)
    assert lim.cooldown_until == 60.0
    lim.pause(10.0)
    assert lim.cooldown_until == 60.0
    time.now = 61.0
    assert lim.cooldown_until is None


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
def test_a_pause_of_nothing_changes_nothing(seconds):
    time = FrozenTime()
    lim = limiter(time, max_rate=1.0, burst_seconds=0)
    lim.pause(seconds)
    assert lim.cooldown_until is None
    assert take(lim).granted_at == 0.0


def test_throttled_without_retry_after_does_not_pause():
    lim = limiter(FrozenTime(), max_rate=10.0)
    lim.throttled(take(lim))
    assert lim.cooldown_until is None


# -- construction and configuration ------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_rate": 0},
        {"max_rate": float("inf")},
        {"max_rate": 10, "min_rate": 11},
        {"min_rate": 0},
        {"max_in_flight": 0},
        {"decrease_factor": 1.0},
        {"decrease_factor": 0},
        {"increase": -1},
        {"burst_seconds": -0.5},
        {"max_cooldown": -1},
    ],
)
def test_invalid_limiter_parameters_are_config_errors(options):
    with pytest.raises(ConfigError):
        AdaptiveRateLimiter(**options)


BASE_ENV = {
    "AEP_CLIENT_ID": "cid",
    "AEP_CLIENT_SECRET": "secret",
    "AEP_ORG_ID": "ORG@AdobeOrg",
}


def test_config_defaults_and_env():
    config = AepConfig.from_env(BASE_ENV)
    assert (config.max_requests_per_second, config.max_in_flight) == (None, None)
    assert config.effective_concurrency.in_flight == 16  # 2 x the 8 default workers
    config = AepConfig.from_env(
        {**BASE_ENV, "AEP_MAX_RPS": " 12.5 ", "AEP_MAX_IN_FLIGHT": "4"}
    )
    assert config.max_requests_per_second == 12.5
    assert config.max_in_flight == 4
    assert config.effective_concurrency.requests_per_second == 12.5
    assert config.effective_concurrency.in_flight == 4
    empty = AepConfig.from_env({**BASE_ENV, "AEP_MAX_RPS": "", "AEP_MAX_IN_FLIGHT": ""})
    assert (empty.max_requests_per_second, empty.max_in_flight) == (None, None)


def test_overrides_win_over_the_env():
    config = AepConfig.from_env(
        {**BASE_ENV, "AEP_MAX_RPS": "5"}, max_requests_per_second=7, max_in_flight=2
    )
    assert (config.max_requests_per_second, config.max_in_flight) == (7, 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AEP_MAX_RPS", "fast"),
        ("AEP_MAX_RPS", "0"),
        ("AEP_MAX_RPS", "-3"),
        ("AEP_MAX_RPS", "nan"),
        ("AEP_MAX_RPS", "inf"),
        ("AEP_MAX_IN_FLIGHT", "0"),
        ("AEP_MAX_IN_FLIGHT", "2.5"),
        ("AEP_MAX_IN_FLIGHT", "-1"),
        ("AEP_MAX_IN_FLIGHT", "many"),
    ],
)
def test_bad_env_values_are_config_errors(name, value):
    with pytest.raises(ConfigError, match=name):
        AepConfig.from_env({**BASE_ENV, name: value})


@pytest.mark.parametrize(
    "override",
    [
        {"max_requests_per_second": 0},
        {"max_requests_per_second": True},
        {"max_requests_per_second": "10"},
        {"max_in_flight": 0},
        {"max_in_flight": 1.5},
        {"max_in_flight": True},
    ],
)
def test_bad_values_are_refused(override):
    with pytest.raises(ConfigError, match=next(iter(override))):
        AepConfig.from_env(BASE_ENV, **override)
    with pytest.raises(ValueError, match=next(iter(override))):
        AepConfig(client_id="c", client_secret="s", org_id="o", **override)


def test_the_source_builds_its_limiter_from_the_config():
    default = HttpAepSource(AepConfig(client_id="c", client_secret="s", org_id="o"))
    assert default.rate_limiter.max_rate == 50.0
    assert default.rate_limiter.max_in_flight == 16
    source = HttpAepSource.from_env(
        {**BASE_ENV, "AEP_MAX_RPS": "3", "AEP_MAX_IN_FLIGHT": "2"}
    )
    assert source.rate_limiter.max_rate == 3.0
    assert source.rate_limiter.max_in_flight == 2
    assert "max_rate=3.0" in repr(source.rate_limiter)


# -- over real HTTP ------------------------------------------------------------------


def is_download(request: FakeRequest) -> bool:
    return request.path.startswith("/data/foundation/export/files/") and (
        "Range" in request.headers
    )


def test_an_extraction_throttled_on_downloads_completes(fake_aep: FakeAepPlatform):
    throttle = 4
    answered: list[str] = []
    lock = threading.Lock()

    def first_downloads_throttled(request: FakeRequest) -> Any:
        if not is_download(request):
            return None
        with lock:
            if len(answered) >= throttle:
                return None
            answered.append(request.path)
            # One of them says when to come back; the others leave it to backoff.
            hint = {"Retry-After": "0.05"} if len(answered) == 1 else {}
        return 429, hint, b'{"message": "Too many requests"}'

    fake_aep.add_fault(first_downloads_throttled)
    source = HttpAepSource.from_env(
        fake_aep.env(),
        chunk_size=256 * 1024,
        retry=RetryConfig(attempts=8, initial_wait=0.01, max_wait=0.1),
        max_requests_per_second=1000,  # four cuts leave 62.5/s: a quick test
    )
    sink = MemorySink()
    with Extractor(
        source,
        store=MemoryCheckpointStore(),
        sink=sink,
        scheduler=ThreadPoolScheduler(4),
    ) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok, str(report)
    assert sink_tree(sink) == expected_tree(fake_aep)
    assert len(answered) == throttle
    assert source.counters()["throttled"] == throttle
    assert report.throttled == throttle
    assert report.retries >= throttle
    assert sum(1 for r in fake_aep.requests if r.status == 429) == throttle
    assert source.rate_limiter.rate < source.rate_limiter.max_rate
    assert source.rate_limiter.in_flight == 0
    source.close()
