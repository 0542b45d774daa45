"""Value objects of every layer: windows, batches, files, units, checkpoints."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import attrs

from . import _validators as v
from .errors import ConfigError

EXPORTABLE_BATCH_STATUSES = frozenset({"success", "active"})
"""Catalog batch statuses whose files are promoted data to copy."""

FAILED_BATCH_STATUSES = frozenset({"failed", "failure"})
"""Catalog batch statuses of batches that failed ingestion (files under ``/failed``)."""

PENDING_BATCH_STATUSES = frozenset(
    {"loading", "loaded", "queued", "processing", "staging", "staged", "retrying"}
)
"""Catalog batch statuses of batches not yet promoted: they may become exportable."""


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp with an offset or ``Z`` (also on Python 3.9).

    Raises:
        ConfigError: the text is not ISO 8601 or has no offset (a naive time).
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"not an ISO 8601 timestamp: {text!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ConfigError(f"timestamp {text!r} has no UTC offset; add 'Z' or '+HH:MM'")
    return parsed


def to_moment(value: str | datetime) -> datetime:
    """An aware datetime from an ISO 8601 text (see :func:`parse_timestamp`) or an
    aware datetime.

    Raises:
        ConfigError: not ISO 8601, or a naive time.
    """
    if not isinstance(value, datetime):
        return parse_timestamp(value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(
            f"{value.isoformat()} has no UTC offset; use an aware datetime"
        )
    return value


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return int((moment - _EPOCH) // timedelta(milliseconds=1))


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime of an epoch-milliseconds value."""
    return _EPOCH + timedelta(milliseconds=ms)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _aware(_: Any, attribute: attrs.Attribute[Any], value: datetime) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{attribute.name} must be a timezone-aware datetime")


@attrs.frozen
class TimeWindow:
    """A half-open window ``[start, end)`` on a batch's ``created`` time.

    Raises:
        ConfigError: a naive datetime, or ``start`` not before ``end``.
    """

    start: datetime = attrs.field(validator=_aware)
    end: datetime = attrs.field(validator=_aware)

    def __attrs_post_init__(self) -> None:
        if self.start >= self.end:
            raise ConfigError(
                f"window start {self.start.isoformat()} is not before "
                f"end {self.end.isoformat()}"
            )

    @classmethod
    def parse(cls, start: str | datetime, end: str | datetime) -> TimeWindow:
        """Build a window from ISO 8601 strings (with offset or ``Z``) or datetimes."""
        return cls(to_moment(start), to_moment(end))

    @property
    def start_ms(self) -> int:
        """Window start in epoch milliseconds (inclusive)."""
        return to_epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        """Window end in epoch milliseconds (exclusive)."""
        return to_epoch_ms(self.end)

    def contains_ms(self, ms: int) -> bool:
        """Whether an epoch-milliseconds instant lies in ``[start, end)``."""
        return self.start_ms <= ms < self.end_ms

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@attrs.frozen(kw_only=True)
class Batch:
    """One Catalog batch of a dataset."""

    batch_id: str
    dataset_id: str
    status: str
    created_ms: int
    errors: tuple[dict[str, Any], ...] = ()
    successors: tuple[str, ...] = ()
    """Batches that replace this one (``tags.acp_successor``)."""
    predecessors: tuple[str, ...] = ()
    """Batches this one replays (``replay.predecessors``)."""
    replay_reason: Optional[str] = None
    """Why it replays them (``replay.reason``, e.g. ``consolidation``)."""
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def created(self) -> datetime:
        """The batch's ``created`` time as an aware UTC datetime."""
        return from_epoch_ms(self.created_ms)


@attrs.frozen(kw_only=True)
class FileRef:
    """One physical file of a batch, as the Data Access API lists it.

    ``dataset_file_id`` is the (leaf) dataSetFileId whose ``/files/{id}?path=`` serves
    the bytes; ``length`` is the byte count the API reported.
    """

    dataset_file_id: str
    name: str
    length: int = attrs.field(validator=v.ge(0))
    url: str = attrs.field(default="", eq=False, repr=False)

    @property
    def sort_key(self) -> tuple[str, str]:
        """Deterministic order of a batch's files (dataSetFileId, then name)."""
        return (self.dataset_file_id, self.name)


WHOLE_BATCH = "0-*"
"""The OffsetRange of a unit that covers every file of its batch."""


@attrs.frozen(kw_only=True)
class WorkUnit:
    """The unit of work: all files of one batch, or an offset range of them.

    ``first_offset``/``last_offset`` bound the file offsets (inclusive);
    ``last_offset=None`` means "to the end of the batch".
    """

    dataset_id: str
    batch_id: str
    batch_created_ms: int
    first_offset: int = attrs.field(default=0, validator=v.ge(0))
    last_offset: Optional[int] = None

    @property
    def offset_range(self) -> str:
        """The OffsetRange attribute, ``"0-*"`` for a whole batch, else ``"a-b"``."""
        end = "*" if self.last_offset is None else str(self.last_offset)
        return f"{self.first_offset}-{end}"

    @property
    def unit_id(self) -> str:
        """Stable identifier, the batch id plus the range for a split batch."""
        if self.offset_range == WHOLE_BATCH:
            return self.batch_id
        return f"{self.batch_id}#{self.offset_range}"

    def covers(self, offset: int) -> bool:
        """Whether a file offset belongs to this unit."""
        return offset >= self.first_offset and (
            self.last_offset is None or offset <= self.last_offset
        )

    @staticmethod
    def parse_offset_range(text: str) -> tuple[int, Optional[int]]:
        """Inverse of :attr:`offset_range`."""
        first, _, last = text.partition("-")
        return int(first), (None if last == "*" else int(last))


class UnitStatus(str, enum.Enum):
    """Lifecycle of a work unit in the checkpoint store."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    WAITING = "Waiting"
    """AEP has not promoted the batch yet (``loading``, ``processing`` ...);
    every plan looks at it again and makes it Pending once it succeeds."""
    SKIPPED = "Skipped"
    """Not to be copied, for the reason in ``error`` (superseded, a replay of
    batches already copied, or the batch ended in a non-exportable status)."""

    def __str__(self) -> str:
        return self.value

    @property
    def ok(self) -> bool:
        """Whether a unit in this status is settled for now (Completed, Skipped,
        or Waiting on AEP): nothing failed and nothing is left to do. A run that
        leaves every unit so ends well (exit 0)."""
        return self in (UnitStatus.COMPLETED, UnitStatus.SKIPPED, UnitStatus.WAITING)


NOTHING_DONE = -1
"""LastProcessedOffset of a unit that has no file durably in the sink yet."""


@attrs.frozen(kw_only=True)
class Checkpoint:
    """The recorded state of one work unit.

    ``last_processed_offset`` means every file of the unit at or below that offset is
    durably in the sink; it only moves forward. ``attempts`` counts the attempts that
    failed with an error, ``crashes`` the times the unit's lease was taken over after
    it expired (its worker died or hung). ``version`` increases with every write and
    fences concurrent writers. Times are epoch seconds. ``progress`` is the engine's
    record of the unit's files copied in parts (opaque JSON text: their uploads and
    the parts already in the sink), kept until the unit completes so that the next
    owner resumes them.
    """

    unit: WorkUnit
    status: UnitStatus = UnitStatus.PENDING
    last_processed_offset: int = NOTHING_DONE
    owner: Optional[str] = None
    lease_expires_at: Optional[float] = None
    attempts: int = 0
    crashes: int = 0
    error: Optional[str] = None
    files_done: int = 0
    bytes_done: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 0
    progress: Optional[str] = attrs.field(default=None, repr=False)

    @property
    def unit_id(self) -> str:
        """Shortcut for ``unit.unit_id``."""
        return self.unit.unit_id

    def claimable(self, now: float) -> bool:
        """Pending, or InProgress under a lease that has expired."""
        if self.status is UnitStatus.PENDING:
            return True
        return (
            self.status is UnitStatus.IN_PROGRESS
            and (self.lease_expires_at or 0.0) <= now
        )


@attrs.frozen(kw_only=True)
class Lease:
    """Proof of ownership of a unit, returned by ``claim`` and every fenced write."""

    checkpoint: Checkpoint
    owner: str

    @property
    def unit(self) -> WorkUnit:
        """The leased unit."""
        return self.checkpoint.unit

    @property
    def expires_at(self) -> float:
        """Epoch seconds after which another worker may take the unit over."""
        return self.checkpoint.lease_expires_at or 0.0


@attrs.frozen(kw_only=True)
class ObjectInfo:
    """What a sink knows of a stored object.

    ``metadata`` is what the object was written with (``open_write(metadata=...)``);
    None when the sink cannot store metadata.
    """

    key: str
    size: int
    metadata: Optional[Mapping[str, str]] = attrs.field(default=None, hash=False)


@attrs.frozen(kw_only=True)
class TransformOutput:
    """One output object of a transform, as a manifest records it.

    Attributes:
        key: where it is in the sink.
        size: its length in bytes.
        sha256: the hex SHA-256 of its bytes.
    """

    key: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The manifest entry."""
        return {"key": self.key, "size": self.size, "sha256": self.sha256}


@attrs.frozen(kw_only=True)
class FileCopy:
    """One file as recorded in a batch manifest: copied byte for byte to ``key``,
    or, with a transform, turned into ``outputs``.

    Attributes:
        offset: the file's place in the batch listing.
        dataset_file_id: its dataSetFileId.
        name: its name.
        key: where the copy is (for a transformed file, the key it would have had,
            from which its outputs' keys derive).
        size: the source file's length.
        sha256: the hex SHA-256 of the copy; None for a transformed file (its
            outputs carry theirs).
        transform: the spec of the transform that made ``outputs``, or None.
        outputs: the transform's outputs, in order.
    """

    offset: int
    dataset_file_id: str
    name: str
    key: str
    size: int
    sha256: Optional[str]
    transform: Optional[str] = None
    outputs: tuple[TransformOutput, ...] = ()

    @property
    def objects(self) -> tuple[TransformOutput, ...]:
        """What the file put in the sink: its outputs, or the copy itself."""
        if self.transform is not None:
            return self.outputs
        return (
            TransformOutput(key=self.key, size=self.size, sha256=self.sha256 or ""),
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest entry."""
        entry: dict[str, Any] = {
            "offset": self.offset,
            "dataSetFileId": self.dataset_file_id,
            "name": self.name,
            "size": self.size,
        }
        if self.transform is None:
            entry.update(key=self.key, sha256=self.sha256)
        else:
            entry.update(
                transform=self.transform,
                outputs=[output.to_json() for output in self.outputs],
            )
        return entry


def manifest_objects(manifest: Any) -> list[TransformOutput]:
    """Every object a parsed manifest names: each copied file, or each output of
    a transformed one.

    Raises:
        KeyError, TypeError, ValueError: the manifest is not of this shape.
    """
    files = manifest["files"]
    if not isinstance(files, list):
        raise TypeError("'files' is not a list")
    objects: list[TransformOutput] = []
    for entry in files:
        named = entry["outputs"] if "transform" in entry else [entry]
        if not isinstance(named, list):
            raise TypeError("'outputs' is not a list")
        objects += [
            TransformOutput(
                key=str(item["key"]), size=int(item["size"]), sha256=str(item["sha256"])
            )
            for item in named
        ]
    return objects
