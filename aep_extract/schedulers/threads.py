"""The default scheduler: a bounded pool of threads."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from ..config import DEFAULT_WORKERS
from ..errors import ConfigError
from .base import Scheduler

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_WORKERS = DEFAULT_WORKERS
"""The default of ``max_workers``: ``ConcurrencyConfig.workers``'s."""


class ThreadPoolScheduler(Scheduler):
    """Runs tasks on a :class:`~concurrent.futures.ThreadPoolExecutor`.

    Copying is I/O-bound (HTTP in, S3 out), so threads overlap it well despite the GIL.

    Args:
        max_workers: how many tasks run at once; pass
            ``ConcurrencyConfig.workers`` (what the Extractor does for the
            scheduler it makes).
        thread_name_prefix: names the pool's threads, for logs and debuggers.

    Raises:
        ConfigError: ``max_workers`` is not a positive integer.
    """

    def __init__(
        self,
        max_workers: int = DEFAULT_MAX_WORKERS,
        *,
        thread_name_prefix: str = "aep-extract",
    ) -> None:
        if (
            isinstance(max_workers, bool)
            or not isinstance(max_workers, int)
            or max_workers < 1
        ):
            raise ConfigError(
                f"max_workers must be an integer >= 1, not {max_workers!r}"
            )
        self._max_workers = max_workers
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=thread_name_prefix
        )

    @property
    def max_workers(self) -> int:
        """How many tasks run at once."""
        return self._max_workers

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` for the next free thread.

        Raises:
            RuntimeError: the scheduler was shut down.
        """
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop accepting tasks and wait for the running ones to finish.

        Args:
            cancel: also cancel the tasks still queued, instead of running them.
        """
        logger.debug("shutting down %r (cancel=%s)", self, cancel)
        self._executor.shutdown(wait=True, cancel_futures=cancel)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self._max_workers})"
