"""Client-side rate limiting: an adaptive request rate and a cap on open requests.

Adobe publishes no rate limits for Catalog or Data Access, so the client finds one:
:class:`AdaptiveRateLimiter` paces requests with a token bucket whose rate follows
AIMD (additive increase, multiplicative decrease), bounds the requests open at once
with a semaphore, and on a ``Retry-After`` holds *every* thread until that time (a
cooldown), not only the one that was told.

One limiter serves all threads of one :class:`~aep_extract.HttpAepSource`. Sources
never share a limiter: sharing one source object (it is thread-safe) is how several
extractors in one process share one budget.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from types import TracebackType
from typing import Callable, Optional

from .config import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_REQUESTS_PER_SECOND
from .errors import ConfigError

__all__ = ["AdaptiveRateLimiter", "Permit"]

logger = logging.getLogger(__name__)

DEFAULT_MIN_RATE = 1.0
"""Floor of the rate, in requests per second (or the ceiling, if that is lower)."""
DEFAULT_DECREASE_FACTOR = 0.5
"""What a round of throttling multiplies the rate by."""
DEFAULT_INCREASE = 1.0
"""Requests per second regained for each second's worth of successful requests."""
DEFAULT_BURST_SECONDS = 1.0
"""The bucket holds this many seconds of requests at the current rate (at least one)."""
DEFAULT_MAX_COOLDOWN = 60.0
"""Longest pause a ``Retry-After`` can impose (the retry policy's ``max_wait``)."""

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
    """

    __slots__ = ("_limiter", "_released", "granted_at", "seq")

    def __init__(self, limiter: AdaptiveRateLimiter, seq: int, granted_at: float):
        self._limiter = limiter
        self._released = False
        self.seq = seq
        self.granted_at = granted_at

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
    """Paces requests (AIMD token bucket), caps open ones, pauses all on Retry-After.

    - **Rate.** :meth:`acquire` reserves the next free slot of a token bucket under a
      lock and sleeps once, outside it, until that slot (GCRA, the "virtual
      scheduling" form of a token bucket). After an idle period up to
      ``burst_seconds`` worth of requests go at once.
    - **In flight.** A semaphore of ``max_in_flight`` slots, taken before the rate
      slot and given back by :meth:`Permit.release`.
    - **AIMD.** :meth:`throttled` multiplies the rate by ``decrease_factor`` (not
      below ``min_rate``), once per round: answers to requests issued before the last
      cut do not cut again. Each :meth:`succeeded` adds ``increase / rate``, so at
      full use the rate climbs by ``increase`` requests per second every second, up
      to ``max_rate``.
    - **Cooldown.** :meth:`pause` (and :meth:`throttled` with a ``retry_after``)
      makes every :meth:`acquire` wait until then; the bucket restarts empty, so the
      threads resume one slot apart instead of all at once. A thread already asleep
      on an earlier slot wakes, sees the cooldown and waits again.

    Args:
        max_rate: ceiling and starting value of the rate, in requests per second.
        max_in_flight: permits held at once.
        min_rate: floor of the rate (default 1, or ``max_rate`` if lower).
        decrease_factor: multiplier of a rate cut, in (0, 1).
        increase: requests per second regained per second's worth of successes.
        burst_seconds: capacity of the bucket in seconds at the current rate; 0
            paces strictly.
        max_cooldown: cap of a pause, in seconds.
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
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        min_rate: Optional[float] = None,
        decrease_factor: float = DEFAULT_DECREASE_FACTOR,
        increase: float = DEFAULT_INCREASE,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        max_cooldown: float = DEFAULT_MAX_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        floor = min(DEFAULT_MIN_RATE, max_rate) if min_rate is None else min_rate
        _check(_finite(max_rate) and max_rate > 0, "max_rate", max_rate)
        _check(_finite(floor) and 0 < floor <= max_rate, "min_rate", floor)
        _check(max_in_flight >= 1, "max_in_flight", max_in_flight)
        _check(0 < decrease_factor < 1, "decrease_factor", decrease_factor)
        _check(_finite(increase) and increase >= 0, "increase", increase)
        _check(_finite(burst_seconds) and burst_seconds >= 0, "burst", burst_seconds)
        _check(max_cooldown >= 0, "max_cooldown", max_cooldown)
        self.max_rate = float(max_rate)
        self.min_rate = float(floor)
        self.max_in_flight = max_in_flight
        self._decrease_factor = decrease_factor
        self._increase = increase
        self._burst_seconds = burst_seconds
        self._max_cooldown = max_cooldown
        self._clock = clock
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._rate = self.max_rate
        self._tat = -math.inf  # "theoretical arrival time" of the next request
        self._cooldown_until = -math.inf
        self._cooldowns = 0  # pauses so far: a sleeper compares it when it wakes
        self._next_seq = 0
        self._cut_seq = 0  # permits issued before this number predate the last cut
        self._in_flight = 0

    # -- state -------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The current allowed rate, in requests per second."""
        with self._lock:
            return self._rate

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
        return Permit(self, seq, start)

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
                    return seq, start

    def _release(self, permit: Permit) -> None:
        with self._lock:
            if permit._released:
                return
            permit._released = True
            self._in_flight -= 1
        self._slots.release()

    # -- feedback ------------------------------------------------------------------

    def succeeded(self, permit: Permit) -> None:
        """A request answered without throttling: raise the rate a little."""
        with self._lock:
            if permit.seq < self._cut_seq:
                return  # sent before the last cut: says nothing about the new rate
            self._rate = min(self.max_rate, self._rate + self._increase / self._rate)

    def throttled(self, permit: Permit, retry_after: Optional[float] = None) -> None:
        """A request got 429 (or 503): cut the rate; pause all for ``retry_after``.

        Args:
            permit: the permit the request was sent under.
            retry_after: the server's ``Retry-After`` in seconds, if it sent one.
        """
        with self._lock:
            cut = permit.seq >= self._cut_seq
            if cut:
                before = self._rate
                self._rate = after = max(self.min_rate, before * self._decrease_factor)
                self._cut_seq = self._next_seq
        if cut:
            logger.info(
                "throttled: request rate lowered from %.2f to %.2f per second",
                before,
                after,
            )
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


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check(ok: bool, name: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"rate limiter: invalid {name} {value!r}")
