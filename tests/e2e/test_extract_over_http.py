"""Whole extractions over real HTTP: fake platform -> SQLite store + local sink."""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from typing import ClassVar

import attrs
import pytest

from aep_extract import (
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    KeyLayout,
    LocalSink,
    SQLiteCheckpointStore,
    ThreadPoolScheduler,
    TimeWindow,
    UnitStatus,
)
from aep_extract._tasks import source_metadata
from aep_extract.testing import FakeAepPlatform, FakeBatch, FakeDataSetFile, FakeFile

from .helpers import (
    DATASET,
    END,
    START,
    expected_sources,
    expected_statuses,
    expected_tree,
    manifests,
    sink_tree,
    unit_statuses,
)


def file_downloads(platform: FakeAepPlatform) -> int:
    return sum(
        1
        for r in platform.requests
        if r.method == "GET"
        and r.path.startswith("/data/foundation/export/files/")
        and "path" in r.query
    )


def make_extractor(platform, tmp_path, sink=None, **config) -> Extractor:
    return Extractor(
        HttpAepSource.from_env(platform.env(), chunk_size=256 * 1024),
        store=SQLiteCheckpointStore(tmp_path / "state.db"),
        sink=LocalSink(tmp_path / "out") if sink is None else sink,
        scheduler=ThreadPoolScheduler(4),
        config=ExtractorConfig(**config),
    )


def test_every_file_lands_byte_identical_with_manifests(fake_aep, tmp_path):
    with make_extractor(fake_aep, tmp_path) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok, str(report)
    expected = expected_tree(fake_aep)
    sink = LocalSink(tmp_path / "out")
    assert sink_tree(sink) == expected
    assert report.files_copied == len(expected)
    assert report.bytes_copied == sum(map(len, expected.values()))

    found = manifests(sink)
    exportable = {
        b.batch_id for b, _, _ in fake_aep.expected_files(DATASET, *_window_ms())
    }
    assert {m["batchId"] for m in found.values()} == exportable
    for key, manifest in found.items():
        assert key.endswith(f"batch={manifest['batchId']}/_manifest.json")
        for entry in manifest["files"]:
            content = expected[entry["key"]]
            assert entry["size"] == len(content)
            assert entry["sha256"] == hashlib.sha256(content).hexdigest()

    store = SQLiteCheckpointStore(tmp_path / "state.db")
    assert unit_statuses(store) == expected_statuses(fake_aep)
    assert {
        b for b, s in unit_statuses(store).items() if s == "Completed"
    } == exportable


def test_second_run_downloads_nothing(fake_aep, tmp_path):
    with make_extractor(fake_aep, tmp_path) as extractor:
        extractor.run(DATASET, START, END)
    fake_aep.clear_requests()
    with make_extractor(fake_aep, tmp_path) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok
    assert report.files_copied == 0
    assert file_downloads(fake_aep) == 0


class RecordingSQLiteStore(SQLiteCheckpointStore):
    """Keeps every LastProcessedOffset written, per unit."""

    offsets: ClassVar[dict[str, list[int]]] = defaultdict(list)

    def _replace(self, checkpoint, expected_version):
        super()._replace(checkpoint, expected_version)
        self.offsets[checkpoint.unit_id].append(checkpoint.last_processed_offset)


def test_interrupted_run_resumes_to_the_same_tree(fake_aep, tmp_path):
    """Stop after 10 files (as a kill would, mid-run), rerun: same tree, no rework."""
    RecordingSQLiteStore.offsets = defaultdict(list)
    store = RecordingSQLiteStore(tmp_path / "state.db")
    sink = LocalSink(tmp_path / "out")
    copied = []
    lock = threading.Lock()

    class StoppingSink(LocalSink):
        def open_write(self, key, **kw):
            with lock:
                copied.append(key)
                if len(copied) == 10:
                    extractor.stop()
            return super().open_write(key, **kw)

    extractor = Extractor(
        HttpAepSource.from_env(fake_aep.env()),
        store=store,
        sink=StoppingSink(tmp_path / "out"),
        scheduler=ThreadPoolScheduler(3),
    )
    first = extractor.run(DATASET, START, END)
    assert first.stopped
    assert not first.ok
    assert store.summary(DATASET)[UnitStatus.IN_PROGRESS] == 0
    partial = sink_tree(sink)
    assert 0 < len(partial) < len(expected_tree(fake_aep))

    fake_aep.clear_requests()
    second = Extractor(
        HttpAepSource.from_env(fake_aep.env()), store=store, sink=sink
    ).run(DATASET, START, END)
    assert second.ok
    assert sink_tree(sink) == expected_tree(fake_aep)
    assert second.files_copied == len(expected_tree(fake_aep)) - len(partial)
    assert file_downloads(fake_aep) <= second.files_copied + 1  # + the zero-byte file
    for unit, offsets in RecordingSQLiteStore.offsets.items():
        assert offsets == sorted(offsets), f"{unit}: offset moved backward"


def test_transient_refusal_is_retried_within_the_run(fake_aep, tmp_path):
    """A file download refused once (403) fails its unit's first attempt only."""
    refused: list[str] = []

    def refuse_once(request):
        if "path" in request.query and not refused:
            refused.append(request.path)
            return (403, {"Content-Type": "application/json"}, b'{"title": "no"}')
        return None

    fake_aep.add_fault(refuse_once)
    with make_extractor(fake_aep, tmp_path) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok
    assert len(report.failures) == 1
    assert "403" in report.failures[0][1]
    assert sink_tree(LocalSink(tmp_path / "out")) == expected_tree(fake_aep)


def test_split_batches_copy_each_file_once(fake_aep, tmp_path):
    with make_extractor(fake_aep, tmp_path, files_per_unit=2) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    assert any(cp.unit.offset_range != "0-*" for cp in store.list(DATASET))
    assert report.files_copied == len(expected_tree(fake_aep))
    assert sink_tree(LocalSink(tmp_path / "out")) == expected_tree(fake_aep)


def _window_ms() -> tuple[int, int]:
    window = TimeWindow.parse(START, END)
    return window.start_ms, window.end_ms


@pytest.mark.parametrize("planted_by", ["another tool", "another batch"])
def test_an_object_of_the_listed_size_from_elsewhere_is_replaced(
    fake_aep, tmp_path, planted_by
):
    """Only an object whose metadata names the source file proves an earlier copy:
    one of the right size planted by another tool (no metadata), or copied from a
    batch of the same files under a key template without ``{batch_id}``, is not."""
    sink = LocalSink(tmp_path / "out")
    planted = [source for source in expected_sources(fake_aep) if source[1].length][:3]
    for unit, ref, content in planted:
        other = attrs.evolve(unit, batch_id="another-batch")
        metadata = None if planted_by == "another tool" else source_metadata(other, ref)
        forged = bytes(255 - byte for byte in content)
        sink.write_bytes(KeyLayout().file_key(unit, ref), forged, metadata=metadata)
    with make_extractor(fake_aep, tmp_path, sink=sink) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok
    assert sink_tree(sink) == expected_tree(fake_aep)
    assert report.files_copied == len(expected_tree(fake_aep))
    for unit, ref, _ in planted:
        info = sink.stat(KeyLayout().file_key(unit, ref))
        assert info is not None
        assert info.metadata == source_metadata(unit, ref)


# -- keys that collide ---------------------------------------------------------------


def add_batch(platform: FakeAepPlatform, leaves: dict[str, dict[str, bytes]]):
    """A batch of the demo window: dataSetFileId -> {file name: bytes}."""
    batch = FakeBatch(
        "collide",
        DATASET,
        "success",
        _window_ms()[0] + 3_600_000,
        [
            FakeDataSetFile(file_id, [FakeFile(n, c) for n, c in files.items()])
            for file_id, files in leaves.items()
        ],
    )
    platform.add_batches([batch])
    return batch


def downloads_of(platform: FakeAepPlatform, batch: FakeBatch) -> list[str]:
    """dataSetFileIds of ``batch`` whose bytes were requested."""
    ids = {node.dataset_file_id for node in batch.all_dataset_files()}
    return [
        r.segments[4]
        for r in platform.requests
        if r.segments[3:4] == ["files"] and "path" in r.query and r.segments[4] in ids
    ]


def check_refused(platform, tmp_path, sink, report, batch, error: str) -> None:
    """Every unit of ``batch`` failed at once with ``error``, none of its files was
    downloaded or is in the sink, and every other batch was copied."""
    assert not report.ok
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    units = [cp for cp in store.list(DATASET) if cp.unit.batch_id == batch.batch_id]
    assert units
    for cp in units:
        assert cp.status is UnitStatus.FAILED
        assert cp.attempts == 1  # no retry can heal it
        assert cp.error == f"KeyCollisionError: {error}"
    assert sorted(report.failures) == sorted((cp.unit_id, cp.error) for cp in units)
    assert downloads_of(platform, batch) == []
    marker = f"/batch={batch.batch_id}/"
    assert [key for key in sink.list_keys() if marker in key] == []
    expected = {k: v for k, v in expected_tree(platform).items() if marker not in k}
    assert sink_tree(sink) == expected
    statuses = unit_statuses(store)
    assert statuses.pop(batch.batch_id) == "Failed"
    assert statuses == {
        b: s for b, s in expected_statuses(platform).items() if b != batch.batch_id
    }


@pytest.mark.parametrize("files_per_unit", [None, 1], ids=["whole", "split"])
def test_colliding_keys_fail_the_unit_before_anything_is_copied(
    fake_aep, tmp_path, files_per_unit
):
    """``a/b`` + ``c`` and ``a`` + ``b/c`` are both ``.../a/b/c``: one would be lost.
    Split units of the batch share its keys, so each of them fails too."""
    batch = add_batch(
        fake_aep, {"a/b": {"c": b"one"}, "a": {"b/c": b"two"}, "z": {"ok": b"3"}}
    )
    with make_extractor(fake_aep, tmp_path, files_per_unit=files_per_unit) as ex:
        report = ex.run(DATASET, START, END)
    key = f"{DATASET}/date=2024-06-10/batch=collide/a/b/c"
    check_refused(
        fake_aep,
        tmp_path,
        LocalSink(tmp_path / "out"),
        report,
        batch,
        f"dataSetFileId 'a' name 'b/c' and dataSetFileId 'a/b' name 'c' both map "
        f"to sink key {key!r}",
    )


@pytest.mark.parametrize(
    ("names", "fold"),
    [
        (("Data.csv", "data.csv"), {"fold_case": True}),
        (("caf\u00e9.csv", "cafe\u0301.csv"), {"fold_unicode": True}),
    ],
    ids=["case", "unicode"],
)
def test_names_one_on_a_folding_filesystem_fail_the_unit(
    fake_aep, tmp_path, names, fold
):
    """Names that differ only in case or Unicode form are one file on macOS or
    Windows: the unit fails there, and copies both where the filesystem (this one,
    probed) keeps them apart."""
    batch = add_batch(fake_aep, {"x": {names[0]: b"first", names[1]: b"second"}})
    first, second = sorted(names)
    prefix = f"{DATASET}/date=2024-06-10/batch=collide/x/"
    sink = LocalSink(tmp_path / "out", **fold)
    with make_extractor(fake_aep, tmp_path, sink=sink) as ex:
        report = ex.run(DATASET, START, END)
    check_refused(
        fake_aep,
        tmp_path,
        sink,
        report,
        batch,
        f"dataSetFileId 'x' name {first!r} and dataSetFileId 'x' name {second!r} "
        f"both map to sink keys {prefix + first!r} and {prefix + second!r}, one "
        "object in this sink",
    )

    (tmp_path / "again").mkdir()
    probed = LocalSink(tmp_path / "again" / "out")
    with make_extractor(fake_aep, tmp_path / "again", sink=probed) as ex:
        assert ex.run(DATASET, START, END).ok
    assert sink_tree(probed) == expected_tree(fake_aep)
