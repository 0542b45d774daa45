"""Parquet transforms on pyarrow: steps fused into one pass over a file's row groups.

Needs the ``parquet`` extra (``pip install 'aep-extract[parquet]'``). Parquet keeps
its schema and row-group index in a footer at the end of the file, so the source is
first spooled to an anonymous temporary file (at most its listed length, removed when
closed, even by a crash); then one row group at a time is read (only the columns the
steps need), passed through the row steps (:class:`~aep_extract.transforms.project.
Project`, :class:`~aep_extract.transforms.filter.Filter`) and written by the format
step that ends the pipeline (:class:`~aep_extract.transforms.formats.JsonLines`,
:class:`~aep_extract.transforms.formats.Parquet`; Parquet with snappy when none
does). Memory holds one decoded row group, whatever the file's size.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, ClassVar, Optional

import attrs
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, TransformError
from .base import Outputs, Transform, TransformContext

SPOOL_CHUNK = 1024 * 1024
"""Bytes copied at a time from the source to the spool file."""


class ArrowStep(Transform):
    """One step of a Parquet pipeline; run alone, or fused with the steps around it
    by ``then`` into an :class:`ArrowPipeline`.

    A row step overrides :meth:`map_table` (and :meth:`columns_needed`); a format
    step overrides :meth:`write` and :attr:`suffix`, and ends a pipeline.
    """

    suffix: ClassVar[Optional[str]] = None
    """The output suffix of a format step; None for a row step."""

    def columns_needed(self, downstream: Optional[set[str]]) -> Optional[set[str]]:
        """The top-level columns to read, given those the later steps need (None
        for all); the default needs what the later steps need."""
        return downstream

    def map_table(self, table: pa.Table) -> pa.Table:
        """A row group's table after this step (the default keeps it).

        Raises:
            TransformError: the table lacks a field the step names.
        """
        return table

    def write(
        self, schema: pa.Schema, tables: Iterable[pa.Table], out: BinaryIO
    ) -> None:
        """Write the tables, all of ``schema``, as one output (format steps only)."""
        raise NotImplementedError(f"{self.spec} is not a format")

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The output of the pipeline this step makes alone."""
        return ArrowPipeline((self,)).suffixes

    def apply(self, source: BinaryIO, context: TransformContext, out: Outputs) -> None:
        """Run this step alone on a Parquet file."""
        ArrowPipeline((self,)).apply(source, context, out)

    def then(self, following: Transform) -> Transform:
        """The pipeline of this step, then ``following``'s steps."""
        return ArrowPipeline((self,)).then(following)


def _check_steps(
    instance: Any, attribute: attrs.Attribute[Any], steps: tuple[ArrowStep, ...]
) -> None:
    if not steps:
        raise ConfigError("a pipeline needs at least one step")
    for step in steps[:-1]:
        if step.suffix is not None:
            raise ConfigError(
                f"transform {step.spec!r} writes the output: it must come last"
            )


@attrs.frozen
class ArrowPipeline(Transform):
    """Row steps, then at most one format step, in one pass over a Parquet file.

    Raises:
        ConfigError: no step, or a format step before the last.
    """

    steps: tuple[ArrowStep, ...] = attrs.field(validator=_check_steps)

    @property
    def format(self) -> ArrowStep:
        """The step that writes the output: the last step, or Parquet (snappy)."""
        last = self.steps[-1]
        if last.suffix is not None:
            return last
        from .formats import Parquet  # formats builds on this module

        return Parquet(compression="snappy")

    @property
    def spec(self) -> str:
        """The steps' specs, joined by `` | ``."""
        return " | ".join(step.spec for step in self.steps)

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The format step's suffix."""
        suffix = self.format.suffix
        assert suffix is not None
        return (suffix,)

    def then(self, following: Transform) -> Transform:
        """These steps followed by ``following``'s (an :class:`ArrowStep` or
        pipeline).

        Raises:
            ConfigError: this pipeline ends with a format, or ``following`` is no
                Arrow step.
        """
        if isinstance(following, ArrowPipeline):
            return ArrowPipeline(self.steps + following.steps)
        if isinstance(following, ArrowStep):
            return ArrowPipeline((*self.steps, following))
        return super().then(following)

    def apply(self, source: BinaryIO, context: TransformContext, out: Outputs) -> None:
        """Spool the file, then map and write it one row group at a time.

        Raises:
            TransformError: not a Parquet file, or a step fails on it.
        """
        what = f"{context.file.name} ({self.spec})"
        with _spooled(source, context.spool_dir) as spool, _arrow_errors(what):
            parquet = pq.ParquetFile(spool)
            # The steps see the whole schema once, so errors name every field.
            schema = self._map(parquet.schema_arrow.empty_table()).schema
            columns = self._columns(parquet.schema_arrow)
            tables = (
                self._map(parquet.read_row_group(index, columns=columns))
                for index in range(parquet.num_row_groups)
            )
            suffix = self.suffixes[0]
            with out.open(suffix) as target:
                self.format.write(schema, tables, target)

    def _columns(self, schema: pa.Schema) -> list[str]:
        needed: Optional[set[str]] = None
        for step in reversed(self.steps):
            needed = step.columns_needed(needed)
        return [name for name in schema.names if needed is None or name in needed]

    def _map(self, table: pa.Table) -> pa.Table:
        for step in self.steps:
            table = step.map_table(table)
        return table


@contextlib.contextmanager
def _spooled(source: BinaryIO, directory: Optional[str]) -> Iterator[BinaryIO]:
    """The whole source in an anonymous temporary file, read from its start."""
    with tempfile.TemporaryFile(dir=directory) as spool:
        shutil.copyfileobj(source, spool, SPOOL_CHUNK)
        spool.seek(0)
        yield spool


@contextlib.contextmanager
def _arrow_errors(what: str) -> Iterator[None]:
    """pyarrow's errors on a file (not Parquet, a type mismatch) as TransformError."""
    try:
        yield
    except pa.ArrowException as exc:
        raise TransformError(f"{what}: {exc}") from exc


def resolve(schema: pa.Schema, path: tuple[str, ...], what: str) -> pa.DataType:
    """The type of the field at a dotted path through structs.

    Raises:
        TransformError: no such field, or the path goes through a non-struct.
    """
    fields: Iterable[pa.Field] = schema
    found: Optional[pa.Field] = None
    for depth, name in enumerate(path):
        found = next((field for field in fields if field.name == name), None)
        if found is None:
            where = ".".join(path[:depth]) or "the file"
            known = ", ".join(field.name for field in fields)
            raise TransformError(
                f"{what}: {'.'.join(path)}: {where} has no field {name!r} "
                f"(fields: {known})"
            )
        if depth < len(path) - 1 and not pa.types.is_struct(found.type):
            raise TransformError(
                f"{what}: {'.'.join(path)}: {'.'.join(path[: depth + 1])} is "
                f"{found.type}, not a struct"
            )
        fields = list(found.type) if pa.types.is_struct(found.type) else []
    assert found is not None
    return found.type
