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


# -- slow start, cuts, recovery -----------------------------------------------------


def succeed_for(lim: AdaptiveRateLimiter, time: TickingTime, seconds: float) -> None:
    """Requests one after another, each answered at once, for ``seconds`` of the
    clock: the rate is fully used."""
    end = time.now + seconds
    while time.now < end:
        lim.succeeded(take(lim))


def test_slow_start_doubles_the_rate_each_second_up_to_the_ceiling():
    time = TickingTime()
    lim = limiter(time, max_rate=400.0, burst_seconds=0)
    assert (lim.rate, lim.slow_start) == (50.0, True)  # the default start
    rates = []
    for _ in range(3):
        succeed_for(lim, time, 1.0)
        rates.append(lim.rate)
    assert rates == pytest.approx([100, 200, 400], rel=0.02)
    succeed_for(lim, time, 2.0)
    assert lim.rate == 400.0  # the ceiling holds
    assert lim.slow_start


def test_the_start_is_capped_by_the_ceiling():
    assert limiter(FrozenTime(), max_rate=20.0).rate == 20.0
    assert limiter(FrozenTime(), max_rate=500.0, start_rate=5.0).rate == 5.0


def test_the_rate_does_not_grow_while_the_client_does_not_use_it():
    time = TickingTime()
    lim = limiter(time, max_rate=1000.0, start_rate=100.0, burst_seconds=0)

    def twenty_a_second_for(seconds: int) -> None:  # a fifth of the rate, or less
        for _ in range(20 * seconds):
            lim.succeeded(take(lim))
            time.now += 0.05

    twenty_a_second_for(2)  # the first second grows it: nothing measured yet
    grown = lim.rate
    twenty_a_second_for(10)
    assert lim.rate == grown < 120


def test_a_429_cuts_the_rate_sent_and_ends_slow_start():
    time = TickingTime()
    lim = limiter(time, max_rate=2000.0, burst_seconds=0)
    succeed_for(lim, time, 1.0)
    a_second_ago = lim.rate
    succeed_for(lim, time, 1.0)  # doubling: about 100 then 200 per second
    now = lim.rate
    lim.throttled(take(lim))
    assert not lim.slow_start
    # The cut applies to the rate sent over the last second, not to the rate now.
    sent = lim.rate / 0.7
    assert a_second_ago < sent < now
    # It returns to just below the rate that was cut within seconds ...
    succeed_for(lim, time, 5.0)
    assert lim.rate == pytest.approx(0.95 * sent, rel=0.01)
    # ... stays below it (slow start would have passed it long ago) ...
    succeed_for(lim, time, 9.0)
    assert lim.rate < sent
    # ... and probes beyond it once its probe time (15 s) is over, ever faster.
    succeed_for(lim, time, 6.0)
    beyond = lim.rate
    assert beyond > sent
    succeed_for(lim, time, 5.0)
    assert lim.rate - beyond > beyond - sent


def test_a_quiet_clients_429_cuts_from_its_rate_not_its_trickle():
    time = TickingTime()
    lim = limiter(time, max_rate=2000.0, burst_seconds=0)
    for _ in range(3):  # three requests a second against a rate of 50
        lim.succeeded(take(lim))
        time.now += 0.4
    before = lim.rate
    assert before < 55.0  # grown a little at first, then not while unused
    lim.throttled(take(lim))
    # The trickle says nothing of the limit: a cut to 0.7 x 3/s would leave the
    # copy that follows crawling for minutes.
    assert lim.rate == pytest.approx(0.7 * before)


def test_sparse_refusals_below_the_limit_do_not_ratchet_it_down():
    """Refusals that come while the rate is still recovering from a cut (a
    burst, an injected fault) cut the rate but not the limit found: a run under
    random 429s keeps returning to the same limit instead of sinking to 1/s."""
    time = TickingTime()
    lim = limiter(time, max_rate=2000.0, start_rate=200.0, burst_seconds=0)
    succeed_for(lim, time, 1.0)
    lim.throttled(take(lim))
    limit = lim.rate / 0.7
    for _ in range(20):  # a refusal every 0.3 s, each well below the limit
        succeed_for(lim, time, 0.3)
        lim.throttled(take(lim))
    succeed_for(lim, time, 5.0)
    assert lim.rate == pytest.approx(0.95 * limit, rel=0.02)


def test_a_limit_found_again_is_probed_half_as_often():
    time = TickingTime()
    lim = limiter(time, max_rate=2000.0, start_rate=100.0, burst_seconds=0)
    succeed_for(lim, time, 2.0)
    lim.throttled(take(lim))
    first = lim.rate / 0.7
    succeed_for(lim, time, 17.0)  # 15 s after the cut it probes beyond the limit
    assert lim.rate > first
    lim.throttled(take(lim))  # and is throttled at the same limit again
    second = lim.rate / 0.7
    assert second == pytest.approx(first, rel=0.1)
    succeed_for(lim, time, 20.0)
    assert lim.rate < second  # no probe 15 s after this cut ...
    succeed_for(lim, time, 12.0)
    assert lim.rate > second  # ... but after 30 s


def test_one_round_of_throttling_cuts_the_rate_once():
    lim = limiter(FrozenTime(), max_rate=40.0, decrease_factor=0.5)
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
    assert "throttled: request rate lowered from 10.00 to 7.00" in caplog.text


# -- latency ---------------------------------------------------------------------


def answer_for(
    lim: AdaptiveRateLimiter, time: TickingTime, seconds: float, latency: float
) -> None:
    """Requests one after another, each answered (its headers) after ``latency``."""
    end = time.now + seconds
    while time.now < end:
        permit = take(lim)
        time.now += latency
        lim.succeeded(permit)


def test_rising_latency_cuts_the_rate(caplog):
    time = TickingTime()
    lim = limiter(time, max_rate=1000.0, start_rate=100.0, burst_seconds=0)
    answer_for(lim, time, 10.0, latency=0.005)
    before = (lim.slow_start, lim.rate)
    with caplog.at_level(logging.INFO, logger="aep_extract._ratelimit"):
        answer_for(lim, time, 2.0, latency=0.5)  # the platform is queueing
    assert before[0]
    assert not lim.slow_start
    assert lim.rate < before[1]
    assert "answers slowed down: request rate lowered" in caplog.text


def test_steadily_slow_answers_do_not_cut_the_rate():
    # Slow by nature (a far platform, big pages): no rise against the baseline.
    time = TickingTime()
    lim = limiter(time, max_rate=1000.0, start_rate=2.0, burst_seconds=0)
    answer_for(lim, time, 60.0, latency=1.5)
    assert lim.slow_start
    assert lim.rate > 2.0


def test_a_small_rise_of_fast_answers_is_jitter_not_a_signal():
    time = TickingTime()
    lim = limiter(time, max_rate=1000.0, start_rate=20.0, burst_seconds=0)
    answer_for(lim, time, 5.0, latency=0.002)
    answer_for(lim, time, 5.0, latency=0.02)  # 10 x slower, but by 18 ms only
    assert lim.slow_start


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
    # (the cut rate is 7/s), not all at once.
    assert granted == pytest.approx([105.0 + i / 7 for i in range(8)])
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
        {"max_rate": 10, "start_rate": 11},
        {"min_rate": 5, "start_rate": 4},
        {"max_in_flight": 0},
        {"decrease_factor": 1.0},
        {"decrease_factor": 0},
        {"doubling_seconds": 0},
        {"recovery_seconds": 0},
        {"headroom": 1.0},
        {"probe_seconds": float("inf")},
        {"latency_tolerance": 1.0},
        {"latency_margin": -0.1},
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
    assert default.rate_limiter.max_rate == 2000.0  # the safety ceiling
    assert default.rate_limiter.rate == 50.0  # the start
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_default_settings_find_a_gateway_limit_and_copy_exactly():
    # The gateway allows 40 calls a second; the client starts at 50 and probes up.
    limit = 40
    with FakeAepPlatform.generate(
        rate_limit=limit,
        batches=16,
        files_per_batch=4,
        max_file_size=4096,
        large_file_size=0,
    ) as platform:
        source = HttpAepSource.from_env(platform.env())
        sink = MemorySink()
        with Extractor(source, store=MemoryCheckpointStore(), sink=sink) as extractor:
            report = extractor.run(DATASET, START, END)
        assert report.ok, str(report)
        assert sink_tree(sink) == expected_tree(platform)
        calls = sum(1 for r in platform.requests if not r.path.startswith("/ims/"))
        assert 0 < platform.rate_limited <= 0.05 * calls
        assert report.throttled == platform.rate_limited
        assert not source.rate_limiter.slow_start  # it found the limit ...
        assert source.rate_limiter.rate < 1.5 * limit  # ... and stays near it
        source.close()
