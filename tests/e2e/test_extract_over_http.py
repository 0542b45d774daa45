"""Whole extractions over real HTTP: fake platform -> SQLite store + local sink."""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from typing import ClassVar

from aep_extract import (
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    LocalSink,
    SQLiteCheckpointStore,
    ThreadPoolScheduler,
    UnitStatus,
)
from aep_extract.testing import FakeAepPlatform

from .helpers import (
    DATASET,
    END,
    START,
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


def make_extractor(platform, tmp_path, **config) -> Extractor:
    return Extractor(
        HttpAepSource.from_env(platform.env(), chunk_size=256 * 1024),
        store=SQLiteCheckpointStore(tmp_path / "state.db"),
        sink=LocalSink(tmp_path / "out"),
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
    from aep_extract import TimeWindow

    window = TimeWindow.parse(START, END)
    return window.start_ms, window.end_ms
