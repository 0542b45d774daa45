"""XDM Parquet batches on the fake platform, and the outputs a transform should make
of them: shared by the transform tests over a local sink and over S3 with Glue."""

from __future__ import annotations

from typing import Any

from aep_extract import FileRef, KeyLayout, MemorySink, TimeWindow, WorkUnit
from aep_extract.testing import FakeAepPlatform
from aep_extract.testing.xdm_parquet import xdm_batches
from aep_extract.transforms import TransformContext, open_transform, run_transform

DATASET = FakeAepPlatform.DEMO_DATASET_ID
START, END = "2024-07-01T00:00:00Z", "2024-07-02T00:00:00Z"
"""The window of the XDM batches (the demo's own batches are in June)."""
PROJECT = "project:columns=_id,timestamp,eventType,productListItems.SKU"
SPECS = {
    "project": [PROJECT],
    "filter": ["filter:expr=eventType = 'commerce.purchases'"],
    "jsonl": [PROJECT, "jsonl"],
    "parquet": ["parquet:compression=zstd"],
}


def xdm_platform(batches: int = 4, rows: int = 300, **options: Any) -> FakeAepPlatform:
    """A fake platform whose demo dataset also has ``batches`` batches of XDM
    Parquet files in ``[START, END)``."""
    platform = FakeAepPlatform.generate(batches=2, other_batches=0, **options)
    platform.add_batches(
        xdm_batches(DATASET, START, END, batches, seed=5, files_per_batch=3, rows=rows)
    )
    return platform


def expected_outputs(platform: FakeAepPlatform, specs: list[str]) -> dict[str, bytes]:
    """Output key -> bytes of every file of the window, transformed in memory."""
    transform = open_transform(specs)
    window = TimeWindow.parse(START, END)
    sink = MemorySink()
    layout = KeyLayout()
    for batch, file_id, fake in platform.expected_files(
        DATASET, window.start_ms, window.end_ms
    ):
        unit = WorkUnit(
            dataset_id=DATASET,
            batch_id=batch.batch_id,
            batch_created_ms=batch.created_ms,
        )
        file = FileRef(dataset_file_id=file_id, name=fake.name, length=fake.length)
        context = TransformContext(
            unit=unit, file=file, key=layout.file_key(unit, file)
        )
        run_transform(transform, [bytes(fake.content)], context, sink)
    return {key: sink.read_bytes(key) for key in sink.list_keys()}
