"""Hooks, log context, JSON logs, the run report and EMF metrics, on in-memory parts."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import pytest

from aep_extract import (
    Extractor,
    ExtractorConfig,
    MemoryCheckpointStore,
    MemorySink,
    RunReport,
    SerialScheduler,
    UnitStatus,
)
from aep_extract._logging import JsonFormatter, log_context
from aep_extract.errors import SinkError
from aep_extract.hooks import CallbackHooks, ExtractionHooks, HookDispatcher
from aep_extract.metrics import EmfMetrics
from aep_extract.progress import ProgressBar, make_progress
from aep_extract.testing import MemoryAepSource

from .test_extractor import DATASET, END, START, make_batches


class Recorder(ExtractionHooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def unit_started(self, **kw):
        self.events.append(("unit_started", kw))

    def unit_listed(self, **kw):
        self.events.append(("unit_listed", kw))

    def unit_finished(self, **kw):
        self.events.append(("unit_finished", kw))

    def unit_failed(self, **kw):
        self.events.append(("unit_failed", kw))

    def file_copied(self, **kw):
        self.events.append(("file_copied", kw))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def extractor(source, **options) -> Extractor:
    return Extractor(
        source,
        store=MemoryCheckpointStore(),
        sink=MemorySink(),
        scheduler=SerialScheduler(),
        **options,
    )


def test_hooks_follow_each_unit_and_file():
    recorder = Recorder()
    copied = []
    source = MemoryAepSource(DATASET, make_batches(2, 3))
    report = extractor(
        source,
        hooks=[recorder, {"file_copied": lambda **kw: copied.append(kw["key"])}],
        progress=False,
    ).run(DATASET, START, END)
    assert report.ok
    names = recorder.names()
    assert names.count("unit_started") == 2
    assert names.count("unit_listed") == 2
    assert names.count("unit_finished") == 2
    assert names.count("file_copied") == 6
    assert "unit_failed" not in names
    first = dict(recorder.events[0][1])
    assert first["attempt"] == 1
    assert first["unit"].batch_id in {"batch0", "batch1"}
    listed = [kw for name, kw in recorder.events if name == "unit_listed"]
    assert sum(kw["files"] for kw in listed) == 6
    assert sum(kw["bytes"] for kw in listed) == report.bytes_copied
    finished = [kw for name, kw in recorder.events if name == "unit_finished"]
    assert sum(kw["bytes"] for kw in finished) == report.bytes_copied
    files = [kw for name, kw in recorder.events if name == "file_copied"]
    assert all(kw["fresh"] for kw in files)
    assert sorted(copied) == sorted(kw["key"] for kw in files)


def test_rerun_reports_files_as_not_fresh():
    source = MemoryAepSource(DATASET, make_batches(1, 2))
    store, sink = MemoryCheckpointStore(), MemorySink()
    Extractor(source, store=store, sink=sink, scheduler=SerialScheduler()).run(
        DATASET, START, END
    )
    recorder = Recorder()
    fresh_store = MemoryCheckpointStore()  # progress forgotten, objects still there
    Extractor(
        source,
        store=fresh_store,
        sink=sink,
        scheduler=SerialScheduler(),
        hooks=recorder,
    ).run(DATASET, START, END)
    files = [kw for name, kw in recorder.events if name == "file_copied"]
    assert len(files) == 2
    assert not any(kw["fresh"] for kw in files)


def test_failing_unit_reports_each_attempt_and_the_final_one():
    def broken(file):
        raise SinkError("disk on fire")

    recorder = Recorder()
    source = MemoryAepSource(DATASET, make_batches(1, 2), on_read=broken)
    report = extractor(
        source, hooks=recorder, config=ExtractorConfig(unit_attempts=3)
    ).run(DATASET, START, END)
    failed = [kw for name, kw in recorder.events if name == "unit_failed"]
    assert [kw["final"] for kw in failed] == [False, False, True]
    assert "disk on fire" in failed[-1]["error"]
    assert report.units[UnitStatus.FAILED] == 1
    text = str(report)
    assert text.count("FAILED unit") == 1
    assert "(3 attempts): SinkError: disk on fire" in text


def test_a_raising_hook_is_logged_and_the_run_goes_on(caplog):
    def explode(**kw):
        raise RuntimeError("hook bug")

    source = MemoryAepSource(DATASET, make_batches(1, 2))
    with caplog.at_level(logging.ERROR, logger="aep_extract.hooks"):
        report = extractor(source, hooks={"file_copied": explode}).run(
            DATASET, START, END
        )
    assert report.ok
    assert report.files_copied == 2
    assert sum("hook bug" in (r.exc_text or "") for r in caplog.records) == 2


def test_callback_hooks_reject_unknown_events():
    with pytest.raises(TypeError, match="file_copyed"):
        CallbackHooks(file_copyed=print)


def test_dispatcher_flattens_and_is_falsy_when_empty():
    assert not HookDispatcher()
    recorder = Recorder()
    nested = HookDispatcher([recorder, HookDispatcher(recorder)])
    assert nested.hooks == [recorder, recorder]
    nested.unit_failed(unit=None, error="x", final=True, extra="ignored")
    assert recorder.names() == ["unit_failed", "unit_failed"]


def test_unit_log_records_carry_dataset_and_batch(caplog):
    source = MemoryAepSource(DATASET, make_batches(1, 2))
    with caplog.at_level(logging.DEBUG, logger="aep_extract"):
        extractor(source).run(DATASET, START, END)
    unit_lines = [r for r in caplog.records if r.getMessage().startswith("unit ")]
    assert unit_lines
    for record in unit_lines:
        assert record.dataset == DATASET
        assert record.batch == "batch0"
    copied = [r for r in caplog.records if r.getMessage().startswith("copied ")]
    assert len(copied) == 2
    assert all(r.file.startswith("batch0-") for r in copied)


def test_json_formatter_writes_one_object_with_context():
    source = MemoryAepSource(DATASET, make_batches(1, 1))
    unit = extractor(source)._units_of(next(iter(source.batches)))[0]
    record = logging.LogRecord(
        "aep_extract._engine",
        logging.INFO,
        __file__,
        1,
        "unit %s: %d files",
        (unit.unit_id, 3),
        None,
    )
    record.__dict__.update(log_context(unit))
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "aep_extract._engine"
    assert entry["message"] == f"unit {unit.unit_id}: 3 files"
    assert entry["dataset"] == DATASET
    assert entry["batch"] == "batch0"
    assert entry["time"].endswith("+00:00")
    assert "file" not in entry


def make_report(**changes) -> RunReport:
    fields: dict[str, Any] = {
        "dataset_id": "ds",
        "units": {UnitStatus.COMPLETED: 2, UnitStatus.FAILED: 1},
        "units_completed": 2,
        "files_copied": 5,
        "bytes_copied": 4000,
        "duration_seconds": 2.0,
        "retries": 3,
        "throttled": 2,
        "failures": (("u1", "boom 1"), ("u2", "other"), ("u1", "boom 2")),
    }
    fields.update(changes)
    return RunReport(**fields)


def test_report_throughput_and_grouped_failures():
    report = make_report()
    assert report.throughput_bytes_per_second == 2000.0
    assert make_report(duration_seconds=0.0).throughput_bytes_per_second == 0.0
    data = report.to_dict()
    assert data["throughputBytesPerSecond"] == 2000.0
    assert data["throttled"] == 2
    assert report.failures_by_unit() == {"u1": (2, "boom 2"), "u2": (1, "other")}
    lines = str(report).splitlines()
    assert "FAILED unit u1 (2 attempts): boom 2" in lines
    assert "FAILED unit u2: other" in lines
    assert len([line for line in lines if line.startswith("FAILED")]) == 2


def test_emf_line_has_the_embedded_metric_format_shape():
    stream = io.StringIO()
    before = int(time.time() * 1000)
    EmfMetrics(stream=stream, namespace="test/ns").publish(make_report())
    after = int(time.time() * 1000)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    meta = doc["_aws"]
    assert before <= meta["Timestamp"] <= after  # epoch milliseconds
    directive = meta["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "test/ns"
    assert directive["Dimensions"] == [["DatasetId"]]
    names = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert names["BytesCopied"] == "Bytes"
    assert names["DurationSeconds"] == "Seconds"
    for name in names:  # every declared metric has its value at the top level
        assert isinstance(doc[name], (int, float))
    assert doc["DatasetId"] == "ds"
    assert (doc["FilesCopied"], doc["Failures"], doc["Retries"], doc["Throttled"]) == (
        5,
        3,
        3,
        2,
    )


def test_emf_to_a_logger(caplog):
    with caplog.at_level(logging.INFO, logger="emf"):
        EmfMetrics(log=logging.getLogger("emf")).publish(make_report())
    (record,) = caplog.records
    assert json.loads(record.getMessage())["BytesCopied"] == 4000


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_auto_detects_a_terminal():
    assert make_progress("ds", None, io.StringIO()) is None
    assert make_progress("ds", False, FakeTty()) is None
    bar = make_progress("ds", None, FakeTty())
    assert isinstance(bar, ProgressBar)
    bar.close()


def test_progress_bar_counts_listed_and_copied_files():
    stream = FakeTty()
    source = MemoryAepSource(DATASET, make_batches(2, 3))
    bar = ProgressBar(DATASET, stream=stream)
    report = extractor(source, hooks=bar).run(DATASET, START, END, progress=False)
    assert (bar.files_done, bar.files_total) == (6, 6)
    assert bar.bar.total == report.bytes_copied
    assert bar.bar.n == report.bytes_copied
    bar.close()
    assert "6/6 files" in stream.getvalue()
