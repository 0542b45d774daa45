"""What the extractor returns: plan results, run reports and dataset status."""

from __future__ import annotations

from typing import Any

import attrs

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
        skipped: batches not copied, by Catalog status (failed, loading, ...).
    """

    dataset_id: str
    window: TimeWindow
    batches_found: int
    units_planned: int
    units_new: int
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
            "skipped": dict(self.skipped),
        }

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {s}" for s, n in sorted(self.skipped.items()))
        return (
            f"planned {self.dataset_id} {self.window}: {self.batches_found} batches, "
            f"{self.units_planned} units ({self.units_new} new)"
            + (f"; skipped {skipped}" if skipped else "")
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
        retries: requests the source retried during this run.
        throttled: 429 answers the source received during this run.
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
        """Every unit of the dataset is Completed."""
        return sum(self.units.values()) == self.units.get(UnitStatus.COMPLETED, 0)

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
            f"{n} {s.value}"
            for s, n in self.units.items()
            if n and s is not UnitStatus.COMPLETED
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
        lines = [
            f"dataset {self.dataset_id}: {units or 'no units'}",
            f"copied {self.files_copied} files, {self.bytes_copied} bytes "
            f"in {self.duration_seconds:.1f}s ({rate / 1e6:.1f} MB/s); "
            f"{self.files_skipped} already done; {self.retries} retries, "
            f"{self.throttled} throttled",
        ]
        for unit, (attempts, error) in self.failures_by_unit().items():
            tries = f" ({attempts} attempts)" if attempts > 1 else ""
            lines.append(f"FAILED unit {unit}{tries}: {error}")
        if self.stopped:
            lines.append("stopped before the work was done; rerun to finish")
        return "\n".join(lines)


@attrs.frozen(kw_only=True)
class DatasetStatus:
    """Every unit of a dataset and how many are in each status."""

    dataset_id: str
    units: tuple[Checkpoint, ...]

    @property
    def counts(self) -> dict[UnitStatus, int]:
        """Units by status, every status present."""
        counts = dict.fromkeys(UnitStatus, 0)
        for cp in self.units:
            counts[cp.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "datasetId": self.dataset_id,
            "counts": _counts_json(self.counts),
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
                    "owner": cp.owner,
                    "leaseExpiresAt": cp.lease_expires_at,
                    "error": cp.error,
                    "updatedAt": cp.updated_at,
                }
                for cp in self.units
            ],
        }
