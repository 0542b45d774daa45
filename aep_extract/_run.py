"""The run a piece of work belongs to, seen from anywhere below the Extractor.

One source may serve several extractors at once (its rate limiter is their shared
budget), so what happens during a run cannot be kept on the source. Each
:class:`~aep_extract.Extractor` call opens a :class:`RunScope` around what it does,
and the engine opens it again in each task thread; the scope lives in a context
variable. A source reports to the scope it is called in (:func:`report_retry`,
:func:`report_throttled`, :func:`report_count`), so each run gets its own events and
counts, and asks :func:`aborted` so that work of an aborting run gives up at once
instead of retrying.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Callable, Optional

from .hooks import HookDispatcher

__all__ = ["RunScope", "aborted", "report_count", "report_retry", "report_throttled"]

COUNTERS = ("requests", "retries", "throttled", "bytes")
"""What a run counts: requests sent, retries, 429 answers, file bytes received."""


class RunScope:
    """One run's hooks, counters and abort event (thread-safe).

    Args:
        hooks: told of the run's retries and 429s (and, by the engine, of its units).
        abort: set when the run aborts.
        owner: what opened the scope (an Extractor reuses its own scope when one of
            its calls makes another).
    """

    def __init__(
        self,
        hooks: Optional[HookDispatcher] = None,
        abort: Optional[threading.Event] = None,
        owner: object = None,
    ) -> None:
        self.hooks = hooks if hooks is not None else HookDispatcher()
        self.abort = abort if abort is not None else threading.Event()
        self.owner = owner
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (every name of :data:`COUNTERS` present)."""
        with self._lock:
            return {name: self._counts.get(name, 0) for name in COUNTERS} | {
                name: value
                for name, value in self._counts.items()
                if name not in COUNTERS
            }


_scope: contextvars.ContextVar[Optional[RunScope]] = contextvars.ContextVar(
    "aep_extract_run", default=None
)


@contextlib.contextmanager
def within(scope: RunScope) -> Iterator[RunScope]:
    """Run the block as work of ``scope``'s run."""
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current() -> Optional[RunScope]:
    """The scope of the run this thread works for now, if any."""
    return _scope.get()


def aborted() -> bool:
    """Whether the work this thread does now belongs to an aborting run."""
    scope = _scope.get()
    return scope is not None and scope.abort.is_set()


def pause(seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait ``seconds``, or less if the run aborts meanwhile.

    An injected ``sleep`` (a test's recorder) is called as is.
    """
    scope = _scope.get()
    if scope is None or sleep is not time.sleep:
        sleep(seconds)
    else:
        scope.abort.wait(seconds)


def report_count(name: str, amount: int = 1) -> None:
    """Count ``amount`` of ``name`` (``requests``, ``bytes`` ...) for the current
    run; outside a run, nothing. For sources, from any thread."""
    scope = _scope.get()
    if scope is not None:
        scope.count(name, amount)


def report_retry(*, reason: str, wait: float) -> None:
    """A request of the current run failed and is retried after ``wait`` seconds:
    count it and tell the run's hooks. ``reason`` must hold no secret."""
    scope = _scope.get()
    if scope is not None:
        scope.count("retries")
        scope.hooks.retry(reason=reason, wait=wait)


def report_throttled(*, retry_after: Optional[float]) -> None:
    """The platform answered 429 to a request of the current run."""
    scope = _scope.get()
    if scope is not None:
        scope.count("throttled")
        scope.hooks.throttled(retry_after=retry_after)
