"""Row filter: an expression of a small language (``_expr``), compiled to a pyarrow
compute expression (never evaluated as Python)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Optional

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from . import _expr
from .arrow import ArrowStep, resolve

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _parse(value: Any) -> _expr.Expr:
    if isinstance(value, str):
        return _expr.parse(value)
    if isinstance(
        value, (_expr.Compare, _expr.In, _expr.IsNull, _expr.Not, _expr.And, _expr.Or)
    ):
        return value
    raise ConfigError(f"filter: expected an expression, not {type(value).__name__}")


@attrs.frozen
class Filter(ArrowStep):
    """Keep the rows an expression holds for, as SQL's ``WHERE`` would.

    ``filter:expr=eventType = 'web.webpagedetails.pageViews' and timestamp >=
    timestamp '2024-06-10T00:00:00Z'``. Comparisons with a null are null, and a
    row whose expression is null is dropped (SQL's three-valued logic): ``x != 1``
    keeps no row where ``x`` is null; ask with ``x is null`` for those. Paths go
    through structs to a value of the file (not into lists or maps). A literal
    compared with a field of another type fails the file with a TransformError.

    Raises:
        ConfigError: the expression is not in the filter's language (see
            :doc:`/transforms`).
    """

    expression: _expr.Expr = attrs.field(converter=_parse)

    name: ClassVar[str] = "filter"
    option_help: ClassVar[Mapping[str, str]] = {
        "expr": "the condition a row must meet, e.g. a.b = 'x' and c is not null",
    }

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> Filter:
        """``expr=EXPRESSION`` (required)."""
        cls.check_options(options, required=["expr"])
        return cls(options["expr"])

    @property
    def spec(self) -> str:
        """``filter:expr=...``, the expression in canonical form."""
        return f"filter:expr={_expr.render(self.expression)}"

    def columns_needed(self, downstream: Optional[set[str]]) -> Optional[set[str]]:
        """The later steps' columns and the expression's."""
        if downstream is None:
            return None
        return downstream | {path[0] for path in _paths(self.expression)}

    def map_table(self, table: pa.Table) -> pa.Table:
        """The rows the expression holds for."""
        for path in _paths(self.expression):
            resolve(table.schema, path, self.spec)
        return table.filter(_compile(self.expression, table.schema))


def _paths(node: _expr.Expr) -> list[tuple[str, ...]]:
    if isinstance(node, (_expr.Compare, _expr.In, _expr.IsNull)):
        return [node.path]
    if isinstance(node, _expr.Not):
        return _paths(node.operand)
    return _paths(node.left) + _paths(node.right)


def _compile(node: _expr.Expr, schema: pa.Schema) -> pc.Expression:
    if isinstance(node, _expr.Compare):
        field = pc.field(*node.path)
        return _COMPARE[node.op](field, _scalar(node.value, schema, node.path))
    if isinstance(node, _expr.In):
        field = pc.field(*node.path)
        # A chain of '=', not is_in: a null stays null (SQL's NULL IN (...)).
        equals = [field == _scalar(value, schema, node.path) for value in node.values]
        return functools.reduce(operator.or_, equals)
    if isinstance(node, _expr.IsNull):
        return pc.field(*node.path).is_null()
    if isinstance(node, _expr.Not):
        return ~_compile(node.operand, schema)
    combine = operator.and_ if isinstance(node, _expr.And) else operator.or_
    return combine(_compile(node.left, schema), _compile(node.right, schema))


def _scalar(value: _expr.Value, schema: pa.Schema, path: tuple[str, ...]) -> pa.Scalar:
    """A literal as an Arrow scalar; a timestamp takes the field's unit and zone."""
    if isinstance(value, datetime):
        field_type = resolve(schema, path, "filter")
        moment = value.astimezone(timezone.utc)
        if pa.types.is_timestamp(field_type):
            return pa.scalar(moment, type=field_type)
        return pa.scalar(moment)
    return pa.scalar(value)
