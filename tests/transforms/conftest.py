"""Run transforms on XDM-shaped Parquet files into a memory sink."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any, Union

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aep_extract import FileRef, MemorySink, WorkUnit
from aep_extract.testing.xdm_parquet import xdm_parquet
from aep_extract.transforms import (
    TransformContext,
    TransformOutput,
    open_transform,
    run_transform,
)

UNIT = WorkUnit(dataset_id="ds1", batch_id="b1", batch_created_ms=1_718_000_000_000)
KEY = "ds1/date=2024-06-10/batch=b1/f1/part-00000.parquet"


def context(data: bytes, name: str = "part-00000.parquet") -> TransformContext:
    file = FileRef(dataset_file_id="f1", name=name, length=len(data))
    return TransformContext(unit=UNIT, file=file, key=KEY)


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    """The file as a download yields it: in chunks."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def run(
    specs: Union[str, Sequence[str]], data: bytes, sink: Any = None
) -> tuple[TransformOutput, bytes]:
    """The one output of a transform on ``data``, and its bytes in the sink."""
    sink = sink if sink is not None else MemorySink()
    (output,) = run_transform(open_transform(specs), chunks(data), context(data), sink)
    stored = sink.read_bytes(output.key)
    assert len(stored) == output.size
    return output, stored


def parquet_table(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def json_rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]


@pytest.fixture(scope="session")
def xdm() -> bytes:
    """100 events in 4 row groups."""
    return xdm_parquet(rows=100, row_group_rows=25, seed=7)
