"""Two extractors sharing one source: each run gets its own events and counts.

One source is how extractors in a process share a rate budget, so what happens
during a run must belong to the run: its hooks hear only its own retries and 429s,
its report counts only its own requests. The fake platform's request log is the
ground truth: each 429 it answered is traced to the run that asked.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from aep_extract import (
    Extractor,
    HttpAepSource,
    LocalSink,
    RetryConfig,
    RunReport,
    SQLiteCheckpointStore,
    TimeWindow,
)
from aep_extract.models import from_epoch_ms
from aep_extract.testing import FakeAepPlatform, FakeRequest, FaultPlan, FaultRule

from .helpers import DATASET, END, START

NOT_SHARED = r"^/data/foundation/(export/|catalog/batches)"
"""Requests that belong to one run (the dataset lookup is made by both)."""


def run_of(request: FakeRequest, created: dict[str, int], middle: int) -> str:
    """Which run asked: "first" for batches created before ``middle``."""
    if request.path.endswith("/catalog/batches"):
        after = int(request.query["createdAfter"]) + 1
        return "first" if after < middle else "second"
    for identity, created_ms in created.items():
        if identity in request.path:
            return "first" if created_ms < middle else "second"
    raise AssertionError(f"request of no run: {request.path}")


def test_two_extractors_sharing_a_source_each_get_their_own_events(tmp_path: Path):
    faults = FaultPlan(
        rules=[
            FaultRule("429", probability=0.2, match=NOT_SHARED),
        ],
        seed=5,
    )
    with FakeAepPlatform.generate(faults=faults) as platform:
        batches = [
            b
            for b in platform.batches_of(DATASET)
            if TimeWindow.parse(START, END).contains_ms(b.created_ms)
        ]
        middle = batches[len(batches) // 2].created_ms
        created = {b.batch_id: b.created_ms for b in batches}
        created |= {
            node.dataset_file_id: b.created_ms
            for b in batches
            for node in b.all_dataset_files()
        }
        source = HttpAepSource.from_env(
            platform.env(),
            retry=RetryConfig(attempts=10, initial_wait=0.01, max_wait=0.05),
            max_requests_per_second=1000,
        )
        events: dict[str, list[tuple[str, Any]]] = {"first": [], "second": []}
        reports: dict[str, RunReport] = {}
        windows = {
            "first": (START, _iso(middle)),
            "second": (_iso(middle), END),
        }

        def run(name: str) -> None:
            def record(kind: str) -> Any:
                return lambda **kw: events[name].append((kind, kw))

            with Extractor(
                source,
                store=SQLiteCheckpointStore(tmp_path / f"{name}.db"),
                sink=LocalSink(tmp_path / name),
                hooks={"retry": record("retry"), "throttled": record("throttled")},
                progress=False,
            ) as extractor:
                reports[name] = extractor.run(DATASET, *windows[name])

        threads = [threading.Thread(target=run, args=(n,)) for n in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        answered = {"first": 0, "second": 0}
        for request in platform.requests:
            if request.status == 429:
                answered[run_of(request, created, middle)] += 1
        source_totals = dict(source.counters())
        source.close()

    for name in ("first", "second"):
        report = reports[name]
        assert report.ok, str(report)
        throttled = [kw for kind, kw in events[name] if kind == "throttled"]
        retries = [kw for kind, kw in events[name] if kind == "retry"]
        assert answered[name] > 0  # the faults reached both runs
        assert report.throttled == len(throttled) == answered[name]
        assert report.retries == len(retries) == answered[name]
    assert (
        reports["first"].requests + reports["second"].requests
        == source_totals["requests"]
    )
    assert source_totals["throttled"] == answered["first"] + answered["second"]


def _iso(ms: int) -> str:
    return from_epoch_ms(ms).isoformat()
