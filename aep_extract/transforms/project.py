"""Column projection by dotted path, keeping the struct nesting of what it keeps."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Optional, Union

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, TransformError
from .arrow import ArrowStep

Tree = dict[str, Optional["Tree"]]
"""Selected fields by name: None keeps a field whole, a tree keeps part of it."""

_PATH = re.compile(r"[^.,\s]+(?:\.[^.,\s]+)*")


def _paths(value: Any) -> tuple[tuple[str, ...], ...]:
    texts = value.split(",") if isinstance(value, str) else list(value)
    paths = []
    for text in texts:
        path = text.strip() if isinstance(text, str) else ".".join(text)
        if not _PATH.fullmatch(path):
            raise ConfigError(f"project: {text!r} is not a dotted field path")
        paths.append(tuple(path.split(".")))
    if not paths:
        raise ConfigError("project: no columns given")
    return tuple(dict.fromkeys(paths))


@attrs.frozen
class Project(ArrowStep):
    """Keep only the fields at the given dotted paths.

    ``project:columns=_id,timestamp,_experience.analytics.customDimensions.eVars.eVar1``
    keeps ``_experience`` as a struct holding only the path to ``eVar1``. A path
    goes through structs, and through lists of structs (``productListItems.SKU``
    keeps each item's ``SKU``); a map (``identityMap``) is kept whole. Fields keep
    the file's order. Only the top-level columns named are read from the file.

    Raises:
        ConfigError: no paths, or a malformed one.
    """

    paths: tuple[tuple[str, ...], ...] = attrs.field(converter=_paths)

    name: ClassVar[str] = "project"
    option_help: ClassVar[Mapping[str, str]] = {
        "columns": "comma-separated dotted paths of the fields to keep",
    }

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> Project:
        """``columns=PATH,...`` (required)."""
        cls.check_options(options, required=["columns"])
        return cls(options["columns"])

    @property
    def spec(self) -> str:
        """``project:columns=...``."""
        return "project:columns=" + ",".join(".".join(path) for path in self.paths)

    def columns_needed(self, downstream: Optional[set[str]]) -> Optional[set[str]]:
        """The top-level fields of the paths: the later steps see no others."""
        return {path[0] for path in self.paths}

    def map_table(self, table: pa.Table) -> pa.Table:
        """The table with only the selected fields."""
        tree = _tree(self.paths)
        _check(table.schema, tree, (), self.spec)
        fields, columns = [], []
        for field in table.schema:
            if field.name in tree:
                column = table.column(field.name)
                chunks = [_prune(chunk, tree[field.name]) for chunk in column.chunks]
                kept_type = _pruned_type(field.type, tree[field.name])
                fields.append(field.with_type(kept_type))
                columns.append(pa.chunked_array(chunks, type=kept_type))
        return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _tree(paths: tuple[tuple[str, ...], ...]) -> Tree:
    tree: Tree = {}
    for path in paths:
        node: Optional[Tree] = tree
        for name in path[:-1]:
            if node is None:
                break
            node = node.setdefault(name, {})
        if node is not None:
            node[path[-1]] = None  # whole, even if a deeper path was given too
    return tree


def _value_field(type_: pa.DataType) -> Optional[pa.Field]:
    """The item field of a list type, None for any other."""
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return type_.value_field
    return None


def _check(
    type_: Union[pa.Schema, pa.DataType], tree: Tree, at: tuple[str, ...], what: str
) -> None:
    """Raise TransformError unless every path of ``tree`` exists in ``type_``."""
    item = _value_field(type_) if isinstance(type_, pa.DataType) else None
    if item is not None:
        return _check(item.type, tree, at, what)
    if isinstance(type_, pa.DataType) and not pa.types.is_struct(type_):
        raise TransformError(
            f"{what}: {'.'.join(at)} is {type_}: it has no fields to select"
        )
    fields = {field.name: field for field in type_}
    for name, subtree in tree.items():
        if name not in fields:
            where = ".".join(at) or "the file"
            raise TransformError(
                f"{what}: {where} has no field {name!r} (fields: {', '.join(fields)})"
            )
        if subtree is not None:
            _check(fields[name].type, subtree, (*at, name), what)
    return None


def _pruned_type(type_: pa.DataType, tree: Optional[Tree]) -> pa.DataType:
    if tree is None:
        return type_
    item = _value_field(type_)
    if item is not None:
        kept = item.with_type(_pruned_type(item.type, tree))
        return pa.large_list(kept) if pa.types.is_large_list(type_) else pa.list_(kept)
    return pa.struct(
        [
            field.with_type(_pruned_type(field.type, tree[field.name]))
            for field in type_
            if field.name in tree
        ]
    )


def _prune(array: pa.Array, tree: Optional[Tree]) -> pa.Array:
    """``array`` with only the fields of ``tree`` (its nulls kept)."""
    if tree is None:
        return array
    kept_type = _pruned_type(array.type, tree)
    mask = array.is_null() if array.null_count else None
    if _value_field(array.type) is not None:
        offsets = array.offsets
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        # from_arrays takes no null bitmap with sliced offsets: rebase them at 0.
        rebased = pc.subtract(offsets, pa.scalar(start, offsets.type))
        values = _prune(array.values.slice(start, end - start), tree)
        return type(array).from_arrays(rebased, values, type=kept_type, mask=mask)
    children = [
        _prune(array.field(index), tree[field.name])
        for index, field in enumerate(array.type)
        if field.name in tree
    ]
    return pa.StructArray.from_arrays(children, fields=list(kept_type), mask=mask)
