"""Client-side rate limiting: an adaptive request rate and a cap on open requests.

Adobe publishes no rate limits for Catalog or Data Access, so the client finds one:
:class:`AdaptiveRateLimiter` paces requests with a token bucket whose rate starts low
and probes upwards, towards a safety ceiling, until the platform pushes back (a 429 or
503, or answers slowing down); bounds the requests open at once with a semaphore; and
on a ``Retry-After`` holds *every* thread until that time (a cooldown), not only the
one that was told.

One limiter serves all threads of one :class:`~aep_extract.HttpAepSource`. Sources
never share a limiter: sharing one source object (it is thread-safe) is how several
extractors in one process share one budget.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from types import TracebackType
from typing import Callable, Optional

from .config import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_START_REQUESTS_PER_SECOND,
)
from .errors import ConfigError

__all__ = ["AdaptiveRateLimiter", "Permit"]

logger = logging.getLogger(__name__)

DEFAULT_MIN_RATE = 1.0
"""Floor of the rate, in requests per second (or the ceiling, if that is lower)."""
DEFAULT_DECREASE_FACTOR = 0.7
"""What a cut multiplies the rate sent at by (TCP CUBIC's factor)."""
DEFAULT_DOUBLING_SECONDS = 1.0
"""Slow start: at full use the rate doubles in this many seconds."""
DEFAULT_RECOVERY_SECONDS = 0.5
"""After a cut, the gap to just below the rate that was cut shrinks e-fold in this
many seconds at full use."""
DEFAULT_HEADROOM = 0.05
"""After a cut the rate recovers to this fraction below the rate that was cut ..."""
DEFAULT_PROBE_SECONDS = 15.0
"""... and is back at that rate this many seconds after the cut; then it grows on as
the cube of the time (TCP CUBIC's curve)."""
DEFAULT_BURST_SECONDS = 0.1
"""The bucket holds this many seconds of requests at the current rate (at least one)."""
DEFAULT_MAX_COOLDOWN = 60.0
"""Longest pause a ``Retry-After`` can impose (the retry policy's ``max_wait``)."""
DEFAULT_LATENCY_TOLERANCE = 2.0
"""Answers slower than this multiple of the baseline latency cut the rate ..."""
DEFAULT_LATENCY_MARGIN = 0.1
"""... if they are also this many seconds slower than it (jitter of fast answers)."""

_WINDOW = 1.0
"""Seconds over which the rate sent at is measured."""
_IN_USE = 0.5
"""The rate grows only while this fraction of it, at least, is being used."""
_SAME_LIMIT = 0.1
"""Cuts at rates this close (relative) found the same limit ..."""
_PROBE_BACKOFF = 8
"""... and double the probe time, up to this many times ``probe_seconds``."""
_LATENCY_SHORT = 1.0
_LATENCY_LONG = 30.0
"""Time constants, in seconds, of the recent latency and of its baseline."""
_LATENCY_WARMUP = 32
"""Answers timed before latency may cut the rate (the first open new connections)."""
_EPSILON = 1e-9
"""Waits shorter than this are float noise, not worth a sleep."""


class Permit:
    """The right to send one request; holds an in-flight slot until released.

    Use it as a context manager, or call :meth:`release` (idempotent) when the
    response has been read or closed.

    Attributes:
        seq: issue order; feedback about requests issued before the last rate cut
            is ignored (they were sent at the old rate).
        granted_at: the limiter clock's time at which the request may go.
        sent_at: the limiter clock's time at which it was handed out: an answer's
            latency is counted from there.
    """

    __slots__ = ("_limiter", "_released", "granted_at", "sent_at", "seq")

    def __init__(
        self, limiter: AdaptiveRateLimiter, seq: int, granted_at: float, sent_at: float
    ):
        self._limiter = limiter
        self._released = False
        self.seq = seq
        self.granted_at = granted_at
        self.sent_at = sent_at

    def release(self) -> None:
        """Give the in-flight slot back (only the first call does)."""
        self._limiter._release(self)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"Permit(seq={self.seq}, granted_at={self.granted_at:.3f}, {state})"


class AdaptiveRateLimiter:
    """Paces requests (adaptive token bucket), caps open ones, pauses all on
    Retry-After.

    - **Rate.** :meth:`acquire` reserves the next free slot of a token bucket under a
      lock and sleeps once, outside it, until that slot (GCRA, the "virtual
      scheduling" form of a token bucket). After an idle period up to
      ``burst_seconds`` worth of requests go at once.
    - **In flight.** A semaphore of ``max_in_flight`` slots, taken before the rate
      slot and given back by :meth:`Permit.release`.
    - **Slow start.** The rate starts at ``start_rate`` and, until the first cut,
      each :meth:`succeeded` adds ``ln 2 / doubling_seconds``: at full use it doubles
      every ``doubling_seconds``, up to ``max_rate``.
    - **Cuts.** :meth:`throttled` (a 429 or 503), or answers whose latency (to their
      headers) rises above ``latency_tolerance`` times a slow baseline and
      ``latency_margin`` seconds beyond it, multiply the rate *sent at* (measured
      over the last second, as TCP uses the flight size) by ``decrease_factor``,
      not below ``min_rate``, once per round: answers to requests issued before the
      last cut neither cut again nor raise the rate.
    - **Recovery and probing.** After a cut, with L the rate that was cut, the rate
      follows a target ``t`` seconds after the cut of ``L x (1 - headroom x (1 -
      (t / probe_seconds)**3))`` (TCP CUBIC's curve): each success closes the gap to
      it e-fold per ``recovery_seconds`` at full use. So the rate returns quickly to
      just below the limit found, stays near it for a while (a ``Retry-After``
      pause costs every thread its time, so probing must be rare), reaches it again
      after ``probe_seconds`` and then grows ever faster, to find out whether the
      limit has risen.
    - **Only in use.** The rate grows only while at least half of it is used, so it
      never runs far ahead of what the client sends.
    - **Cooldown.** :meth:`pause` (and :meth:`throttled` with a ``retry_after``)
      makes every :meth:`acquire` wait until then; the bucket restarts empty, so the
      threads resume one slot apart instead of all at once. A thread already asleep
      on an earlier slot wakes, sees the cooldown and waits again.

    Args:
        max_rate: ceiling of the rate, in requests per second.
        start_rate: the rate to start at (default 50, or ``max_rate`` if lower).
        max_in_flight: permits held at once.
        min_rate: floor of the rate (default 1, or ``max_rate`` if lower).
        decrease_factor: multiplier of a rate cut, in (0, 1).
        doubling_seconds: slow start doubles the rate in this time at full use;
            ``math.inf`` leaves it out (the rate stays put until a cut).
        recovery_seconds: time constant of the return after a cut.
        headroom: fraction below the rate that was cut that the rate returns to,
            in [0, 1).
        probe_seconds: time after a cut at which the target is the rate that was
            cut again.
        burst_seconds: capacity of the bucket in seconds at the current rate; 0
            paces strictly.
        max_cooldown: cap of a pause, in seconds.
        latency_tolerance: how many times slower than the baseline answers may get
            before the rate is cut; ``math.inf`` turns the latency signal off.
        latency_margin: how many seconds slower than the baseline they must also be.
        clock: monotonic seconds (inject a fake in tests).
        sleep: how to wait (inject a recorder in tests: each acquire sleeps at most
            once per cooldown it runs into, so a fake that does not advance the
            clock cannot hang it).

    Raises:
        ConfigError: a parameter is out of range.
    """

    def __init__(
        self,
        max_rate: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
        *,
        start_rate: Optional[float] = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        min_rate: Optional[float] = None,
        decrease_factor: float = DEFAULT_DECREASE_FACTOR,
        doubling_seconds: float = DEFAULT_DOUBLING_SECONDS,
        recovery_seconds: float = DEFAULT_RECOVERY_SECONDS,
        headroom: float = DEFAULT_HEADROOM,
        probe_seconds: float = DEFAULT_PROBE_SECONDS,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        max_cooldown: float = DEFAULT_MAX_COOLDOWN,
        latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE,
        latency_margin: float = DEFAULT_LATENCY_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        floor = min(DEFAULT_MIN_RATE, max_rate) if min_rate is None else min_rate
        if start_rate is None:
            start_rate = min(DEFAULT_START_REQUESTS_PER_SECOND, max_rate)
        _check(_finite(max_rate) and max_rate > 0, "max_rate", max_rate)
        _check(_finite(floor) and 0 < floor <= max_rate, "min_rate", floor)
        _check(
            _finite(start_rate) and floor <= start_rate <= max_rate,
            "start_rate",
            start_rate,
        )
        _check(max_in_flight >= 1, "max_in_flight", max_in_flight)
        _check(0 < decrease_factor < 1, "decrease_factor", decrease_factor)
        _check(doubling_seconds > 0, "doubling_seconds", doubling_seconds)
        _check(
            _finite(recovery_seconds) and recovery_seconds > 0,
            "recovery_seconds",
            recovery_seconds,
        )
        _check(0 <= headroom < 1, "headroom", headroom)
        _check(
            _finite(probe_seconds) and probe_seconds > 0, "probe_seconds", probe_seconds
        )
        _check(_finite(burst_seconds) and burst_seconds >= 0, "burst", burst_seconds)
        _check(max_cooldown >= 0, "max_cooldown", max_cooldown)
        _check(latency_tolerance > 1, "latency_tolerance", latency_tolerance)
        _check(
            _finite(latency_margin) and latency_margin >= 0,
            "latency_margin",
            latency_margin,
        )
        self.max_rate = float(max_rate)
        self.min_rate = float(floor)
        self.start_rate = float(start_rate)
        self.max_in_flight = max_in_flight
        self._decrease_factor = decrease_factor
        self._slow_start_gain = math.log(2) / doubling_seconds
        self._recovery_seconds = recovery_seconds
        self._headroom = headroom
        self._probe_seconds = probe_seconds
        self._burst_seconds = burst_seconds
        self._max_cooldown = max_cooldown
        self._latency_tolerance = latency_tolerance
        self._latency_margin = latency_margin
        self._clock = clock
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._rate = self.start_rate
        self._limit_found: Optional[float] = None  # the rate last cut; None: slow start
        self._cut_at = -math.inf
        self._probe_period = probe_seconds
        self._tat = -math.inf  # "theoretical arrival time" of the next request
        self._sent: collections.deque[float] = collections.deque()  # recent slots
        self._first_slot: Optional[float] = None
        self._newest_slot = -math.inf
        self._cooldown_until = -math.inf
        self._cooldowns = 0  # pauses so far: a sleeper compares it when it wakes
        self._next_seq = 0
        self._cut_seq = 0  # permits issued before this number predate the last cut
        self._in_flight = 0
        self._latency = _Latency()

    # -- state -------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current allowed rate, in requests per second."""
        with self._lock:
            return self._rate

    @property
    def slow_start(self) -> bool:
        """Whether the rate is still in slow start (nothing has cut it yet)."""
        with self._lock:
            return self._limit_found is None

    @property
    def in_flight(self) -> int:
        """Permits currently held."""
        with self._lock:
            return self._in_flight

    @property
    def cooldown_until(self) -> Optional[float]:
        """Clock time until which requests are paused, or None if they are not."""
        with self._lock:
            if self._cooldown_until > self._clock():
                return self._cooldown_until
            return None

    # -- acquiring -----------------------------------------------------------------

    def acquire(self) -> Permit:
        """Wait for an in-flight slot, then for the next rate slot; return the permit.

        Blocks while ``max_in_flight`` permits are held, and sleeps (with the
        injected ``sleep``) until the rate and any cooldown allow the request.
        """
        self._slots.acquire()
        try:
            seq, start = self._wait_for_slot()
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._in_flight += 1
            sent_at = self._clock()
        return Permit(self, seq, start, sent_at)

    def _wait_for_slot(self) -> tuple[int, float]:
        while True:
            with self._lock:
                now = self._clock()
                interval = 1.0 / self._rate
                tolerance = max(0.0, self._burst_seconds - interval)
                start = max(now, self._cooldown_until, self._tat - tolerance)
                self._tat = max(self._tat, start) + interval
                cooldowns = self._cooldowns
                seq = self._next_seq
                self._next_seq += 1
            if start - now > _EPSILON:
                self._sleep(start - now)
            with self._lock:
                # A cooldown that began while we slept and ends after our slot
                # holds us too: reserve again behind it.
                if self._cooldowns == cooldowns or self._cooldown_until <= start:
                    self._record_slot(start)
                    return seq, start

    def _record_slot(self, start: float) -> None:
        if self._first_slot is None:
            self._first_slot = start
        self._sent.append(start)  # threads wake out of order: about sorted
        self._newest_slot = max(self._newest_slot, start)
        while self._sent and self._sent[0] <= self._newest_slot - _WINDOW:
            self._sent.popleft()

    def _sent_rate(self) -> Optional[float]:
        """Requests per second sent over the last window, leaving out the time
        before the start and any pause in it; None if that leaves too little."""
        if self._first_slot is None:
            return None
        newest = self._newest_slot
        since = max(newest - _WINDOW, self._first_slot)
        if self._cooldown_until <= newest:
            since = max(since, self._cooldown_until)
        if newest - since < _WINDOW / 2:
            return None
        return sum(1 for slot in self._sent if slot >= since) / (newest - since)

    def _release(self, permit: Permit) -> None:
        with self._lock:
            if permit._released:
                return
            permit._released = True
            self._in_flight -= 1
        self._slots.release()

    # -- feedback ------------------------------------------------------------------

    def succeeded(self, permit: Permit) -> None:
        """A request's answer (its headers) came without throttling: raise the
        rate, or cut it if answers have become slow.

        Call it when the headers have arrived, before reading the body: the time
        since the permit was handed out is the answer's latency, and a long body
        must not count as a slow answer.
        """
        with self._lock:
            now = self._clock()
            latency = max(0.0, now - permit.sent_at)
            slow = self._latency.add(now, latency)
            if permit.seq < self._cut_seq:
                return  # sent before the last cut: says nothing about the new rate
            # The recent latency takes its time constant to show a cut's effect.
            settled = now - self._cut_at >= _LATENCY_SHORT
            if slow is not None and settled and self._is_slow(slow):
                cut = self._cut()
            else:
                self._grow()
                return
        _log_cut("answers slowed down", cut)

    def _is_slow(self, latency: tuple[float, float]) -> bool:
        recent, baseline = latency
        return (
            recent > self._latency_tolerance * baseline
            and recent - baseline > self._latency_margin
        )

    def _grow(self) -> None:
        sent = self._sent_rate()
        if sent is not None and sent < _IN_USE * self._rate:
            return  # the rate is not what holds the client back
        limit = self._limit_found
        if limit is None:
            gain = self._slow_start_gain * self._rate
        else:
            since = (self._clock() - self._cut_at) / self._probe_period
            target = limit * (1 - self._headroom * (1 - since**3))
            gain = max(0.0, target - self._rate) / self._recovery_seconds
        # One success is 1/rate of a second's worth of them at full use.
        self._rate = min(self.max_rate, self._rate + gain / self._rate)

    def _cut(self) -> tuple[float, float]:
        """Cut the rate sent at; returns the rates before and after."""
        before = self._rate
        sent = self._sent_rate()
        # A client using under half its rate learns little from a refusal (the
        # budget is shared, or a burst met a small bucket): cut from its rate, not
        # from the trickle it sent, so that a quiet phase cannot sink the copy after.
        in_use = sent is not None and sent >= _IN_USE * before
        found = min(before, sent) if in_use and sent is not None else before
        last = self._limit_found
        if last is not None and found < (1 - self._headroom) * last:
            # Refused well below the limit found: a burst, a shared budget or an
            # injected fault, not a lower limit (that is refused near the limit
            # too). Cut, but keep the limit: else sparse refusals ratchet it down.
            self._rate = max(self.min_rate, before * self._decrease_factor)
        else:
            if last is not None and abs(found - last) <= _SAME_LIMIT * last:
                # The same limit again: probe it less often (each probe costs a cut).
                self._probe_period = min(
                    self._probe_period * 2, self._probe_seconds * _PROBE_BACKOFF
                )
            else:
                self._probe_period = self._probe_seconds
            self._limit_found = found
            self._rate = max(self.min_rate, found * self._decrease_factor)
        self._cut_at = self._clock()
        self._cut_seq = self._next_seq
        return before, self._rate

    def throttled(self, permit: Permit, retry_after: Optional[float] = None) -> None:
        """A request got 429 (or 503): cut the rate; pause all for ``retry_after``.

        Args:
            permit: the permit the request was sent under.
            retry_after: the server's ``Retry-After`` in seconds, if it sent one.
        """
        with self._lock:
            cut = self._cut() if permit.seq >= self._cut_seq else None
        if cut is not None:
            _log_cut("throttled", cut)
        if retry_after is not None:
            self.pause(retry_after)

    def pause(self, seconds: float) -> None:
        """Hold every request until ``seconds`` from now (at most ``max_cooldown``).

        A pause never shortens one already running.
        """
        seconds = min(seconds, self._max_cooldown)
        if not seconds > 0:
            return
        with self._lock:
            until = self._clock() + seconds
            if until <= self._cooldown_until:
                return
            self._cooldown_until = until
            self._cooldowns += 1
            # Restart the bucket empty at the end of the pause: no stampede then.
            tolerance = max(0.0, self._burst_seconds - 1.0 / self._rate)
            self._tat = max(self._tat, until + tolerance)
        logger.warning("Retry-After: pausing all requests for %.2fs", seconds)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(rate={self.rate:.2f}/s, max_rate={self.max_rate}, "
            f"max_in_flight={self.max_in_flight}, in_flight={self.in_flight})"
        )


class _Latency:
    """A recent latency and its baseline: exponential averages over time (not over
    answers, whose pace varies with the rate), the recent one over about a second,
    the baseline over half a minute."""

    def __init__(self) -> None:
        self._recent = 0.0
        self._baseline = 0.0
        self._count = 0
        self._at = -math.inf

    def add(self, now: float, latency: float) -> Optional[tuple[float, float]]:
        """Add one answer's latency; returns (recent, baseline) once warmed up."""
        if self._count == 0:
            self._recent = self._baseline = latency
        else:
            elapsed = max(0.0, now - self._at)
            self._recent += _weight(elapsed, _LATENCY_SHORT) * (latency - self._recent)
            self._baseline += _weight(elapsed, _LATENCY_LONG) * (
                latency - self._baseline
            )
        self._at = now
        self._count += 1
        if self._count < _LATENCY_WARMUP:
            return None
        return self._recent, self._baseline


def _weight(elapsed: float, time_constant: float) -> float:
    return 1.0 - math.exp(-elapsed / time_constant)


def _log_cut(reason: str, rates: tuple[float, float]) -> None:
    before, after = rates
    logger.info(
        "%s: request rate lowered from %.2f to %.2f per second", reason, before, after
    )


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check(ok: bool, name: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"rate limiter: invalid {name} {value!r}")
