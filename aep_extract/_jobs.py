"""Per-unit bookkeeping of a run: files left, files in, how far to advance."""

from __future__ import annotations

from collections import deque
from typing import Optional

import attrs

from .models import FileCopy, FileRef, Lease


@attrs.define
class UnitJob:
    """One claimed unit while this process works on it.

    Files complete in any order; :meth:`committable` gives the highest offset below
    which every file is in, which is what LastProcessedOffset may move to.
    """

    lease: Lease
    files: dict[int, FileRef] = attrs.field(factory=dict)
    keys: dict[int, str] = attrs.field(factory=dict)
    listed: bool = False
    todo: deque[int] = attrs.field(factory=deque)
    """Offsets of the files still to submit."""
    copies: dict[int, FileCopy] = attrs.field(factory=dict)
    fresh: dict[int, int] = attrs.field(factory=dict)
    """Offsets copied by this run, with their sizes (for the unit's done counters)."""
    in_flight: int = 0
    error: Optional[str] = None
    final: bool = False
    """The error can never heal (an unsafe or colliding key): fail the unit now."""
    lost: bool = False
    manifest_started: bool = False

    @property
    def unit_id(self) -> str:
        """The leased unit's id."""
        return self.lease.unit.unit_id

    def load(self, listing: list[tuple[FileRef, str]]) -> None:
        """Take the batch listing with the files' keys: queue the unit's range."""
        for offset, (file, key) in enumerate(listing):
            if self.lease.unit.covers(offset):
                self.files[offset] = file
                self.keys[offset] = key
        self.listed = True
        self.todo.extend(self.files)

    @property
    def first_offset(self) -> int:
        """The unit's first file offset."""
        return self.lease.unit.first_offset

    def committable(self) -> int:
        """Highest offset such that every file of the unit up to it is in."""
        offset = max(self.lease.checkpoint.last_processed_offset, self.first_offset - 1)
        while offset + 1 in self.copies:
            offset += 1
        return offset

    def fresh_between(self, low: int, high: int) -> tuple[int, int]:
        """Files and bytes this run copied at offsets in ``(low, high]``."""
        sizes = [size for o, size in self.fresh.items() if low < o <= high]
        return len(sizes), sum(sizes)

    @property
    def finished_copying(self) -> bool:
        """Every file of the unit is in the sink."""
        return self.listed and len(self.copies) == len(self.files)

    @property
    def active(self) -> bool:
        """The job still does work (not failed, not lost)."""
        return self.error is None and not self.lost
