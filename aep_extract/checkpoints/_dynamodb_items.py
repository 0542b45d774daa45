"""Conversion between :class:`~aep_extract.models.Checkpoint` and DynamoDB items.

Items are in the low-level client's form (``{"S": "..."}``, ``{"N": "..."}``): numbers
travel as decimal strings, so nothing passes through binary floats on the wire.
Attribute names follow the seed and the SQLite store column for column. ``CreatedAt``
and ``UpdatedAt`` are ISO 8601 UTC strings with microseconds, readable in the console;
``LeaseExpiresAt`` stays a number (epoch seconds) because it is compared with a clock.
Attributes whose value is None are left out of the item; ``Crashes``, absent from
items of older releases, reads as 0, and ``Progress`` as none.

A dataset's watermark and destination live in the same table, each in an item of its
own that no unit key can equal: ``BatchID`` ``dataset#<dataset id>`` and
``OffsetRange`` ``watermark`` or ``destination`` (no unit's range, which is always
``a-b``), with ``PlannedUntil`` (epoch ms) and ``UpdatedAt``, or ``Destination``.
They have neither ``DatasetID`` nor ``Status``, so the sparse index
``DatasetID-Status-index`` never holds them and no listing of units can meet them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Optional

from ..errors import CheckpointError
from ..models import Checkpoint, UnitStatus, WorkUnit

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

PARTITION_KEY = "BatchID"
SORT_KEY = "OffsetRange"
DATASET = "DatasetID"
STATUS = "Status"

PROGRESS = "Progress"
"""The engine's record of a unit's files in parts (JSON text, kept under 200 KB:
see :data:`aep_extract._jobs.MAX_RECORDED_PARTS`)."""
PLANNED_UNTIL = "PlannedUntil"
DESTINATION = "Destination"
DATASET_PREFIX = "dataset#"
"""Prefix of the ``BatchID`` of a dataset's own items, before the dataset id."""
WATERMARK_RANGE = "watermark"
"""The ``OffsetRange`` of every watermark item."""
DESTINATION_RANGE = "destination"
"""The ``OffsetRange`` of every destination item."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROS = 1_000_000


def key(batch_id: str, offset_range: str) -> Item:
    """The primary key of a unit's item."""
    return {PARTITION_KEY: {"S": batch_id}, SORT_KEY: {"S": offset_range}}


def to_item(cp: Checkpoint) -> Item:
    """The full item of a checkpoint; attributes that are None are omitted."""
    unit = cp.unit
    item: Item = {
        **key(unit.batch_id, unit.offset_range),
        DATASET: {"S": unit.dataset_id},
        "BatchCreated": {"N": str(unit.batch_created_ms)},
        STATUS: {"S": cp.status.value},
        "LastProcessedOffset": {"N": str(cp.last_processed_offset)},
        "Attempts": {"N": str(cp.attempts)},
        "Crashes": {"N": str(cp.crashes)},
        "FilesDone": {"N": str(cp.files_done)},
        "BytesDone": {"N": str(cp.bytes_done)},
        "CreatedAt": {"S": to_iso(cp.created_at)},
        "UpdatedAt": {"S": to_iso(cp.updated_at)},
        "Version": {"N": str(cp.version)},
    }
    if cp.owner is not None:
        item["Owner"] = {"S": cp.owner}
    if cp.lease_expires_at is not None:
        item["LeaseExpiresAt"] = {"N": _float_text(cp.lease_expires_at)}
    if cp.error is not None:
        item["Error"] = {"S": cp.error}
    if cp.progress is not None:
        item[PROGRESS] = {"S": cp.progress}
    return item


def watermark_key(dataset_id: str) -> Item:
    """The primary key of a dataset's watermark item."""
    return key(f"{DATASET_PREFIX}{dataset_id}", WATERMARK_RANGE)


def watermark_item(dataset_id: str, end_ms: int, updated_at: float) -> Item:
    """The watermark item of a dataset planned up to ``end_ms`` (epoch ms)."""
    return {
        **watermark_key(dataset_id),
        PLANNED_UNTIL: {"N": str(int(end_ms))},
        "UpdatedAt": {"S": to_iso(updated_at)},
    }


def destination_key(dataset_id: str) -> Item:
    """The primary key of a dataset's destination item."""
    return key(f"{DATASET_PREFIX}{dataset_id}", DESTINATION_RANGE)


def destination_item(dataset_id: str, destination: str) -> Item:
    """The destination item of a dataset."""
    return {**destination_key(dataset_id), DESTINATION: {"S": destination}}


def is_unit(item: Mapping[str, AttributeValueTypeDef]) -> bool:
    """Whether an item is a unit, not one of a dataset's own items."""
    return item.get(SORT_KEY, {}).get("S") not in (WATERMARK_RANGE, DESTINATION_RANGE)


def watermark_from_item(item: Mapping[str, AttributeValueTypeDef]) -> int:
    """The ``PlannedUntil`` of a watermark item.

    Raises:
        CheckpointError: the attribute is missing or not an integer.
    """
    try:
        return _integer(item, PLANNED_UNTIL)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise CheckpointError(
            f"unreadable watermark item {item.get(PARTITION_KEY, {}).get('S', '?')!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def destination_from_item(item: Mapping[str, AttributeValueTypeDef]) -> str:
    """The ``Destination`` of a destination item.

    Raises:
        CheckpointError: the attribute is missing or not a string.
    """
    try:
        return _string(item, DESTINATION)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(
            f"unreadable destination item {item.get(PARTITION_KEY, {}).get('S', '?')!r}"
            f": {type(exc).__name__}: {exc}"
        ) from exc


def from_item(item: Mapping[str, AttributeValueTypeDef]) -> Checkpoint:
    """Inverse of :func:`to_item`.

    Raises:
        CheckpointError: an attribute is missing or has the wrong type or value.
    """
    batch_id = item.get(PARTITION_KEY, {}).get("S", "?")
    offset_range = item.get(SORT_KEY, {}).get("S", "?")
    try:
        first, last = WorkUnit.parse_offset_range(_string(item, SORT_KEY))
        return Checkpoint(
            unit=WorkUnit(
                dataset_id=_string(item, DATASET),
                batch_id=_string(item, PARTITION_KEY),
                batch_created_ms=_integer(item, "BatchCreated"),
                first_offset=first,
                last_offset=last,
            ),
            status=UnitStatus(_string(item, STATUS)),
            last_processed_offset=_integer(item, "LastProcessedOffset"),
            owner=_optional_string(item, "Owner"),
            lease_expires_at=_optional_float(item, "LeaseExpiresAt"),
            attempts=_integer(item, "Attempts"),
            crashes=_integer(item, "Crashes") if "Crashes" in item else 0,
            error=_optional_string(item, "Error"),
            files_done=_integer(item, "FilesDone"),
            bytes_done=_integer(item, "BytesDone"),
            created_at=from_iso(_string(item, "CreatedAt")),
            updated_at=from_iso(_string(item, "UpdatedAt")),
            version=_integer(item, "Version"),
            progress=_optional_string(item, PROGRESS),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise CheckpointError(
            f"unreadable item for batch {batch_id!r} range {offset_range!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def to_iso(epoch_seconds: float) -> str:
    """Epoch seconds as ``2024-06-10T12:00:00.123456+00:00``, rounded to the µs.

    The rounding goes through :class:`~decimal.Decimal`, so it is exact: a time with
    at most six decimals (what :func:`from_iso` returns) comes back unchanged.
    """
    micros = int(
        (Decimal(epoch_seconds) * _MICROS).to_integral_value(rounding=ROUND_HALF_EVEN)
    )
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds")


def from_iso(text: str) -> float:
    """Inverse of :func:`to_iso`: the nearest float to the stored microsecond."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    # int / int is correctly rounded, unlike micros * 1e-6.
    return micros / _MICROS


def _float_text(value: float) -> str:
    # repr is the shortest text that reads back as the same float.
    if not math.isfinite(value):
        raise CheckpointError(f"cannot store the number {value!r} in DynamoDB")
    return repr(float(value))


def _string(item: Mapping[str, AttributeValueTypeDef], name: str) -> str:
    value = item[name]["S"]
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value


def _optional_string(
    item: Mapping[str, AttributeValueTypeDef], name: str
) -> Optional[str]:
    return _string(item, name) if name in item else None


def _integer(item: Mapping[str, AttributeValueTypeDef], name: str) -> int:
    # DynamoDB normalises numbers ("1E+2" may come back for 100): read as Decimal.
    try:
        number = Decimal(item[name]["N"])
    except InvalidOperation:
        raise ValueError(f"{name} is not a number") from None
    if number != number.to_integral_value():
        raise ValueError(f"{name} is not an integer: {number}")
    return int(number)


def _optional_float(
    item: Mapping[str, AttributeValueTypeDef], name: str
) -> Optional[float]:
    if name not in item:
        return None
    return float(Decimal(item[name]["N"]))
