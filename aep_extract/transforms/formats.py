"""Output formats of a Parquet pipeline: gzipped JSON Lines, and Parquet with a
chosen compression. Both write the same bytes for the same input (with the same
pyarrow and zlib)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from typing import BinaryIO, ClassVar

import attrs
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from ._json_rows import row_encoder
from .arrow import ArrowStep

COMPRESSIONS = ("zstd", "snappy", "gzip", "none")
"""The compressions :class:`Parquet` writes."""

BATCH_ROWS = 1024
"""How many rows JSON Lines turns into Python objects at a time, bounding that
copy's memory."""

GZIP_LEVEL = 6
"""zlib's level for JSON Lines: its usual trade of speed for size."""


@attrs.frozen
class JsonLines(ArrowStep):
    """Write one JSON object per row, gzipped (``.jsonl.gz``).

    Keys follow the schema's order; timestamps are ISO 8601 (``Z`` for UTC
    instants, no offset for a timestamp without time zone), with the digits of
    their unit; maps become objects, binary base64, decimals strings, and
    non-finite floats the strings ``NaN``, ``Infinity``, ``-Infinity``. The gzip
    header holds no time and no file name. Memory: one row group as Arrow data, and
    :data:`BATCH_ROWS` rows as Python objects.
    """

    name: ClassVar[str] = "jsonl"
    suffix: ClassVar[str] = ".jsonl.gz"

    @property
    def spec(self) -> str:
        """``jsonl``."""
        return "jsonl"

    def write(
        self, schema: pa.Schema, tables: Iterable[pa.Table], out: BinaryIO
    ) -> None:
        """The rows of ``tables`` as gzipped JSON Lines.

        Raises:
            TransformError: a value JSON cannot hold (a date past year 9999).
        """
        encode = row_encoder(schema)
        with gzip.GzipFile(
            filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=out, mtime=0
        ) as packed:
            for table in tables:
                for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                    packed.write(encode(batch))


def _compression(value: str) -> str:
    name = value.strip().lower()
    if name not in COMPRESSIONS:
        raise ConfigError(
            f"parquet: compression {value!r} is not one of {', '.join(COMPRESSIONS)}"
        )
    return name


@attrs.frozen
class Parquet(ArrowStep):
    """Write Parquet with ``compression`` (``zstd``, ``snappy``, ``gzip`` or
    ``none``), one row group for each row group of the source that keeps rows.

    The file-level key-value metadata of the source (Spark's schema among it) is
    dropped: it would describe columns a projection removed. Memory: one row group.

    Raises:
        ConfigError: an unknown compression.
    """

    compression: str = attrs.field(default="zstd", converter=_compression)

    name: ClassVar[str] = "parquet"
    suffix: ClassVar[str] = ".parquet"
    option_help: ClassVar[Mapping[str, str]] = {
        "compression": "zstd (default), snappy, gzip or none",
    }

    @property
    def spec(self) -> str:
        """``parquet:compression=...``."""
        return f"parquet:compression={self.compression}"

    def write(
        self, schema: pa.Schema, tables: Iterable[pa.Table], out: BinaryIO
    ) -> None:
        """The tables as one Parquet file."""
        schema = schema.remove_metadata()
        with pq.ParquetWriter(out, schema, compression=self.compression) as writer:
            for table in tables:
                if table.num_rows:
                    writer.write_table(
                        table.replace_schema_metadata(None),
                        row_group_size=table.num_rows,
                    )
