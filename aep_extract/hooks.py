"""Event hooks: follow a run as it happens (progress bars, metrics, audit logs).

Subclass :class:`ExtractionHooks` and override the events you care about, or pass plain
callables with :class:`CallbackHooks`; give either to ``Extractor(..., hooks=...)``.
Every method takes keyword arguments only and accepts ``**kwargs``, so a hook written
today keeps working when an event gains a field.

Engine events (``unit_*``, ``file_copied``) are called on the thread that runs
:meth:`Extractor.execute`; source events (``retry``, ``throttled``) on whichever worker
thread sent the request, so those must be thread-safe. A hook that raises is logged
and ignored: hooks never break a run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Union

from .models import FileRef, WorkUnit

logger = logging.getLogger(__name__)

EVENTS = (
    "unit_started",
    "unit_listed",
    "unit_finished",
    "unit_failed",
    "file_copied",
    "retry",
    "throttled",
)
"""The names of every event, in the order of a unit's life."""


class ExtractionHooks:
    """Receives the events of a run; every method is a no-op to override."""

    def unit_started(self, *, unit: WorkUnit, attempt: int, **kwargs: Any) -> None:
        """A unit was claimed; ``attempt`` counts from 1."""

    def unit_listed(
        self, *, unit: WorkUnit, files: int, bytes: int, **kwargs: Any
    ) -> None:
        """A claimed unit's files were listed: ``files`` to do, ``bytes`` in all."""

    def unit_finished(
        self, *, unit: WorkUnit, files: int, bytes: int, **kwargs: Any
    ) -> None:
        """A unit is Completed; ``files`` and ``bytes`` copied by this attempt."""

    def unit_failed(
        self, *, unit: WorkUnit, error: str, final: bool, **kwargs: Any
    ) -> None:
        """An attempt at a unit failed; ``final`` when the unit is now Failed (no
        more retries), not back to Pending."""

    def file_copied(
        self,
        *,
        unit: WorkUnit,
        file: FileRef,
        key: str,
        size: int,
        fresh: bool,
        **kwargs: Any,
    ) -> None:
        """A file is in the sink at ``key``; ``fresh`` when this run wrote it, False
        when an earlier run had. With a transform, ``key`` is its first output's
        and the keyword ``outputs`` holds them all
        (:class:`~aep_extract.transforms.TransformOutput`); ``size`` is always the
        source file's."""

    def retry(self, *, reason: str, wait: float, **kwargs: Any) -> None:
        """A request (of the source, the store or the sink) failed and is retried
        after ``wait`` seconds."""

    def throttled(self, *, retry_after: Optional[float], **kwargs: Any) -> None:
        """The platform answered 429, or AWS throttled a request of the store or
        the sink; ``retry_after`` seconds if the platform said so."""


class CallbackHooks(ExtractionHooks):
    """Hooks made of plain callables, one per event, each called with keywords.

    Example:
        >>> from aep_extract import CallbackHooks
        >>> seen = []
        >>> hooks = CallbackHooks(throttled=lambda **kw: seen.append(kw))
        >>> hooks.throttled(retry_after=2.0)
        >>> seen
        [{'retry_after': 2.0}]

    Raises:
        TypeError: an unknown event name.
    """

    def __init__(self, **callbacks: Callable[..., Any]) -> None:
        unknown = sorted(set(callbacks) - set(EVENTS))
        if unknown:
            raise TypeError(f"unknown hook event(s): {', '.join(unknown)}")
        self._callbacks = dict(callbacks)

    def __getattribute__(self, name: str) -> Any:
        if name in EVENTS:
            callback = object.__getattribute__(self, "_callbacks").get(name)
            if callback is not None:
                return callback
        return object.__getattribute__(self, name)


HooksLike = Union[
    ExtractionHooks,
    Mapping[str, Callable[..., Any]],
    Iterable[Union[ExtractionHooks, Mapping[str, Callable[..., Any]]]],
]
"""What ``Extractor(hooks=...)`` accepts: a hooks object, a mapping of event name to
callable, or a list of either."""


class HookDispatcher(ExtractionHooks):
    """Calls several hooks in order; logs and swallows whatever one of them raises.

    Args:
        hooks: the hooks to call (see :data:`HooksLike`); None for none.
    """

    def __init__(self, hooks: Optional[HooksLike] = None) -> None:
        self.hooks: list[ExtractionHooks] = _flatten(hooks)

    def with_extra(self, *more: ExtractionHooks) -> HookDispatcher:
        """A dispatcher calling these hooks and then ``more``."""
        combined = HookDispatcher()
        combined.hooks = [*self.hooks, *more]
        return combined

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def _emit(self, event: str, **kwargs: Any) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, event)(**kwargs)
            except Exception:
                logger.exception("hook %r failed on %s; ignored", hook, event)

    def unit_started(self, **kwargs: Any) -> None:
        self._emit("unit_started", **kwargs)

    def unit_listed(self, **kwargs: Any) -> None:
        self._emit("unit_listed", **kwargs)

    def unit_finished(self, **kwargs: Any) -> None:
        self._emit("unit_finished", **kwargs)

    def unit_failed(self, **kwargs: Any) -> None:
        self._emit("unit_failed", **kwargs)

    def file_copied(self, **kwargs: Any) -> None:
        self._emit("file_copied", **kwargs)

    def retry(self, **kwargs: Any) -> None:
        self._emit("retry", **kwargs)

    def throttled(self, **kwargs: Any) -> None:
        self._emit("throttled", **kwargs)


def _flatten(hooks: Optional[HooksLike]) -> list[ExtractionHooks]:
    if hooks is None:
        return []
    if isinstance(hooks, HookDispatcher):
        return list(hooks.hooks)
    if isinstance(hooks, ExtractionHooks):
        return [hooks]
    if isinstance(hooks, Mapping):
        return [CallbackHooks(**hooks)]
    flat: list[ExtractionHooks] = []
    for item in hooks:
        flat.extend(_flatten(item))
    return flat
