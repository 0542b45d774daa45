"""The Scheduler interface: how copy tasks run at once."""

from __future__ import annotations

import abc
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


_Self = TypeVar("_Self", bound="Scheduler")


class Scheduler(abc.ABC):
    """Runs tasks and hands back futures.

    The extractor keeps at most :attr:`max_workers` tasks submitted at a time, so a
    scheduler need not queue more than that.
    """

    @property
    @abc.abstractmethod
    def max_workers(self) -> int:
        """How many tasks run at once."""

    @abc.abstractmethod
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``."""

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop accepting tasks; with ``cancel``, drop those not yet started."""

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.shutdown(cancel=exc_type is not None)
