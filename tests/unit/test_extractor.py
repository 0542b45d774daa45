"""The engine's work model on in-memory parts: exact output, resume, leases, stop."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import attrs
import pytest

from aep_extract import (
    Batch,
    Extractor,
    ExtractorConfig,
    FileRef,
    KeyLayout,
    MemoryCheckpointStore,
    MemorySink,
    NotFoundError,
    SerialScheduler,
    SinkError,
    ThreadPoolScheduler,
    UnitStatus,
    WorkUnit,
)
from aep_extract.errors import ConfigError, ExtractionFailed, InvalidResponse
from aep_extract.testing import MemoryAepSource

DATASET = "ds1"
START, END = "2024-06-10T00:00:00Z", "2024-06-12T00:00:00Z"
DAY_MS = 86_400_000
T0 = 1_717_977_600_000  # 2024-06-10T00:00:00Z


def make_batches(
    n_batches: int = 3, n_files: int = 5
) -> dict[Batch, dict[tuple[str, str], bytes]]:
    batches = {}
    for b in range(n_batches):
        batch = Batch(
            batch_id=f"batch{b}",
            dataset_id=DATASET,
            status="success",
            created_ms=T0 + b * 3_600_000,
        )
        batches[batch] = {
            (f"batch{b}-{f % 2}", f"part {f}+x.parquet"): bytes([b, f]) * (f * 11)
            for f in range(n_files)
        }
    return batches


class RecordingStore(MemoryCheckpointStore):
    """Keeps every LastProcessedOffset written, per unit."""

    def __init__(self) -> None:
        super().__init__()
        self.offsets: dict[str, list[int]] = defaultdict(list)

    def _replace(self, checkpoint, expected_version):
        super()._replace(checkpoint, expected_version)
        self.offsets[checkpoint.unit_id].append(checkpoint.last_processed_offset)


def expected_tree(source: MemoryAepSource) -> dict[str, bytes]:
    layout = KeyLayout()
    tree = {}
    for batch in source.batches:
        unit = WorkUnit(
            dataset_id=DATASET,
            batch_id=batch.batch_id,
            batch_created_ms=batch.created_ms,
        )
        for ref in source.list_files(batch.batch_id):
            tree[layout.file_key(unit, ref)] = source.content(ref)
    return tree


def data_objects(sink: MemorySink) -> dict[str, bytes]:
    return {k: sink.read_bytes(k) for k in sink.list_keys() if "_manifest" not in k}


@pytest.fixture
def source() -> MemoryAepSource:
    return MemoryAepSource(DATASET, make_batches())


def extractor(source, store, sink, **config) -> Extractor:
    return Extractor(
        source,
        store=store,
        sink=sink,
        scheduler=SerialScheduler(),
        config=ExtractorConfig(**config),
    )


def test_run_copies_every_file_once_with_manifests(source):
    store, sink = RecordingStore(), MemorySink()
    report = extractor(source, store, sink).run(DATASET, START, END)

    assert report.ok
    assert report.units[UnitStatus.COMPLETED] == 3
    assert report.files_copied == 15
    assert report.bytes_copied == sum(len(v) for v in expected_tree(source).values())
    assert data_objects(sink) == expected_tree(source)
    for cp in store.list(DATASET):
        assert cp.last_processed_offset == 4
        assert cp.files_done == 5
        manifest = json.loads(sink.read_bytes(KeyLayout().manifest_key(cp.unit)))
        assert manifest["fileCount"] == 5
        for entry in manifest["files"]:
            body = sink.read_bytes(entry["key"])
            assert entry["size"] == len(body)
            assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert [e["offset"] for e in manifest["files"]] == list(range(5))


def test_second_run_copies_nothing(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    extractor(source, store, sink).run(DATASET, START, END)
    reads = len(source.reads)
    report = extractor(source, store, sink).run(DATASET, START, END)
    assert report.ok
    assert report.files_copied == 0
    assert len(source.reads) == reads


def test_interrupted_run_resumes_without_duplicates(source):
    """A sink that breaks after 7 files; the rerun finishes the same tree."""
    store, sink = RecordingStore(), MemorySink()
    writes = []

    class FlakySink(MemorySink):
        def open_write(self, key, **kw):
            if "_manifest" not in key:
                writes.append(key)
                if len(writes) == 8:
                    raise SinkError("disk full")
            return sink.open_write(key, **kw)

    first = extractor(source, store, FlakySink(), unit_attempts=1).run(
        DATASET, START, END
    )
    assert not first.ok
    assert first.units[UnitStatus.FAILED] == 1
    assert "disk full" in first.failures[0][1]
    failed = store.list(DATASET, UnitStatus.FAILED)[0]
    assert failed.error == "SinkError: disk full"
    assert failed.last_processed_offset >= 0  # progress before the failure is kept

    assert extractor(source, store, sink).retry_failed(DATASET) == 1
    second = extractor(source, store, sink).run(DATASET, START, END)
    assert second.ok
    assert second.files_skipped == failed.last_processed_offset + 1
    assert data_objects(sink) == expected_tree(source)
    for offsets in store.offsets.values():
        assert offsets == sorted(offsets), "LastProcessedOffset moved backward"


def test_failing_unit_is_retried_then_marked_failed(source):
    def broken(file: FileRef) -> None:
        if file.dataset_file_id.startswith("batch1"):
            raise InvalidResponse("bad listing")

    source.on_read = broken
    store, sink = MemoryCheckpointStore(), MemorySink()
    report = extractor(source, store, sink, unit_attempts=3).run(DATASET, START, END)
    assert not report.ok
    assert len(report.failures) == 3  # three attempts, all in this run
    failed = store.get("batch1")
    assert failed is not None
    assert failed.status is UnitStatus.FAILED
    assert failed.attempts == 3
    assert report.units[UnitStatus.COMPLETED] == 2


def test_expired_lease_of_dead_worker_is_taken_over(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    now = [1000.0]
    store.clock = lambda: now[0]
    ex = extractor(source, store, sink, lease_seconds=60)
    ex.plan(DATASET, START, END)
    dead = store.claim(DATASET, "dead-worker", 60)
    assert dead is not None
    now[0] += 61  # the dead worker's lease runs out
    report = ex.execute(DATASET)
    assert report.ok
    assert data_objects(sink) == expected_tree(source)


def test_crashed_workers_do_not_use_up_the_attempts():
    source = MemoryAepSource(DATASET, make_batches(n_batches=1))
    store, sink = MemoryCheckpointStore(), MemorySink()
    now = [1000.0]
    store.clock = lambda: now[0]
    ex = extractor(source, store, sink, lease_seconds=60, unit_attempts=2)
    ex.plan(DATASET, START, END)
    for worker in ("dead-1", "dead-2"):  # two workers died holding the unit
        assert store.claim(DATASET, worker, 60) is not None
        now[0] += 61
    failed: list[FileRef] = []

    def fail_once(file: FileRef) -> None:
        if not failed:
            failed.append(file)
            raise InvalidResponse("flaky read")

    source.on_read = fail_once
    report = ex.execute(DATASET)
    assert report.ok, report.failures
    assert len(report.failures) == 1
    done = store.get("batch0")
    assert done is not None
    assert (done.status, done.attempts, done.crashes) == (UnitStatus.COMPLETED, 1, 2)
    assert data_objects(sink) == expected_tree(source)


def test_a_unit_that_keeps_killing_its_workers_is_failed():
    source = MemoryAepSource(DATASET, make_batches(n_batches=1))
    store, sink = MemoryCheckpointStore(), MemorySink()
    now = [1000.0]
    store.clock = lambda: now[0]
    ex = extractor(source, store, sink, lease_seconds=60, unit_crashes=3)
    ex.plan(DATASET, START, END)
    for worker in ("dead-1", "dead-2", "dead-3"):  # the last two took it over
        assert store.claim(DATASET, worker, 60) is not None
        now[0] += 61
    report = ex.execute(DATASET)
    assert not report.ok
    assert report.units[UnitStatus.FAILED] == 1
    failed = store.get("batch0")
    assert failed is not None
    assert (failed.attempts, failed.crashes) == (0, 3)
    assert failed.error == (
        "lease of dead-3 expired 3 times: its workers died or hung while copying it"
    )
    assert source.reads == []
    assert data_objects(sink) == {}


def test_split_units_cover_every_file_once():
    source = MemoryAepSource(DATASET, make_batches(n_batches=2, n_files=7))
    store, sink = MemoryCheckpointStore(), MemorySink()
    report = extractor(source, store, sink, files_per_unit=3).run(DATASET, START, END)
    assert report.ok
    ranges = sorted(cp.unit.offset_range for cp in store.list(DATASET))
    assert ranges == ["0-2", "0-2", "3-5", "3-5", "6-6", "6-6"]
    assert report.files_copied == 14
    assert data_objects(sink) == expected_tree(source)


def test_threaded_run_matches_serial(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    ex = Extractor(source, store=store, sink=sink, scheduler=ThreadPoolScheduler(4))
    with ex:
        report = ex.run(DATASET, START, END)
    assert report.ok
    assert data_objects(sink) == expected_tree(source)


def test_stop_releases_units_for_a_later_run(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    ex = extractor(source, store, sink)

    def stop_after_first(file: FileRef) -> None:
        ex.stop()

    source.on_read = stop_after_first
    report = ex.run(DATASET, START, END)
    assert report.stopped
    assert not report.ok
    assert store.summary(DATASET)[UnitStatus.IN_PROGRESS] == 0
    source.on_read = None
    final = extractor(source, store, sink).run(DATASET, START, END)
    assert final.ok
    assert data_objects(sink) == expected_tree(source)


def test_window_and_dataset_are_validated(source):
    ex = extractor(source, MemoryCheckpointStore(), MemorySink())
    with pytest.raises(ConfigError, match="no UTC offset"):
        ex.plan(DATASET, "2024-06-10T00:00:00", END)
    with pytest.raises(ConfigError, match="not before"):
        ex.plan(DATASET, END, START)
    with pytest.raises(NotFoundError):
        ex.plan("nope", START, END)


def test_registration_never_resets_progress(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    extractor(source, store, sink).run(DATASET, START, END)
    plan = extractor(source, store, sink).plan(DATASET, START, END)
    assert plan.units_new == 0
    assert store.summary(DATASET)[UnitStatus.COMPLETED] == 3


def test_replanning_keeps_a_batch_unit_layout(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    extractor(source, store, sink, files_per_unit=2).plan(DATASET, START, END)
    split = sorted(cp.unit_id for cp in store.list(DATASET))
    plan = extractor(source, store, sink).plan(DATASET, START, END)
    assert plan.units_new == 0
    assert sorted(cp.unit_id for cp in store.list(DATASET)) == split
    report = extractor(source, store, sink).execute(DATASET)
    assert report.files_copied == 15


def test_raise_for_failures_names_the_failed_units(source):
    def broken(file: FileRef) -> None:
        raise InvalidResponse("bad bytes")

    source.on_read = broken
    report = extractor(
        source, MemoryCheckpointStore(), MemorySink(), unit_attempts=1
    ).run(DATASET, START, END)
    with pytest.raises(ExtractionFailed, match="3 unit") as caught:
        report.raise_for_failures()
    assert {unit for unit, _ in caught.value.failures} == {"batch0", "batch1", "batch2"}


def test_deadline_passed_starts_nothing(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    report = extractor(source, store, sink).run(DATASET, START, END, deadline=0)
    assert report.stopped
    assert report.files_copied == 0
    assert store.summary(DATASET)[UnitStatus.PENDING] == 3
    assert source.reads == []


def test_abort_drops_the_file_in_flight_and_releases(source):
    store, sink = MemoryCheckpointStore(), MemorySink()
    ex = extractor(source, store, sink)
    calls = []

    def abort_on_third(file: FileRef) -> None:
        calls.append(file)
        if len(calls) == 3:
            ex.stop(abort=True)

    source.on_read = abort_on_third
    report = ex.run(DATASET, START, END)
    assert report.stopped
    assert report.files_copied == 2
    assert len(data_objects(sink)) == 2  # the aborted third file left nothing
    assert store.summary(DATASET)[UnitStatus.PENDING] == 3
    released = store.get("batch0")
    assert released is not None
    assert released.attempts == 0  # a stop is not a failed attempt
    source.on_read = None
    assert extractor(source, store, sink).run(DATASET, START, END).ok
    assert data_objects(sink) == expected_tree(source)


class NoMetadataSink(MemorySink):
    """A sink that keeps no metadata, as a custom sink may not."""

    def stat(self, key):
        info = super().stat(key)
        return None if info is None else attrs.evolve(info, metadata=None)


@pytest.mark.parametrize("sink_type", [MemorySink, NoMetadataSink])
def test_an_object_of_the_listed_size_counts_as_copied_only_with_proof(
    source, sink_type
):
    """batch0's first two files are recorded as copied, batch1's are not; the keys
    of both second files hold foreign bytes of the listed size. Metadata naming the
    source proves a copy; without metadata, only the store's record does."""
    store, sink = MemoryCheckpointStore(), sink_type()
    ex = extractor(source, store, sink)
    ex.plan(DATASET, START, END)
    for _ in range(100):  # claims pick at random: until batch0 is the one
        lease = store.claim(DATASET, "setup", 60)
        assert lease is not None
        done = lease.unit.batch_id == "batch0"
        if done:
            lease = store.advance(lease, 1, files=2, size=44)
        store.release(lease)
        if done:
            break
    forged = {}
    for batch_id in ("batch0", "batch1"):
        checkpoint = store.get(batch_id)
        assert checkpoint is not None
        unit = checkpoint.unit
        ref = source.list_files(batch_id)[1]
        assert ref.length
        key = KeyLayout().file_key(unit, ref)
        forged[key] = b"?" * ref.length
        sink.write_bytes(key, forged[key])

    report = ex.execute(DATASET)

    assert report.ok
    expected = expected_tree(source)
    if sink_type is NoMetadataSink:  # the record is the only proof: batch0's stays
        expected |= {k: v for k, v in forged.items() if "batch=batch0/" in k}
    assert data_objects(sink) == expected


def test_files_a_dead_worker_wrote_but_never_recorded_count_as_done(source):
    """A worker died after writing a unit's files and before recording them: the
    rerun finds them in the sink, does not copy them again, and the unit's done
    counters still cover every file of it, once."""
    first_sink = MemorySink()
    extractor(source, MemoryCheckpointStore(), first_sink).run(DATASET, START, END)
    store, sink = MemoryCheckpointStore(), MemorySink()
    for key in first_sink.list_keys():  # the files, with their proving metadata
        if "_manifest" not in key:
            with first_sink.open_read(key) as data:
                info = first_sink.stat(key)
                assert info is not None
                sink.write_bytes(key, data.read(), metadata=info.metadata)
    report = extractor(source, store, sink).run(DATASET, START, END)
    assert report.ok
    assert report.files_copied == 0
    assert report.files_skipped == 15
    for cp in store.list(DATASET):
        files = source.list_files(cp.unit.batch_id)
        assert cp.files_done == len(files)
        assert cp.bytes_done == sum(f.length for f in files)
