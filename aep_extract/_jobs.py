"""Per-unit bookkeeping of a run: files left, files in, how far to advance, and the
parts of files copied in parallel with the progress record that resumes them."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Optional

import attrs

from .models import FileCopy, FileRef, Lease
from .sinks._parts import Part, part_count
from .sinks.base import PartWriter

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 5.0
"""A unit's progress record is written at most once per this many seconds, or
sooner once a file's window of parts (``parts_per_file``) has completed since the
last write; renewing the lease rides on the same write."""

MAX_RECORDED_PARTS = 2000
"""Most parts one progress record lists (under 100 bytes each, so a record stays
under 200 KB, far below DynamoDB's 400 KB item limit); parts beyond are copied again
after a crash."""


@attrs.define
class RecordedFile:
    """A file in parts as a progress record keeps it: enough to reopen its upload."""

    offset: int
    key: str
    token: str
    size: int
    part_size: int
    parts: dict[int, str]
    """Checksums of the parts durably in the sink, by part number."""

    def to_json(self) -> dict[str, Any]:
        """The record's entry: short names, since DynamoDB bills by the byte."""
        return {
            "o": self.offset,
            "k": self.key,
            "t": self.token,
            "s": self.size,
            "p": self.part_size,
            "d": {str(number): value for number, value in self.parts.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> RecordedFile:
        """Inverse of :meth:`to_json`.

        Raises:
            KeyError, TypeError, ValueError, AttributeError: not such an entry.
        """
        return cls(
            offset=int(data["o"]),
            key=str(data["k"]),
            token=str(data["t"]),
            size=int(data["s"]),
            part_size=int(data["p"]),
            parts={int(number): str(value) for number, value in data["d"].items()},
        )


def parse_progress(text: Optional[str]) -> dict[int, RecordedFile]:
    """The files of a progress record by offset; an unreadable record is ignored
    (its files are copied afresh)."""
    if not text:
        return {}
    try:
        files = [RecordedFile.from_json(item) for item in json.loads(text)["files"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("ignoring an unreadable progress record: %s", exc)
        return {}
    return {file.offset: file for file in files}


def render_progress(files: Iterable[RecordedFile]) -> Optional[str]:
    """The progress record of ``files`` (None when there is none), listing at most
    :data:`MAX_RECORDED_PARTS` parts."""
    room = MAX_RECORDED_PARTS
    entries = []
    for file in sorted(files, key=lambda f: f.offset):
        numbers = sorted(file.parts)[:room]
        room -= len(numbers)
        kept = attrs.evolve(file, parts={n: file.parts[n] for n in numbers})
        entries.append(kept.to_json())
    if not entries:
        return None
    return json.dumps({"v": 1, "files": entries}, separators=(",", ":"))


class OrderedHasher:
    """The SHA-256 of a file whose parts arrive in any order: a part is hashed once
    every part before it has been; until then its bytes wait here. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._digest = hashlib.sha256()
        self._next = 1
        self._waiting: dict[int, Part] = {}

    def add(self, number: int, data: Part) -> None:
        """Take part ``number`` (from 1)."""
        with self._lock:
            self._waiting[number] = data
            while self._next in self._waiting:
                self._digest.update(self._waiting.pop(self._next))
                self._next += 1

    @property
    def waiting(self) -> int:
        """Parts held until the ones before them arrive."""
        return len(self._waiting)

    def hexdigest(self) -> str:
        """The hex SHA-256 of every part taken."""
        with self._lock:
            return self._digest.hexdigest()


@attrs.define(eq=False)
class PartedFile:
    """A file copied as parts in parallel, while this process works on it."""

    offset: int
    file: FileRef
    key: str
    writer: PartWriter
    part_size: int
    done: dict[int, str]
    """Checksums of the parts in the sink, by number (resumed ones included)."""
    hasher: Optional[OrderedHasher]
    """None when parts were kept from an earlier run: the SHA-256 is then read
    back from the sink once the object is complete."""
    todo: deque[int] = attrs.field(factory=deque)
    in_flight: set[int] = attrs.field(factory=set)
    completing: bool = False

    def __attrs_post_init__(self) -> None:
        count = part_count(self.file.length, self.part_size)
        self.todo.extend(n for n in range(1, count + 1) if n not in self.done)

    @property
    def in_memory(self) -> int:
        """Parts whose bytes this process holds: in flight, or waiting to be hashed."""
        waiting = self.hasher.waiting if self.hasher is not None else 0
        return len(self.in_flight) + waiting

    @property
    def all_written(self) -> bool:
        """Every part is in the sink."""
        return not self.todo and not self.in_flight

    def record(self) -> RecordedFile:
        """What a progress record keeps of the file."""
        return RecordedFile(
            offset=self.offset,
            key=self.key,
            token=self.writer.token,
            size=self.file.length,
            part_size=self.part_size,
            parts=dict(self.done),
        )


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
    parted: dict[int, PartedFile] = attrs.field(factory=dict)
    """Files being copied in parts, by offset."""
    resume: dict[int, RecordedFile] = attrs.field(factory=dict)
    """Files in parts recorded by an earlier run and not yet restarted."""
    parts_unsaved: int = 0
    """Parts written since the progress record was last saved."""
    progress_dirty: bool = False
    progress_saved_at: float = 0.0

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

    def progress(self) -> Optional[str]:
        """The unit's progress record now: files in parts, started or not."""
        files = {offset: f.record() for offset, f in self.parted.items()}
        for offset, recorded in self.resume.items():
            files.setdefault(offset, recorded)
        return render_progress(files.values())

    def stop_parts(self) -> None:
        """Submit no more parts (an error, an abort)."""
        for parted in self.parted.values():
            parted.todo.clear()

    def done_between(self, low: int, high: int) -> tuple[int, int]:
        """Files and bytes in the sink at offsets in ``(low, high]``: copied by this
        run or found there (written by a worker that died before recording them);
        none of them was counted in the unit's done counters before."""
        sizes = [c.size for o, c in self.copies.items() if low < o <= high]
        return len(sizes), sum(sizes)

    @property
    def finished_copying(self) -> bool:
        """Every file of the unit is in the sink."""
        return self.listed and len(self.copies) == len(self.files)

    @property
    def active(self) -> bool:
        """The job still does work (not failed, not lost)."""
        return self.error is None and not self.lost
