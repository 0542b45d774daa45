"""Files copied in parts, on the memory source and sink: what a stop, an abort, a
failed attempt and a file no longer listed leave behind, and the progress record."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Callable, Optional

import pytest

from aep_extract import (
    ConcurrencyConfig,
    Extractor,
    ExtractorConfig,
    FileRef,
    KeyLayout,
    MemoryCheckpointStore,
    MemorySink,
    SerialScheduler,
    UnitStatus,
    WorkUnit,
)
from aep_extract._jobs import (
    MAX_RECORDED_PARTS,
    OrderedHasher,
    RecordedFile,
    parse_progress,
    render_progress,
)
from aep_extract.errors import IncompleteDownload
from aep_extract.models import Batch
from aep_extract.testing import MemoryAepSource

DATASET = "ds"
START, END = "2024-06-10T00:00:00Z", "2024-06-12T00:00:00Z"
T0 = 1_717_977_600_000
PART = 4096
PARTS = 20
BIG = ("f1", "big.bin")


def batch(batch_id: str, hour: int = 0) -> Batch:
    return Batch(
        batch_id=batch_id,
        dataset_id=DATASET,
        status="success",
        created_ms=T0 + hour * 3_600_000,
    )


@pytest.fixture
def source() -> MemoryAepSource:
    rng = random.Random(7)
    files = {BIG: rng.randbytes(PARTS * PART - 5), ("f2", "small.bin"): b"abc"}
    return MemoryAepSource(DATASET, {batch("b1"): files})


def extractor(source: MemoryAepSource, store: Any, sink: MemorySink) -> Extractor:
    return Extractor(
        source,
        store=store,
        sink=sink,
        scheduler=SerialScheduler(),
        config=ExtractorConfig(
            concurrency=ConcurrencyConfig(workers=1, part_size=PART),
            unit_attempts=2,
        ),
    )


def big_key(source: MemoryAepSource) -> str:
    (b,) = [b for b in source.batches if b.batch_id == "b1"]
    unit = WorkUnit(dataset_id=DATASET, batch_id="b1", batch_created_ms=b.created_ms)
    ref = next(f for f in source.list_files("b1") if f.name == BIG[1])
    return KeyLayout().file_key(unit, ref)


def on_big_read(
    source: MemoryAepSource, nth: int, action: Callable[[], None]
) -> list[int]:
    """Call ``action`` at the ``nth`` read of the big file; returns the read count."""
    count = [0]

    def hook(file: FileRef) -> None:
        if file.name == BIG[1]:
            count[0] += 1
            if count[0] == nth:
                action()

    source.on_read = hook
    return count


def recorded_parts(store: MemoryCheckpointStore) -> dict[int, str]:
    (cp,) = store.list(DATASET)
    assert cp.progress is not None
    (recorded,) = parse_progress(cp.progress).values()
    return recorded.parts


def test_a_stop_keeps_the_upload_and_the_next_run_fetches_only_missing_parts(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    first = extractor(source, store, sink)
    on_big_read(source, 6, first.stop)
    assert first.run(DATASET, START, END).stopped
    assert sink.incomplete_uploads() == [big_key(source)]
    assert sorted(recorded_parts(store)) == [1, 2, 3, 4, 5, 6]
    assert store.list(DATASET)[0].status is UnitStatus.PENDING

    reads = on_big_read(source, 0, lambda: None)
    assert extractor(source, store, sink).run(DATASET, START, END).ok
    assert reads[0] == PARTS - 6
    assert sink.read_bytes(big_key(source)) == source.content(
        FileRef(dataset_file_id=BIG[0], name=BIG[1], length=PARTS * PART - 5)
    )
    assert sink.incomplete_uploads() == []
    (cp,) = store.list(DATASET)
    assert cp.progress is None
    manifest = json.loads(sink.read_bytes(KeyLayout().manifest_key(cp.unit)))
    for entry in manifest["files"]:  # the resumed file's SHA-256 read back
        body = sink.read_bytes(entry["key"])
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()


def test_an_abort_makes_nothing_visible_and_keeps_the_upload(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    first = extractor(source, store, sink)
    on_big_read(source, PARTS, lambda: first.stop(abort=True))  # at the last part
    assert first.run(DATASET, START, END).stopped
    assert sink.stat(big_key(source)) is None
    assert sink.incomplete_uploads() == [big_key(source)]
    source.on_read = None
    assert extractor(source, store, sink).run(DATASET, START, END).ok
    assert sink.stat(big_key(source)) is not None


def test_a_failed_attempt_keeps_the_upload_for_the_next_attempt(source):
    store, sink = MemoryCheckpointStore(), MemorySink()

    def fail() -> None:
        raise IncompleteDownload("cut")

    reads = on_big_read(source, 8, fail)
    report = extractor(source, store, sink).run(DATASET, START, END)
    assert report.ok  # the second attempt resumed the upload
    assert reads[0] == PARTS + 1  # every part once, and the one that failed
    (cp,) = store.list(DATASET)
    assert (cp.attempts, cp.progress) == (1, None)


def test_the_upload_of_a_file_no_longer_listed_is_aborted(source):
    """Only that upload: another unit that failed keeps the dataset unfinished, so
    the end-of-dataset clean-up does not run."""
    store, sink = MemoryCheckpointStore(), MemorySink()
    first = extractor(source, store, sink)
    on_big_read(source, 3, first.stop)
    first.run(DATASET, START, END)
    old_key = big_key(source)
    assert sink.incomplete_uploads() == [old_key]

    (b1,) = list(source.batches)
    files = dict(source.batches[b1])
    files[("f1", "renamed.bin")] = files.pop(BIG)
    source.batches = {b1: files, batch("b2", 1): {("g1", "broken.bin"): b"x"}}

    def broken(file: FileRef) -> None:
        if file.name == "broken.bin":
            raise IncompleteDownload("never readable")

    source.on_read = broken
    report = extractor(source, store, sink).run(DATASET, START, END)
    assert report.units[UnitStatus.FAILED] == 1
    assert sink.incomplete_uploads() == []
    assert sink.stat(old_key) is None


def test_a_progress_record_round_trips_and_lists_at_most_2000_parts():
    files = [
        RecordedFile(
            offset=offset,
            key=f"k{offset}",
            token="t",
            size=10**9,
            part_size=PART,
            parts={n: f"c{n} e{n}" for n in range(1, 1501)},
        )
        for offset in (0, 1)
    ]
    text = render_progress(files)
    assert text is not None
    parsed = parse_progress(text)
    assert parsed[0] == files[0]
    assert len(parsed[1].parts) == MAX_RECORDED_PARTS - 1500
    assert len(text) < 200_000
    assert render_progress([]) is None


@pytest.mark.parametrize("text", ["", "not json", '{"files": [{"o": 1}]}', "[]"])
def test_an_unreadable_progress_record_is_ignored(text: Optional[str]):
    assert parse_progress(text) == {}


def test_parts_are_hashed_in_order_whatever_order_they_arrive_in():
    parts = [bytes([n]) * 1000 for n in range(6)]
    hasher = OrderedHasher()
    for number in (2, 6, 1, 5, 3):
        hasher.add(number, parts[number - 1])
    assert hasher.waiting == 2  # 5 and 6 wait for 4
    hasher.add(4, parts[3])
    assert hasher.waiting == 0
    assert hasher.hexdigest() == hashlib.sha256(b"".join(parts)).hexdigest()
