"""The one retry policy of the library: which errors are retried, how long to wait.

Retryable errors are :data:`aep_extract.errors.RETRYABLE` (429, 5xx, network failures,
short downloads). Waits follow exponential backoff with full jitter, except that a
:class:`~aep_extract.errors.ThrottledError` carrying the server's ``Retry-After`` waits
exactly that long (capped at ``max_wait``).
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional

import tenacity
from tenacity.wait import wait_base

from ._run import aborted, pause
from .errors import RETRYABLE, ThrottledError

if TYPE_CHECKING:
    from .config import RetryConfig

__all__ = ["build_retrying", "parse_retry_after"]

logger = logging.getLogger(__name__)


def parse_retry_after(
    value: Optional[str], now: Optional[datetime] = None
) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header value.

    Args:
        value: the header value: delay seconds (``"120"``) or an HTTP date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``); None when the header is absent.
        now: the current time for an HTTP date (default: the system clock, UTC).

    Returns:
        A non-negative number of seconds (0 for a date in the past), or None when
        the value is absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until_http_date(text: str, now: Optional[datetime]) -> Optional[float]:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (
        TypeError,
        ValueError,
        IndexError,
    ):  # 3.9 raises TypeError, 3.10+ ValueError
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


class _wait_retry_after(wait_base):
    """Honour a ThrottledError's ``retry_after``; otherwise defer to ``fallback``."""

    def __init__(self, fallback: wait_base, max_wait: float) -> None:
        self.fallback = fallback
        self.max_wait = max_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(exc, ThrottledError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_wait)
        return self.fallback(retry_state)


class _wait_until(wait_base):
    """Never wait past ``deadline`` (time.monotonic)."""

    def __init__(self, wait: wait_base, deadline: float) -> None:
        self.wait = wait
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        left = self.deadline - time.monotonic()
        return max(0.0, min(self.wait(retry_state), left))


class _unless_aborted(tenacity.retry_base):
    """Retry nothing for a run that is aborting (see :mod:`aep_extract._run`)."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return not aborted()


class _stop_near(tenacity.stop.stop_base):
    """Stop when less than ``margin`` seconds are left before ``deadline``."""

    def __init__(self, deadline: float, margin: float) -> None:
        self.deadline = deadline
        self.margin = margin

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.monotonic() >= self.deadline - self.margin


DEADLINE_MARGIN = 1.0
"""Seconds that must be left before a deadline for another attempt to start."""


def build_retrying(
    config: RetryConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Optional[Callable[[tenacity.RetryCallState], None]] = None,
    deadline: Optional[float] = None,
) -> tenacity.Retrying:
    """Build the retry controller for one kind of request.

    Args:
        config: attempts and wait bounds.
        sleep: how to wait (inject a recorder in tests instead of sleeping); a
            real wait ends early when the run aborts.
        on_retry: called before each wait, after the WARNING log line (e.g. to count
            retries).
        deadline: a ``time.monotonic()`` instant: no wait goes past it, and no
            attempt starts less than :data:`DEADLINE_MARGIN` seconds before it.

    Returns:
        A :class:`tenacity.Retrying` that retries :data:`~aep_extract.errors.RETRYABLE`
        errors up to ``config.attempts`` tries in all and then re-raises the last one.
    """
    attempts = config.attempts

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        action = retry_state.next_action
        # The reason is the exception's class and message: our messages carry method,
        # path, status and request id, never headers or tokens.
        logger.warning(
            "attempt %d of %d failed, retrying in %.2fs: %s: %s",
            retry_state.attempt_number,
            attempts,
            action.sleep if action is not None else 0.0,
            type(exc).__name__,
            exc,
        )
        if on_retry is not None:
            on_retry(retry_state)

    backoff = tenacity.wait_random_exponential(
        multiplier=config.initial_wait, max=config.max_wait
    )
    wait: wait_base = _wait_retry_after(backoff, config.max_wait)
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(attempts)
    if deadline is not None:
        # Every attempt, the last one too, starts with the margin still left.
        wait = _wait_until(wait, deadline - DEADLINE_MARGIN)
        stop = stop | _stop_near(deadline, DEADLINE_MARGIN)
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RETRYABLE) & _unless_aborted(),
        wait=wait,
        stop=stop,
        sleep=lambda seconds: pause(seconds, sleep),
        before_sleep=before_sleep,
        reraise=True,
    )
