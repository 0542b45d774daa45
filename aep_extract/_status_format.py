"""The readable text of ``aep-extract status``: :func:`format_status`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .models import Checkpoint, UnitStatus

if TYPE_CHECKING:
    from .report import DatasetStatus

NOTES_SHOWN = 5
"""Waiting and Skipped units listed at most, each, without ``--units``."""

ERROR_WIDTH = 100
"""Characters of an error or note shown in a table cell (JSON has the full text)."""

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``6.1 MiB`` ... (powers of 1024)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def utc(epoch_seconds: float) -> str:
    """An epoch-seconds time as ISO 8601 UTC to the second, ``...Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def duration(seconds: float) -> str:
    """A rough length of time: ``42s``, ``4m 10s``, ``3h 5m``, ``2d 4h``."""
    whole = int(abs(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _one_line(text: str | None, width: int = ERROR_WIDTH) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Rows as aligned columns (two spaces apart); columns in ``right`` are
    right-aligned (numbers)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


def _headline(status: DatasetStatus) -> str:
    scope = (
        "every batch"
        if status.window is None
        else f"batches created in {status.window}"
    )
    present = ", ".join(f"{n} {s.value}" for s, n in status.counts.items() if n)
    return (
        f"dataset {status.dataset_id} ({scope}) as of {utc(status.as_of)}: "
        f"{len(status.units)} units" + (f": {present}" if present else "")
    )


def _by_status(status: DatasetStatus) -> list[str]:
    done = status.done_by_status()
    rows = [("STATUS", "UNITS", "FILES DONE", "BYTES DONE")]
    rows += [
        (s.value, str(n), str(done[s][0]), human_bytes(done[s][1]))
        for s, n in status.counts.items()
    ]
    rows.append(
        (
            "total",
            str(len(status.units)),
            str(status.files_done),
            human_bytes(status.bytes_done),
        )
    )
    return _table(rows, right=(1, 2, 3))


def _lease_lines(status: DatasetStatus) -> list[str]:
    lease = status.oldest_lease
    if lease is None:
        return ["oldest lease: none (no unit InProgress)"]
    expires = lease.lease_expires_at or 0.0
    expired = status.lease_expired(lease)
    if expired:
        when = f"expired {utc(expires)} ({duration(status.as_of - expires)} ago)"
    else:
        when = f"expires {utc(expires)} (in {duration(expires - status.as_of)})"
    crashes = ""
    if lease.crashes:  # earlier workers of the unit died or hung
        crashes = f", {lease.crashes} crash{'es' if lease.crashes > 1 else ''}"
    lines = [
        f"oldest lease: unit {lease.unit_id} of {lease.owner} "
        f"(attempt {lease.attempts + 1}{crashes}), {when}; "
        f"{status.counts[UnitStatus.IN_PROGRESS]} unit(s) InProgress, "
        f"{status.expired_leases} lease(s) expired"
    ]
    if expired:
        lines.append(
            "  its worker stopped renewing it (likely dead): "
            "the next run takes the unit over"
        )
    return lines


def _notes(title: str, units: tuple[Checkpoint, ...], header: str) -> list[str]:
    if not units:
        return []
    rows = [("UNIT", header, "SINCE", "UPDATED")]
    rows += [
        (cp.unit_id, _one_line(cp.error), utc(cp.created_at), utc(cp.updated_at))
        for cp in units[:NOTES_SHOWN]
    ]
    lines = [title, *_indent(_table(rows))]
    if len(units) > NOTES_SHOWN:
        lines.append(f"  ... and {len(units) - NOTES_SHOWN} more (--units lists all)")
    return lines


def _errors(status: DatasetStatus) -> list[str]:
    errors = status.last_errors
    if not errors:
        return ["last errors: none"]
    total = status.units_with_errors
    rows = [("UPDATED", "UNIT", "STATUS", "ATTEMPTS", "CRASHES", "ERROR")]
    rows += [
        (
            utc(cp.updated_at),
            cp.unit_id,
            cp.status.value,
            str(cp.attempts),
            str(cp.crashes),
            _one_line(cp.error),
        )
        for cp in errors
    ]
    shown = f"{len(errors)} of {total}" if total > len(errors) else str(total)
    title = f"last errors ({shown} unit(s) with an error, newest first):"
    return [title, *_indent(_table(rows, right=(3, 4)))]


def _unit_rows(status: DatasetStatus) -> list[str]:
    header = (
        *("UNIT", "STATUS", "LAST OFFSET", "FILES", "BYTES"),
        *("ATTEMPTS", "CRASHES", "NOTE"),
    )
    rows = [header] + [
        (
            cp.unit_id,
            cp.status.value,
            str(cp.last_processed_offset),
            str(cp.files_done),
            str(cp.bytes_done),
            str(cp.attempts),
            str(cp.crashes),
            _one_line(cp.error, 60),
        )
        for cp in status.units
    ]
    return ["units:", *_indent(_table(rows, right=(2, 3, 4, 5, 6)))]


def format_status(status: DatasetStatus, *, units: bool = False) -> str:
    """A readable report of a dataset's units: one row per status with units,
    files and bytes done, then the oldest lease, the Waiting and Skipped units
    (a few, newest first, with their note), and the last errors. With ``units``,
    also one row per unit (the error or note cut to 60 characters)."""
    lines = [_headline(status)]
    lines += _by_status(status)
    lines += _lease_lines(status)
    lines += _notes(
        f"waiting for AEP to promote the batch ({len(status.waiting)}; "
        "every plan checks again):",
        status.waiting,
        "NOTE",
    )
    lines += _notes(
        f"skipped, not to be copied ({len(status.skipped)}):",
        status.skipped,
        "REASON",
    )
    lines += _errors(status)
    if units:
        lines += _unit_rows(status)
    return "\n".join(lines)
