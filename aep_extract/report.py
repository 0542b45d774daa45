"""What the extractor returns: plan results, run reports and dataset status."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Optional

import attrs

from .checkpoints.base import CheckpointStore
from .errors import ExtractionFailed
from .models import Checkpoint, TimeWindow, UnitStatus


def _counts_json(counts: dict[UnitStatus, int]) -> dict[str, int]:
    return {status.value: counts.get(status, 0) for status in UnitStatus}


@attrs.frozen(kw_only=True)
class PlanResult:
    """Outcome of :meth:`Extractor.plan`.

    Attributes:
        batches_found: batches of the dataset created in the window, any status.
        units_planned: work units for the exportable batches.
        units_new: of those, how many were not registered before.
        units_promoted: Waiting units made Pending because their batch succeeded.
        batches_waiting: batches of the dataset (any window) still Waiting for AEP
            to promote them; a later plan looks at them again.
        skipped: batches not copied, by Catalog status (failed, aborted, ...) or
            reason (``superseded``, ``replay``).
    """

    dataset_id: str
    window: TimeWindow
    batches_found: int
    units_planned: int
    units_new: int
    units_promoted: int = 0
    batches_waiting: int = 0
    skipped: dict[str, int] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "datasetId": self.dataset_id,
            "start": self.window.start.isoformat(),
            "end": self.window.end.isoformat(),
            "batchesFound": self.batches_found,
            "unitsPlanned": self.units_planned,
            "unitsNew": self.units_new,
            "unitsPromoted": self.units_promoted,
            "batchesWaiting": self.batches_waiting,
            "skipped": dict(self.skipped),
        }

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {s}" for s, n in sorted(self.skipped.items()))
        promoted = (
            f", {self.units_promoted} no longer waiting" if self.units_promoted else ""
        )
        return (
            f"planned {self.dataset_id} {self.window}: {self.batches_found} batches, "
            f"{self.units_planned} units ({self.units_new} new{promoted})"
            + (f"; skipped {skipped}" if skipped else "")
            + (
                f"; {self.batches_waiting} waiting for AEP to promote them"
                if self.batches_waiting
                else ""
            )
        )


@attrs.frozen(kw_only=True)
class RunReport:
    """Outcome of :meth:`Extractor.execute` or :meth:`Extractor.run`.

    Attributes:
        units: every unit of the dataset by status, read from the store at the end.
        units_completed: units this run completed.
        files_copied: files this run wrote to the sink.
        bytes_copied: bytes this run wrote to the sink.
        files_skipped: files found already copied by an earlier run.
        requests: requests the source sent during this run.
        retries: requests retried during this run (the source's, the store's and
            the sink's).
        throttled: throttled requests during this run: the platform's 429
            answers, and AWS throttles of the store and the sink.
        failures: ``(unit_id, error)`` for every unit attempt that failed in this run.
        stopped: the run was asked to stop before the work was done.
    """

    dataset_id: str
    units: dict[UnitStatus, int]
    units_completed: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    duration_seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    failures: tuple[tuple[str, str], ...] = ()
    stopped: bool = False

    @property
    def throughput_bytes_per_second(self) -> float:
        """Bytes copied per second of the run (0 for a run of no duration)."""
        if self.duration_seconds <= 0:
            return 0.0
        return self.bytes_copied / self.duration_seconds

    def failures_by_unit(self) -> dict[str, tuple[int, str]]:
        """Each failed unit, in order of first failure, with its number of failed
        attempts in this run and its last error."""
        grouped: dict[str, tuple[int, str]] = {}
        for unit, error in self.failures:
            attempts = grouped.get(unit, (0, ""))[0]
            grouped[unit] = (attempts + 1, error)
        return grouped

    @property
    def ok(self) -> bool:
        """Every unit of the dataset is Completed, Skipped or Waiting on AEP
        (see :attr:`UnitStatus.ok <aep_extract.UnitStatus.ok>`)."""
        return all(status.ok for status, count in self.units.items() if count)

    def raise_for_failures(self) -> None:
        """Raise :class:`~aep_extract.errors.ExtractionFailed` unless :attr:`ok`.

        Handy at the end of a Glue job or a notebook cell: the job fails loudly
        while every copied file and all progress stay recorded for the rerun.
        """
        if not self.ok:
            failures = list(self.failures) or [
                (self.dataset_id, f"units left unfinished: {self._unfinished()}")
            ]
            raise ExtractionFailed(failures)

    def _unfinished(self) -> str:
        return ", ".join(
            f"{n} {s.value}" for s, n in self.units.items() if n and not s.ok
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "datasetId": self.dataset_id,
            "ok": self.ok,
            "units": _counts_json(self.units),
            "unitsCompleted": self.units_completed,
            "filesCopied": self.files_copied,
            "bytesCopied": self.bytes_copied,
            "filesSkipped": self.files_skipped,
            "durationSeconds": round(self.duration_seconds, 3),
            "throughputBytesPerSecond": round(self.throughput_bytes_per_second, 1),
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "failures": [{"unit": u, "error": e} for u, e in self.failures],
            "stopped": self.stopped,
        }

    def __str__(self) -> str:
        units = ", ".join(f"{n} {s.value}" for s, n in self.units.items() if n)
        rate = self.throughput_bytes_per_second
        if self.files_copied or self.files_skipped or not self.ok or self.stopped:
            copied = (
                f"copied {self.files_copied} files, {self.bytes_copied} bytes "
                f"in {self.duration_seconds:.1f}s ({rate / 1e6:.1f} MB/s); "
            )
            if self.files_skipped:
                copied += f"{self.files_skipped} found already in the sink; "
        elif self.units.get(UnitStatus.COMPLETED):
            copied = "nothing left to copy: earlier runs copied every file; "
        else:
            copied = "nothing to copy; "
        lines = [
            f"dataset {self.dataset_id}: {units or 'no units'}",
            f"{copied}{self.retries} retries, {self.throttled} throttled",
        ]
        for unit, (attempts, error) in self.failures_by_unit().items():
            tries = f" ({attempts} attempts)" if attempts > 1 else ""
            lines.append(f"FAILED unit {unit}{tries}: {error}")
        waiting = self.units.get(UnitStatus.WAITING, 0)
        if waiting:
            lines.append(
                f"{waiting} unit(s) waiting for AEP to promote their batch; "
                "a later run copies them"
            )
        if self.stopped:
            lines.append("stopped before the work was done; rerun to finish")
        return "\n".join(lines)


LAST_ERRORS_SHOWN = 5
"""How many units :attr:`DatasetStatus.last_errors` holds at most."""

_NOTED = (UnitStatus.WAITING, UnitStatus.SKIPPED)
"""Statuses whose ``error`` is a note (why waiting, why skipped), not an error."""


def _newest_first(units: Iterable[Checkpoint]) -> tuple[Checkpoint, ...]:
    return tuple(sorted(units, key=lambda cp: (-cp.updated_at, cp.unit_id)))


def _note_json(cp: Checkpoint, key: str) -> dict[str, Any]:
    return {
        "unit": cp.unit_id,
        "batchId": cp.unit.batch_id,
        key: cp.error,
        "createdAt": cp.created_at,
        "updatedAt": cp.updated_at,
    }


@attrs.frozen(kw_only=True)
class DatasetStatus:
    """The units of a dataset as the store records them: how many are in each
    status, the files and bytes done, the oldest lease and the last errors.

    ``print(status)`` shows the table of ``aep-extract status``.

    Attributes:
        dataset_id: the dataset.
        units: its units in scope, ordered by unit id.
        window: only units whose batch was created in this window were read;
            None: every unit of the dataset.
        as_of: when the store was read, in epoch seconds by the store's clock;
            leases are judged expired against it.
    """

    dataset_id: str
    units: tuple[Checkpoint, ...]
    window: Optional[TimeWindow] = None
    as_of: float = attrs.field(factory=time.time)

    @classmethod
    def from_store(
        cls,
        store: CheckpointStore,
        dataset_id: str,
        window: Optional[TimeWindow] = None,
    ) -> DatasetStatus:
        """Read the dataset's units from ``store``: all of them, or those whose
        batch was created in ``window``. Needs no source (no AEP credentials)."""
        as_of = store.clock()  # before the read: a lease renewed since is not expired
        units = tuple(
            cp
            for cp in store.list(dataset_id)
            if window is None or window.contains_ms(cp.unit.batch_created_ms)
        )
        return cls(dataset_id=dataset_id, units=units, window=window, as_of=as_of)

    @property
    def counts(self) -> dict[UnitStatus, int]:
        """Units by status, every status present."""
        counts = dict.fromkeys(UnitStatus, 0)
        for cp in self.units:
            counts[cp.status] += 1
        return counts

    def done_by_status(self) -> dict[UnitStatus, tuple[int, int]]:
        """Files and bytes durably in the sink, summed over the units of each
        status (every status present). Pending and Failed units keep the progress
        of their earlier attempts."""
        done = dict.fromkeys(UnitStatus, (0, 0))
        for cp in self.units:
            files, size = done[cp.status]
            done[cp.status] = (files + cp.files_done, size + cp.bytes_done)
        return done

    @property
    def files_done(self) -> int:
        """Files durably in the sink, over every unit in scope."""
        return sum(cp.files_done for cp in self.units)

    @property
    def bytes_done(self) -> int:
        """Bytes durably in the sink, over every unit in scope."""
        return sum(cp.bytes_done for cp in self.units)

    @property
    def ok(self) -> bool:
        """Whether some unit is in scope and every unit is Completed, Skipped or
        Waiting, none Pending, InProgress or Failed (the exit status 0 of
        ``aep-extract status``)."""
        return bool(self.units) and all(cp.status.ok for cp in self.units)

    @property
    def oldest_lease(self) -> Optional[Checkpoint]:
        """The InProgress unit whose lease expires first, or None."""
        leased = [cp for cp in self.units if cp.status is UnitStatus.IN_PROGRESS]
        if not leased:
            return None
        return min(leased, key=lambda cp: (cp.lease_expires_at or 0.0, cp.unit_id))

    def lease_expired(self, checkpoint: Checkpoint) -> bool:
        """Whether an InProgress unit's lease had run out at :attr:`as_of`: its
        worker stopped renewing it (most likely it died) and the next run takes
        the unit over."""
        return (checkpoint.lease_expires_at or 0.0) <= self.as_of

    @property
    def expired_leases(self) -> int:
        """InProgress units whose lease had run out at :attr:`as_of`."""
        return sum(
            1
            for cp in self.units
            if cp.status is UnitStatus.IN_PROGRESS and self.lease_expired(cp)
        )

    def _errored(self) -> list[Checkpoint]:
        return [cp for cp in self.units if cp.error and cp.status not in _NOTED]

    @property
    def last_errors(self) -> tuple[Checkpoint, ...]:
        """The most recently updated units with an error, newest first, at most
        five. A Failed unit, or one whose last attempt failed
        (Pending or InProgress again); the notes of Waiting and Skipped units are
        not errors (see :attr:`waiting` and :attr:`skipped`)."""
        return _newest_first(self._errored())[:LAST_ERRORS_SHOWN]

    @property
    def units_with_errors(self) -> int:
        """How many units in scope carry an error (:attr:`last_errors` shows the
        newest few)."""
        return len(self._errored())

    @property
    def waiting(self) -> tuple[Checkpoint, ...]:
        """Waiting units, newest first; ``error`` holds their note, e.g.
        ``AEP status 'loading'``."""
        return _newest_first(cp for cp in self.units if cp.status is UnitStatus.WAITING)

    @property
    def skipped(self) -> tuple[Checkpoint, ...]:
        """Skipped units, newest first; ``error`` holds why they are not copied."""
        return _newest_first(cp for cp in self.units if cp.status is UnitStatus.SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form. Times are epoch seconds; ``start`` and
        ``end`` are ISO 8601 (null without a window)."""
        lease = self.oldest_lease
        done = self.done_by_status()
        counts = self.counts
        return {
            "datasetId": self.dataset_id,
            "start": None if self.window is None else self.window.start.isoformat(),
            "end": None if self.window is None else self.window.end.isoformat(),
            "asOf": self.as_of,
            "ok": self.ok,
            "counts": _counts_json(counts),
            "filesDone": self.files_done,
            "bytesDone": self.bytes_done,
            "byStatus": {
                status.value: {
                    "units": counts[status],
                    "filesDone": done[status][0],
                    "bytesDone": done[status][1],
                }
                for status in UnitStatus
            },
            "oldestLease": None
            if lease is None
            else {
                "unit": lease.unit_id,
                "owner": lease.owner,
                "attempts": lease.attempts,
                "crashes": lease.crashes,
                "leaseExpiresAt": lease.lease_expires_at,
                "expired": self.lease_expired(lease),
            },
            "expiredLeases": self.expired_leases,
            "lastErrors": [
                {
                    "unit": cp.unit_id,
                    "status": cp.status.value,
                    "attempts": cp.attempts,
                    "crashes": cp.crashes,
                    "updatedAt": cp.updated_at,
                    "error": cp.error,
                }
                for cp in self.last_errors
            ],
            "unitsWithErrors": self.units_with_errors,
            "waiting": [_note_json(cp, "note") for cp in self.waiting],
            "skipped": [_note_json(cp, "reason") for cp in self.skipped],
            "units": [
                {
                    "unit": cp.unit_id,
                    "batchId": cp.unit.batch_id,
                    "offsetRange": cp.unit.offset_range,
                    "status": cp.status.value,
                    "lastProcessedOffset": cp.last_processed_offset,
                    "filesDone": cp.files_done,
                    "bytesDone": cp.bytes_done,
                    "attempts": cp.attempts,
                    "crashes": cp.crashes,
                    "owner": cp.owner,
                    "leaseExpiresAt": cp.lease_expires_at,
                    "error": cp.error,
                    "updatedAt": cp.updated_at,
                }
                for cp in self.units
            ],
        }

    def __str__(self) -> str:
        from ._status_format import format_status

        return format_status(self)
