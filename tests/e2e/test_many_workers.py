"""4 processes x 4 threads on one SQLite file: one owner per unit at any time,
expired leases taken over, exact output."""

from __future__ import annotations

from aep_extract import (
    Extractor,
    HttpAepSource,
    LocalSink,
    SQLiteCheckpointStore,
)
from aep_extract.testing import FakeAepPlatform

from ..many_workers import (
    LEASE_SECONDS,
    check_single_owner,
    read_records,
    recording,
    run_workers,
)
from .helpers import (
    DATASET,
    END,
    START,
    expected_statuses,
    expected_tree,
    sink_tree,
    unit_statuses,
)


def test_four_processes_share_one_sqlite_file(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'state.db'}"
    sink_url = str(tmp_path / "out")
    records = tmp_path / "records"
    records.mkdir()
    with FakeAepPlatform.generate(batches=24, files_per_batch=4) as platform:
        # A worker that claimed a unit and died: its lease must be taken over.
        store = recording(
            SQLiteCheckpointStore(tmp_path / "state.db"), records / "ghost.jsonl"
        )

        Extractor(
            HttpAepSource.from_env(platform.env()),
            store=store,
            sink=LocalSink(sink_url),
        ).plan(DATASET, START, END)
        assert store.claim(DATASET, "ghost", LEASE_SECONDS) is not None

        exits = run_workers(platform.env(), store_url, sink_url, records)
        assert exits == [0, 0, 0, 0]
        expected = expected_tree(platform)
        statuses = expected_statuses(platform)

    counts = check_single_owner(read_records(records))
    print(f"\nmany workers (sqlite): {counts}")
    assert counts["takeovers"] >= 1
    owners = {row["owner"] for row in read_records(records) if row["owner"]}
    assert len(owners) >= 3  # the work really was shared
    assert sink_tree(LocalSink(sink_url)) == expected
    final = SQLiteCheckpointStore(tmp_path / "state.db")
    assert unit_statuses(final) == statuses
