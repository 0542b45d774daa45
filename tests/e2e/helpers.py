"""Shared checks for end-to-end tests: the tree a correct extraction produces."""

from __future__ import annotations

import json

from aep_extract import (
    CheckpointStore,
    FileRef,
    KeyLayout,
    Sink,
    TimeWindow,
    WorkUnit,
)
from aep_extract.models import EXPORTABLE_BATCH_STATUSES, PENDING_BATCH_STATUSES
from aep_extract.testing import FakeAepPlatform

DATASET = FakeAepPlatform.DEMO_DATASET_ID
START, END = FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END


def run_args(sink: str, store: str, *extra: str) -> list[str]:
    """``aep-extract run`` arguments for the demo window of the demo dataset."""
    return [
        "run", "--dataset", DATASET, "--start", START, "--end", END,
        "--sink", sink, "--store", store, *extra,
    ]  # fmt: skip


def expected_sources(
    platform: FakeAepPlatform, start: str = START, end: str = END
) -> list[tuple[WorkUnit, FileRef, bytes]]:
    """``(whole-batch unit, file, bytes)`` of every file of every exportable batch in
    the window."""
    window = TimeWindow.parse(start, end)
    return [
        (
            WorkUnit(
                dataset_id=DATASET,
                batch_id=batch.batch_id,
                batch_created_ms=batch.created_ms,
            ),
            FileRef(dataset_file_id=file_id, name=fake.name, length=fake.length),
            bytes(fake.content),
        )
        for batch, file_id, fake in platform.expected_files(
            DATASET, window.start_ms, window.end_ms
        )
    ]


def expected_tree(
    platform: FakeAepPlatform, start: str = START, end: str = END
) -> dict[str, bytes]:
    """Sink key -> bytes for every file of every exportable batch in the window."""
    layout = KeyLayout()
    return {
        layout.file_key(unit, ref): content
        for unit, ref, content in expected_sources(platform, start, end)
    }


def sink_tree(sink: Sink) -> dict[str, bytes]:
    """Every data object of a sink (manifests, also split ones, left out)."""
    return {
        key: sink.read_bytes(key)
        for key in sink.list_keys()
        if "/_manifest." not in key
    }


def manifests(sink: Sink) -> dict[str, dict]:  # type: ignore[type-arg]
    """Every manifest of a sink, parsed."""
    return {
        key: json.loads(sink.read_bytes(key))
        for key in sink.list_keys()
        if key.endswith("_manifest.json")
    }


def expected_statuses(
    platform: FakeAepPlatform, start: str = START, end: str = END
) -> dict[str, str]:
    """Batch id -> unit status after a complete run of the window: Completed for
    exportable batches, Waiting for those AEP has not promoted yet."""
    window = TimeWindow.parse(start, end)
    return {
        batch.batch_id: "Completed"
        if batch.status in EXPORTABLE_BATCH_STATUSES
        else "Waiting"
        for batch in platform.batches_of(DATASET)
        if window.contains_ms(batch.created_ms)
        and (
            batch.status in EXPORTABLE_BATCH_STATUSES
            or batch.status in PENDING_BATCH_STATUSES
        )
    }


def unit_statuses(store: CheckpointStore) -> dict[str, str]:
    """Batch id -> unit status in the store (whole-batch units)."""
    return {cp.unit.batch_id: cp.status.value for cp in store.list(DATASET)}


def table_statuses(items: list[dict]) -> dict[str, str]:  # type: ignore[type-arg]
    """Batch id -> Status of the unit items of a raw DynamoDB scan (other items,
    such as the dataset's watermark, have no Status)."""
    return {i["BatchID"]["S"]: i["Status"]["S"] for i in items if "Status" in i}
