"""Table columns from a Parquet schema: Arrow types as Hive (Glue, Athena) types.

Pure functions, no I/O. :func:`table_columns` takes a ``pyarrow.Schema`` (as
``pyarrow.parquet.read_schema`` gives it; pyarrow is imported only then) or Glue
column dicts, which it checks and passes through, so it works without pyarrow.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import CatalogError

Column = dict[str, str]
"""A Glue column, a dict with ``Name``, ``Type`` and optionally ``Comment``."""

SchemaLike = Any
"""What :func:`~aep_extract.tables.table_columns` accepts: a ``pyarrow.Schema``,
or an iterable of Glue column mappings."""

RESERVED = frozenset({"date"})
"""Column names taken by the table's partition key."""

_NAME = re.compile(r"^[^\s,:<>`]+$")
"""A name that reads back unambiguously inside ``struct<name:type,...>``."""

_SIMPLE = {
    "is_boolean": "boolean",
    "is_int8": "tinyint",
    "is_int16": "smallint",
    "is_int32": "int",
    "is_int64": "bigint",
    "is_uint8": "smallint",
    "is_uint16": "int",
    "is_uint32": "bigint",
    "is_uint64": "bigint",
    "is_float16": "float",
    "is_float32": "float",
    "is_float64": "double",
    "is_string": "string",
    "is_large_string": "string",
    "is_binary": "binary",
    "is_large_binary": "binary",
    "is_fixed_size_binary": "binary",
    "is_date": "date",
    "is_timestamp": "timestamp",
}
"""pyarrow.types predicates and the Hive type of what they accept. Unsigned
integers get the next wider signed type; ``uint64`` above 2**63 - 1 fits none."""

_MAX_DECIMAL_PRECISION = 38


def table_columns(schema: SchemaLike) -> list[Column]:
    """The Glue columns of a table holding files of this schema.

    Args:
        schema: a ``pyarrow.Schema``, or Glue column dicts (``Name``, ``Type``,
            optionally ``Comment``) taken as they are.

    Returns:
        One column per top-level field, in order.

    Raises:
        CatalogError: a type with no Hive equivalent (time, duration, union...),
            a name that cannot be spelled in a Hive type, a column named ``date``
            (the partition key), two columns whose names differ only in case, or
            no column at all.
    """
    if hasattr(schema, "names") and hasattr(schema, "types"):
        columns = [
            {"Name": _name(name, name), "Type": hive_type(kind, path=name)}
            for name, kind in zip(schema.names, schema.types)
        ]
    else:
        columns = [_given(column) for column in schema]
    if not columns:
        raise CatalogError("a table needs at least one column")
    seen: dict[str, str] = {}
    for column in columns:
        name = column["Name"]
        if name.lower() in RESERVED:
            raise CatalogError(
                f"column {name!r} clashes with the partition key {name.lower()!r}"
            )
        first = seen.setdefault(name.lower(), name)
        if first != name:
            raise CatalogError(
                f"columns {first!r} and {name!r} differ only in case: Hive, Glue "
                "and Athena fold names to lower case"
            )
    return columns


def hive_type(arrow_type: Any, *, path: str = "") -> str:
    """The Hive type name of an Arrow type, e.g. ``struct<id:string,tags:array<
    string>>``.

    Args:
        arrow_type: a ``pyarrow.DataType``.
        path: the field's dotted path, for error messages.

    Raises:
        CatalogError: the type has no Hive equivalent.
    """
    types: Any = importlib.import_module("pyarrow.types")
    where = f" (field {path})" if path else ""
    if types.is_dictionary(arrow_type):
        return hive_type(arrow_type.value_type, path=path)
    if types.is_decimal(arrow_type):
        if arrow_type.precision > _MAX_DECIMAL_PRECISION:
            raise CatalogError(
                f"{arrow_type}{where}: Hive decimals hold at most "
                f"{_MAX_DECIMAL_PRECISION} digits"
            )
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if types.is_map(arrow_type):
        key = hive_type(arrow_type.key_type, path=f"{path}.key")
        value = hive_type(arrow_type.item_type, path=f"{path}.value")
        return f"map<{key},{value}>"
    if (
        types.is_list(arrow_type)
        or types.is_large_list(arrow_type)
        or types.is_fixed_size_list(arrow_type)
    ):
        return f"array<{hive_type(arrow_type.value_type, path=f'{path}[]')}>"
    if types.is_struct(arrow_type):
        fields = [arrow_type.field(i) for i in range(arrow_type.num_fields)]
        if not fields:
            raise CatalogError(f"{arrow_type}{where}: Hive has no empty struct")
        inner = ",".join(
            f"{_name(f.name, f'{path}.{f.name}')}:"
            f"{hive_type(f.type, path=f'{path}.{f.name}')}"
            for f in fields
        )
        return f"struct<{inner}>"
    for predicate, name in _SIMPLE.items():
        if getattr(types, predicate)(arrow_type):
            return name
    raise CatalogError(f"{arrow_type}{where} has no Hive type")


def _name(name: object, path: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CatalogError(
            f"field {path!r}: name {name!r} cannot be spelled in a Hive type "
            "(empty, or holds whitespace or one of , : < > `)"
        )
    return name


def _given(column: Mapping[str, Any]) -> Column:
    if not isinstance(column, Mapping):
        raise CatalogError(f"a column must be a mapping, not {column!r}")
    name = _name(column.get("Name"), str(column.get("Name")))
    kind = column.get("Type")
    if not isinstance(kind, str) or not kind.strip():
        raise CatalogError(f"column {name!r}: 'Type' must be a Hive type name")
    out = {"Name": name, "Type": kind.strip()}
    comment = column.get("Comment")
    if isinstance(comment, str):
        out["Comment"] = comment
    return out


def describe(columns: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Column name to type, both as Hive compares them (case and spaces aside),
    for comparing schemas."""
    return {
        str(c.get("Name", "")).lower(): "".join(str(c.get("Type", "")).split()).lower()
        for c in columns
    }
