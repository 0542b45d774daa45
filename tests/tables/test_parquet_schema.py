"""A table's schema from a Parquet object in the sink: its footer only."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aep_extract import MemorySink
from aep_extract.errors import CatalogError
from aep_extract.tables import partitions
from aep_extract.tables.partitions import parquet_schema

SCHEMA = pa.schema(
    [
        ("_id", pa.string()),
        ("tags", pa.list_(pa.struct([("k", pa.string()), ("v", pa.int64())]))),
    ]
)


def parquet(rows: int) -> bytes:
    table = pa.table(
        {
            "_id": [f"{n:08d}" for n in range(rows)],
            "tags": [[{"k": "a", "v": n}] for n in range(rows)],
        },
        schema=SCHEMA,
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="none")
    return out.getvalue()


def test_the_schema_comes_from_the_footer_of_a_large_file(monkeypatch):
    data = parquet(20_000)
    sink = MemorySink()
    sink.write_bytes("ds/date=2024-06-10/batch=b/f/part-0.parquet", data)
    footer = int.from_bytes(data[-8:-4], "little")
    # Keep less than the file, more than the footer: only the tail is needed.
    monkeypatch.setattr(partitions, "MAX_FOOTER", footer + 100)
    assert len(data) > 10 * (footer + 100)
    schema = parquet_schema(sink, "ds/date=2024-06-10/batch=b/f/part-0.parquet")
    assert schema.equals(SCHEMA)


def test_a_footer_larger_than_the_bound_is_refused(monkeypatch):
    sink = MemorySink()
    sink.write_bytes("k.parquet", parquet(10))
    monkeypatch.setattr(partitions, "MAX_FOOTER", 16)
    with pytest.raises(CatalogError, match=r"footer of \d+ bytes, more than 16"):
        parquet_schema(sink, "k.parquet")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"json": "lines"}\n', "not a Parquet file"),
        (b"PAR1" + b"\x00" * 20 + (8).to_bytes(4, "little") + b"PAR1", "unreadable"),
    ],
)
def test_what_is_not_parquet_is_refused(content, message):
    sink = MemorySink()
    sink.write_bytes("k", content)
    with pytest.raises(CatalogError, match=message):
        parquet_schema(sink, "k")
