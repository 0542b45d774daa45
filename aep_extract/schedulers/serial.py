"""A scheduler that runs each task at once, in the caller's thread: for debugging."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

from .base import Scheduler

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SerialScheduler(Scheduler):
    """Runs every task inside :meth:`submit` and returns an already finished future.

    Runs are deterministic and tracebacks point into the caller's stack, which makes
    this the scheduler for tests and debuggers.
    """

    def __init__(self) -> None:
        self._closed = False

    @property
    def max_workers(self) -> int:
        """Always 1."""
        return 1

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` now; its result or exception goes on the future.

        ``KeyboardInterrupt`` and ``SystemExit`` are raised, not stored, so Ctrl-C
        stops a serial run at once.

        Raises:
            RuntimeError: the scheduler was shut down.
        """
        if self._closed:
            raise RuntimeError("cannot schedule new tasks after shutdown")
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop accepting tasks (none is ever queued, so ``cancel`` changes nothing)."""
        self._closed = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
