"""The one retry policy of the library: which errors are retried, how long to wait.

Every retried call goes through :func:`build_retrying`: the source's platform and IMS
requests, the DynamoDB store's requests and the S3 sink's (botocore's own retries are
off on every client the library creates). One :class:`~aep_extract.RetryConfig` sets
the attempts and waits; this module alone decides

- what is retried (:func:`classify`): :data:`aep_extract.errors.RETRYABLE` (429, 5xx,
  network failures, short downloads), and a store's or sink's error caused by an AWS
  throttle, 5xx or connection failure (:func:`aep_extract._aws_errors.transient_kind`);
- how long to wait: exponential backoff with full jitter, except that a
  :class:`~aep_extract.errors.ThrottledError` carrying the server's ``Retry-After``
  waits exactly that long (capped at ``max_wait``); never past a deadline;
- what is said: a WARNING line before each wait, and the run's ``retries`` and
  ``throttled`` counts and hooks (:func:`aep_extract._run.report_retry`,
  :func:`~aep_extract._run.report_throttled`).
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

import tenacity
from tenacity.wait import wait_base

from ._run import aborted, pause, report_retry, report_throttled
from .errors import RETRYABLE, AepExtractError, ThrottledError

if TYPE_CHECKING:
    from .config import RetryConfig

__all__ = ["THROTTLED", "TRANSIENT", "build_retrying", "classify", "parse_retry_after"]

logger = logging.getLogger(__name__)

THROTTLED = "throttled"
"""A :func:`classify` verdict: the service asked us to slow down."""
TRANSIENT = "transient"
"""A :func:`classify` verdict: a failure that may pass (5xx, network, short body)."""

_MAX_CAUSES = 8
"""How deep :func:`classify` follows ``__cause__``."""


def classify(exc: BaseException) -> Optional[str]:
    """Whether ``exc`` is worth another try: :data:`THROTTLED`, :data:`TRANSIENT`,
    or None.

    A :class:`~aep_extract.errors.ThrottledError` is throttled, any other error of
    :data:`~aep_extract.errors.RETRYABLE` transient. A store or sink maps botocore's
    errors to its own (``raise SinkError(...) from exc``): such an error takes the
    verdict of the botocore error it was raised from.
    """
    if isinstance(exc, ThrottledError):
        return THROTTLED
    if isinstance(exc, RETRYABLE):
        return TRANSIENT
    cause = exc.__cause__
    for _ in range(_MAX_CAUSES):
        if cause is None:
            break
        if type(cause).__module__.startswith(("botocore.", "aep_extract._aws")):
            # Imported here: botocore loads only where AWS is used.
            from ._aws_errors import transient_kind

            kind = transient_kind(cause)
            if kind is not None:
                return THROTTLED if kind == THROTTLED else TRANSIENT
        cause = cause.__cause__
    return None


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


class _retry_if_transient(tenacity.retry_base):
    """Retry what :func:`classify` calls throttled or transient, and with
    ``count_throttles`` count each throttled attempt for the run, retried or not.

    With ``stop_on_abort``, nothing is retried for a run that is aborting (see
    :mod:`aep_extract._run`).
    """

    def __init__(
        self,
        stop_on_abort: bool,
        count_throttles: bool,
        on_throttle: Optional[Callable[[Optional[float]], None]],
    ) -> None:
        self.stop_on_abort = stop_on_abort
        self.count_throttles = count_throttles
        self.on_throttle = on_throttle

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        kind = classify(exc) if exc is not None else None
        if kind == THROTTLED and self.count_throttles:
            retry_after = exc.retry_after if isinstance(exc, ThrottledError) else None
            report_throttled(retry_after=retry_after)
            if self.on_throttle is not None:
                self.on_throttle(retry_after)
        return kind is not None and not (self.stop_on_abort and aborted())


class _stop_near(tenacity.stop.stop_base):
    """Stop when less than ``margin`` seconds are left before ``deadline``."""

    def __init__(self, deadline: float, margin: float) -> None:
        self.deadline = deadline
        self.margin = margin

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.monotonic() >= self.deadline - self.margin


DEADLINE_MARGIN = 1.0
"""Seconds that must be left before a deadline for another attempt to start."""


_T = TypeVar("_T")


def call_retrying(
    retrying: tenacity.Retrying,
    attempts: int,
    error: type[AepExtractError],
    send: Callable[[], _T],
) -> _T:
    """Run ``send`` under ``retrying`` (a copy: a Retrying keeps per-call state,
    and threads share its owner). An ``error`` the policy retried to the end says
    how many ``attempts`` it had; one it does not retry passes as it is."""
    try:
        return retrying.copy()(send)
    except error as exc:
        if classify(exc) is None:
            raise
        raise error(f"{exc} (gave up after {attempts} attempt(s))") from exc


def build_retrying(
    config: RetryConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Optional[Callable[[tenacity.RetryCallState], None]] = None,
    on_throttle: Optional[Callable[[Optional[float]], None]] = None,
    deadline: Optional[float] = None,
    stop_on_abort: bool = True,
    count_throttles: bool = True,
) -> tenacity.Retrying:
    """Build the retry controller for one kind of request.

    Before each wait it logs a WARNING line and reports the retry to the current
    run (:func:`aep_extract._run.report_retry`); each throttled attempt is reported
    too (:func:`~aep_extract._run.report_throttled`). Threads that share the result
    each call its ``copy()`` per operation: a controller keeps per-call state.

    Args:
        config: attempts and wait bounds.
        sleep: how to wait (inject a recorder in tests instead of sleeping); a
            real wait ends early when the run aborts.
        on_retry: called before each wait, after the WARNING log line (e.g. to keep
            a component's own totals).
        on_throttle: called with the ``Retry-After`` seconds (or None) of each
            throttled attempt.
        deadline: a ``time.monotonic()`` instant: no wait goes past it, and no
            attempt starts less than :data:`DEADLINE_MARGIN` seconds before it.
        stop_on_abort: retry nothing for a run that is aborting, and cut waits
            short when it aborts (False for the bookkeeping that must land even
            then, such as giving leases back).
        count_throttles: report throttled attempts to the run (False for a
            service whose throttles are not the run's, such as IMS).

    Returns:
        A :class:`tenacity.Retrying` that retries what :func:`classify` accepts up
        to ``config.attempts`` tries in all and then re-raises the last error.
    """
    attempts = config.attempts

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        action = retry_state.next_action
        wait = action.sleep if action is not None else 0.0
        # The reason is the exception's class and message: our messages carry method,
        # path, status and request id, never headers or tokens.
        reason = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "attempt %d of %d failed, retrying in %.2fs: %s",
            retry_state.attempt_number,
            attempts,
            wait,
            reason,
        )
        report_retry(reason=reason, wait=wait)
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
        retry=_retry_if_transient(stop_on_abort, count_throttles, on_throttle),
        wait=wait,
        stop=stop,
        sleep=(lambda seconds: pause(seconds, sleep)) if stop_on_abort else sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
