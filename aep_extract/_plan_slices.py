"""Listing a window's batches in time slices, several slices at once.

One Catalog listing pages through a window in sequence, a page of 100 batches per
request: 100,000 batches at 200 ms a page take over three minutes. So the window
``[start, end)`` (epoch ms) is cut into as many equal slices as there are threads,
each listed by its own ``list_batches`` call. Slices are half-open like the window:
a batch created exactly on an edge belongs to the slice that starts there, and to no
other, so no batch is lost or listed twice.

Slices adapt to where the batches are. A thread that has finished its slices while
others still list waits; the next busy thread to finish a group of batches then
gives it half of what is left of its own slice. The cut falls on the millisecond of
the group's newest batch: a listing is oldest first, so every batch created before
that millisecond is in hand, and those created in it are listed again by the slice
that now starts there. A group created within one millisecond is never cut.

Batches reach the handler in groups of at most ``group_size``, from the thread that
listed them, and nothing keeps them: memory holds a group per thread, not the
window.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator, Sequence
from typing import Callable, Optional

import attrs

from .models import Batch, TimeWindow, from_epoch_ms

PLAN_THREADS = 8
"""Slices of a window listed at once."""

GROUP_SIZE = 500
"""Batches handed on together (five Catalog pages): the planner's unit of memory,
of store lookups and of registration, and how often a slice may be split."""


@attrs.frozen
class Slice:
    """A part ``[start_ms, end_ms)`` of a window, listed on its own."""

    start_ms: int
    end_ms: int

    @property
    def window(self) -> TimeWindow:
        """The slice as a :class:`~aep_extract.models.TimeWindow`."""
        return TimeWindow(from_epoch_ms(self.start_ms), from_epoch_ms(self.end_ms))


def even_slices(start_ms: int, end_ms: int, count: int) -> list[Slice]:
    """``[start_ms, end_ms)`` cut into ``count`` slices of (nearly) equal length,
    fewer if the window has fewer milliseconds."""
    count = max(1, min(count, end_ms - start_ms))
    edges = [start_ms + (end_ms - start_ms) * n // count for n in range(count + 1)]
    return [Slice(a, b) for a, b in zip(edges, edges[1:])]


class SliceLister:
    """Lists a window slice by slice on ``threads`` threads; see the module docstring.

    Args:
        list_slice: the batches of a slice, oldest first (e.g. a bound
            ``AepSource.list_batches``).
        handle: takes each group of batches, on the thread that listed them.
        threads: slices listed at once.
        group_size: most batches in one group.
    """

    def __init__(
        self,
        list_slice: Callable[[Slice], Iterator[Batch]],
        handle: Callable[[list[Batch]], None],
        *,
        threads: int = PLAN_THREADS,
        group_size: int = GROUP_SIZE,
    ) -> None:
        self._list_slice = list_slice
        self._handle = handle
        self._threads = threads
        self._group_size = group_size
        self._changed = threading.Condition()
        self._todo: list[Slice] = []
        self._busy = self._waiting = 0
        self._error: Optional[BaseException] = None

    def run(self, start_ms: int, end_ms: int) -> None:
        """List ``[start_ms, end_ms)``; returns when every group has been handled.

        Raises:
            Exception: the first error of a listing or of ``handle``; the other
                threads stop at the end of their group.
        """
        self._todo = even_slices(start_ms, end_ms, self._threads)[::-1]
        if self._threads == 1:
            self._work()
        else:
            # Each thread runs in a copy of this context: the run it belongs to.
            threads = [
                threading.Thread(
                    target=contextvars.copy_context().run,
                    args=(self._work,),
                    name=f"aep-plan-{n}",
                )
                for n in range(self._threads)
            ]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    thread.join()
            except BaseException as exc:  # e.g. Ctrl-C: stop the others, then go
                self._fail(exc)
                raise
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while (piece := self._next()) is not None:
            try:
                while piece is not None:
                    piece = self._list(piece)
            except BaseException as exc:  # handed to run(), which raises it
                self._fail(exc)
            finally:
                with self._changed:
                    self._busy -= 1
                    self._changed.notify_all()

    def _next(self) -> Optional[Slice]:
        """The next slice to list; None once all are listed (or one failed)."""
        with self._changed:
            self._waiting += 1
            while not self._todo and self._busy and self._error is None:
                self._changed.wait()
            self._waiting -= 1
            if self._error is not None or not self._todo:
                return None
            self._busy += 1
            return self._todo.pop()

    def _list(self, piece: Slice) -> Optional[Slice]:
        """List a slice, handing on its groups; returns the part of it left to
        list when it was split, else None."""
        listing = self._list_slice(piece)
        group: list[Batch] = []
        newest = piece.start_ms  # created time of the newest batch seen so far
        ordered = True  # only a listing seen oldest first may be cut
        try:
            for batch in listing:
                ordered = ordered and batch.created_ms >= newest
                newest = max(newest, batch.created_ms)
                group.append(batch)
                if len(group) < self._group_size:
                    continue
                if self._error is not None:
                    return None  # another slice failed: stop here
                rest = self._split(piece, group) if ordered else None
                if rest is not None:
                    return rest
                self._handle(group)
                group = []
        finally:
            close = getattr(listing, "close", None)
            if close is not None:
                close()
        if group:
            self._handle(group)
        return None

    def _split(self, piece: Slice, group: Sequence[Batch]) -> Optional[Slice]:
        """If a thread waits for work, give it the second half of what is left of
        ``piece``, hand on the batches of ``group`` before the cut and return the
        first half; else None."""
        cut = group[-1].created_ms
        middle = cut + (piece.end_ms - cut) // 2
        if group[0].created_ms == cut or middle == cut:
            return None  # one millisecond: a cut there would take nothing off
        with self._changed:
            if not self._waiting or self._todo:
                return None
            self._todo.append(Slice(middle, piece.end_ms))
            self._changed.notify()
        self._handle([batch for batch in group if batch.created_ms < cut])
        return Slice(cut, middle)

    def _fail(self, exc: BaseException) -> None:
        with self._changed:
            if self._error is None:
                self._error = exc
            self._changed.notify_all()
