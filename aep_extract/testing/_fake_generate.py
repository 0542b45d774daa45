"""A deterministic demo catalog for the fake platform, generated from a seed.

Everything comes from ``random.Random`` generators seeded from the seed: ids, times,
sizes and bytes; no wall clock, no hash randomization. The main dataset's batches, by
position in the window:

====  ========  ===========================================================
 #    status    what it exercises
====  ========  ===========================================================
 0    success   created exactly at the window start (inclusive bound)
 1    success   a zero-byte file
 2    success   names with spaces and ``+``
 3    failed    failed files and ``errors``; nothing to copy
 4    success   one large file (``large_file_size``)
 5    loading   not promoted yet: has files, but nothing to copy until success
 6    success   a directory-type dataSetFileId with nested children
 7    aborted   nothing to copy
 8    active    exportable like success
 9+   success   plain
====  ========  ===========================================================

Plus, outside the window, a batch 1 ms before its start and one exactly at its end,
and a second dataset whose batches (inside the window) must never be copied.

The loading batch's files come from a second generator: every other batch kept the ids
and bytes it had before the loading batch had files. :func:`make_batches` draws fresh
batches for tests that add them later.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime
from typing import Any, Union

from ..models import parse_timestamp, to_epoch_ms
from ._fake_data import (
    FakeBatch,
    FakeDataSetFile,
    FakeFile,
    GeneratedBytes,
    check_status,
)

DEMO_DATASET_ID = "5e8f81cf7a4ecb28a8d85b22"
DEMO_OTHER_DATASET_ID = "5e8f81cf7a4ecb28a8d85c47"
DEMO_START = "2024-06-10T00:00:00Z"
DEMO_END = "2024-06-14T00:00:00Z"
LAZY_FILE_SIZE = 64 * 1024 * 1024
"""A generated file larger than this is :class:`GeneratedBytes`, never held."""
ODD_NAMES = ("part 0001+a.snappy.parquet", "part 0002 (copy) +b.snappy.parquet")
"""File names with spaces and ``+`` in the demo (batch #2)."""

_LAYOUT = (
    ("plain", "success"),
    ("zero", "success"),
    ("odd_names", "success"),
    ("failed", "failed"),
    ("large", "success"),
    ("loading", "loading"),
    ("directory", "success"),
    ("aborted", "aborted"),
    ("plain", "active"),
)

Moment = Union[str, datetime, int]
"""An ISO 8601 text with offset, an aware datetime or epoch milliseconds."""


def moment_ms(value: Moment) -> int:
    """Epoch milliseconds of a :data:`Moment`."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = parse_timestamp(value)
    return to_epoch_ms(value)


class _Generator:
    """Draws ids, names and contents from one seeded random generator."""

    def __init__(
        self, seed: Union[int, str], max_file_size: int, files_per_dataset_file: int
    ):
        self.rng = random.Random(seed)
        self.max_file_size = max_file_size
        self.files_per_dataset_file = files_per_dataset_file
        self._ids: set[str] = set()

    def batch_id(self) -> str:
        while True:
            value = f"{self.rng.getrandbits(96):024x}"
            if value not in self._ids:
                self._ids.add(value)
                return value

    def part_name(self, index: int) -> str:
        part_uuid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return f"part-{index:05d}-{part_uuid}-c000.snappy.parquet"

    def file(self, name: str, size: int | None = None) -> FakeFile:
        if size is None:
            size = self.rng.randint(1, self.max_file_size)
        if size > LAZY_FILE_SIZE:
            return FakeFile(name, GeneratedBytes(self.rng.getrandbits(64), size))
        return FakeFile(name, self.rng.randbytes(size))

    def leaf(self, dataset_file_id: str, count: int | None = None) -> FakeDataSetFile:
        count = self.files_per_dataset_file if count is None else count
        files = [self.file(self.part_name(index)) for index in range(count)]
        return FakeDataSetFile(dataset_file_id, files=files)

    def plain(self, batch_id: str, count: int, first: int = 1) -> list[FakeDataSetFile]:
        return [self.leaf(f"{batch_id}-{n}") for n in range(first, first + count)]

    def dataset_files(
        self, kind: str, batch_id: str, files_per_batch: int, large_file_size: int
    ) -> list[FakeDataSetFile]:
        if kind in ("failed", "aborted"):
            return []
        tops = self.plain(batch_id, files_per_batch)
        extra = f"{batch_id}-{files_per_batch + 1}"
        if kind == "zero":
            tops.append(FakeDataSetFile(extra, files=[self.file(self.part_name(0), 0)]))
        elif kind == "odd_names":
            tops.append(FakeDataSetFile(extra, [self.file(n) for n in ODD_NAMES]))
        elif kind == "large" and large_file_size > 0:
            big = self.file(self.part_name(0), large_file_size)
            tops.append(FakeDataSetFile(extra, files=[big]))
        elif kind == "directory":
            nested = FakeDataSetFile(f"{extra}-2", children=[self.leaf(f"{extra}-2-1")])
            children = [self.leaf(f"{extra}-1", 2), nested]
            tops.insert(0, FakeDataSetFile(extra, children=children))
        return tops

    def failed_files(self) -> list[FakeFile]:
        rows = [
            {"_validationErrors": [{"code": "XDM-1001-400", "message": msg}]}
            for msg in ("Missing required field 'timestamp'", "Invalid value for 'id'")
        ]
        report = "\n".join(json.dumps(row, sort_keys=True) for row in rows) + "\n"
        name = f"part-00000-{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"
        return [
            FakeFile("_SUCCESS", b""),
            FakeFile(f"{name}-c000.json", report.encode()),
        ]


FAILED_BATCH_ERRORS = (
    {
        "code": "INGEST-1212-400",
        "description": "Encountered 2 errors in the data. Check the failed files.",
        "rows": ["1-2"],
    },
)


def generate_catalog(
    seed: int,
    *,
    dataset_id: str,
    other_dataset_id: str,
    start: Moment,
    end: Moment,
    batches: int,
    other_batches: int,
    files_per_batch: int,
    files_per_dataset_file: int,
    max_file_size: int,
    large_file_size: int,
) -> tuple[dict[str, dict[str, Any]], list[FakeBatch]]:
    """Datasets and batches of the demo catalog (see the module docstring).

    Raises:
        ValueError: a window shorter than one millisecond per batch, or a count or
            size out of range.
    """
    start_ms, end_ms = moment_ms(start), moment_ms(end)
    if batches < 1 or other_batches < 0 or files_per_batch < 1:
        raise ValueError("need batches >= 1, other_batches >= 0, files_per_batch >= 1")
    if files_per_dataset_file < 1 or max_file_size < 1 or large_file_size < 0:
        raise ValueError("need files_per_dataset_file >= 1 and max_file_size >= 1")
    if dataset_id == other_dataset_id:
        raise ValueError("dataset_id and other_dataset_id must differ")
    slot = (end_ms - start_ms) // batches
    if slot < 1:
        raise ValueError("the window is too short for that many batches")
    gen = _Generator(seed, max_file_size, files_per_dataset_file)
    result: list[FakeBatch] = []
    for index in range(batches):
        kind, status = _LAYOUT[index] if index < len(_LAYOUT) else ("plain", "success")
        created = start_ms + index * slot + (gen.rng.randrange(slot) if index else 0)
        batch_id = gen.batch_id()
        if kind == "loading":  # a side generator: the later batches keep their bytes
            side = _Generator(f"loading:{seed}", max_file_size, files_per_dataset_file)
            files = side.plain(batch_id, files_per_batch)
        else:
            files = gen.dataset_files(kind, batch_id, files_per_batch, large_file_size)
        failed = kind == "failed"
        result.append(
            FakeBatch(
                batch_id,
                dataset_id,
                status,
                created,
                files,
                failed_files=gen.failed_files() if failed else [],
                errors=FAILED_BATCH_ERRORS if failed else [],
            )
        )
    for created in (start_ms - 1, end_ms):
        batch_id = gen.batch_id()
        files = gen.plain(batch_id, 1)
        result.append(FakeBatch(batch_id, dataset_id, "success", created, files))
    other_slot = (end_ms - start_ms) // max(other_batches, 1)
    for index in range(other_batches):
        batch_id = gen.batch_id()
        created = start_ms + index * other_slot + gen.rng.randrange(max(other_slot, 1))
        files = gen.plain(batch_id, files_per_batch)
        result.append(FakeBatch(batch_id, other_dataset_id, "success", created, files))
    datasets = {
        dataset_id: {
            "name": "Web events (demo)",
            "description": "Generated web events",
        },
        other_dataset_id: {"name": "CRM profiles (demo)", "description": "Not to copy"},
    }
    return datasets, result


def make_batches(
    dataset_id: str,
    start: Moment,
    end: Moment,
    count: int,
    *,
    seed: int,
    files_per_batch: int,
    status: str,
    max_file_size: int,
) -> list[FakeBatch]:
    """``count`` fresh batches created in ``[start, end)``, the first at ``start``.

    Ids, times and bytes are drawn from the seed, the dataset and the window: the same
    arguments give the same batches, and their ids differ from :func:`generate_catalog`
    ones. Each batch has ``files_per_batch`` dataSetFileIds of one file each.

    Raises:
        ValueError: a count or size out of range, an unknown status, or a window
            shorter than one millisecond per batch.
    """
    start_ms, end_ms = moment_ms(start), moment_ms(end)
    if count < 1 or files_per_batch < 0 or max_file_size < 1:
        raise ValueError("need count >= 1, files_per_batch >= 0, max_file_size >= 1")
    check_status(status)
    slot = (end_ms - start_ms) // count
    if slot < 1:
        raise ValueError("the window is too short for that many batches")
    gen = _Generator(
        f"batches:{seed}:{dataset_id}:{start_ms}:{end_ms}", max_file_size, 1
    )
    result: list[FakeBatch] = []
    for index in range(count):
        created = start_ms + index * slot + (gen.rng.randrange(slot) if index else 0)
        batch_id = gen.batch_id()
        files = gen.plain(batch_id, files_per_batch)
        result.append(FakeBatch(batch_id, dataset_id, status, created, files))
    return result
