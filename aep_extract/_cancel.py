"""Aborting a run's work from inside the source: the run's abort event, in a
context variable that the engine sets around each task.

A source cannot see which run a call belongs to (several extractors may share one),
so the engine marks its tasks with :func:`abortable`; the source's retry loops and
waits ask :func:`aborted` and give up at once instead of retrying, and
:func:`pause` wakes from a wait as soon as the run aborts.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Callable, Optional

_abort: contextvars.ContextVar[Optional[threading.Event]] = contextvars.ContextVar(
    "aep_extract_abort", default=None
)


@contextlib.contextmanager
def abortable(event: threading.Event) -> Iterator[None]:
    """Run the block as work that ``event`` aborts."""
    token = _abort.set(event)
    try:
        yield
    finally:
        _abort.reset(token)


def aborted() -> bool:
    """Whether the work this thread does now belongs to an aborted run."""
    event = _abort.get()
    return event is not None and event.is_set()


def pause(seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait ``seconds``, or less if the run aborts meanwhile.

    An injected ``sleep`` (a test's recorder) is called as is.
    """
    event = _abort.get()
    if event is None or sleep is not time.sleep:
        sleep(seconds)
    else:
        event.wait(seconds)
