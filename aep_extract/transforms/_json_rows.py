"""Arrow rows as JSON Lines: one converter per column type, built once per file."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Callable, Optional

import pyarrow as pa

from ..errors import TransformError

Convert = Callable[[Any], Any]

_EPOCH = datetime(1970, 1, 1)
_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def row_encoder(schema: pa.Schema) -> Callable[[pa.RecordBatch], bytes]:
    """A function from a record batch of ``schema`` to its JSON Lines, in UTF-8.

    Timestamps are read as their integer counts (exact for every unit, which
    Python's datetime is not for nanoseconds) and formatted here.
    """
    counts = pa.schema([field.with_type(_counts(field.type)) for field in schema])
    convert = _struct(schema) or (lambda row: row)
    dumps = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode

    def encode(batch: pa.RecordBatch) -> bytes:
        rows = pa.Table.from_batches([batch]).cast(counts).to_pylist()
        try:
            lines = [dumps(convert(row)) for row in rows]
        except (OverflowError, ValueError, TypeError) as exc:
            raise TransformError(f"a value JSON cannot hold: {exc}") from exc
        return "".join(line + "\n" for line in lines).encode()

    return encode


def _apply(convert: Optional[Convert], value: Any) -> Any:
    return value if convert is None or value is None else convert(value)


def _counts(type_: pa.DataType) -> pa.DataType:
    """``type_`` with every timestamp, at any depth, as int64."""
    if pa.types.is_timestamp(type_):
        return pa.int64()
    if pa.types.is_struct(type_):
        return pa.struct([field.with_type(_counts(field.type)) for field in type_])
    if pa.types.is_map(type_):
        return pa.map_(
            type_.key_field.with_type(_counts(type_.key_type)),
            type_.item_field.with_type(_counts(type_.item_type)),
        )
    if pa.types.is_list(type_):
        return pa.list_(type_.value_field.with_type(_counts(type_.value_type)))
    if pa.types.is_large_list(type_):
        return pa.large_list(type_.value_field.with_type(_counts(type_.value_type)))
    return type_


def _converter(type_: pa.DataType) -> Optional[Convert]:
    """How a Python value of an Arrow type (timestamps as counts) becomes JSON's;
    None where it already is."""
    if pa.types.is_timestamp(type_):
        return _timestamp(type_.unit, type_.tz is not None)
    if pa.types.is_struct(type_):
        return _struct(type_)
    if pa.types.is_map(type_):
        key, item = _converter(type_.key_type), _converter(type_.item_type)
        return lambda pairs: {_apply(key, k): _apply(item, v) for k, v in pairs}
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        value = _converter(type_.value_type)
        return (
            None if value is None else lambda items: [_apply(value, v) for v in items]
        )
    if (
        pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_fixed_size_binary(type_)
    ):
        return lambda data: base64.b64encode(data).decode("ascii")
    if pa.types.is_floating(type_):
        return _float
    if pa.types.is_decimal(type_):
        return str
    if pa.types.is_date(type_) or pa.types.is_time(type_):
        return lambda value: value.isoformat()
    return None


def _struct(fields: Iterable[pa.Field]) -> Optional[Convert]:
    """Converts the fields that need it, in place (to_pylist's dicts are fresh and
    keep the schema's order); None when none does."""
    found = [(field.name, _converter(field.type)) for field in fields]
    needs = [(name, convert) for name, convert in found if convert is not None]
    if not needs:
        return None

    def convert_row(row: dict[str, Any]) -> dict[str, Any]:
        for name, convert in needs:
            value = row[name]
            if value is not None:
                row[name] = convert(value)
        return row

    return convert_row


def _timestamp(unit: str, utc: bool) -> Convert:
    digits = _DIGITS[unit]
    suffix = "Z" if utc else ""

    def text(count: int) -> str:
        seconds, fraction = divmod(count, 10**digits)
        whole = (_EPOCH + timedelta(seconds=seconds)).isoformat()
        return f"{whole}.{fraction:0{digits}d}{suffix}" if digits else whole + suffix

    return text


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
