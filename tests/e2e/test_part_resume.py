"""kill -9 at about 90 % of a large file copied in parts, then a rerun: SQLite
store and local sink. The S3/DynamoDB variant is in tests/aws."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from typing import Optional

from aep_extract import LocalSink, SQLiteCheckpointStore
from aep_extract.testing import FakeAepPlatform

from ..part_resume import (
    BANDWIDTH,
    CATALOG,
    MANY_IN_PARTS,
    PART_SIZE,
    extractor_in_parts,
    kill_at_90_then_rerun,
)
from .helpers import DATASET, END, START, expected_tree, manifests, run_args, sink_tree


def test_a_rerun_after_kill_9_at_90_percent_fetches_only_missing_parts(tmp_path):
    """The rerun takes the dead process's unit over (at once: on this host it
    proves the owner dead; elsewhere after the 2 s lease) and continues the same
    upload: at most 2 parts' worth of the file is served again, and the object is
    exact."""
    db = tmp_path / "state.db"

    def progress() -> Optional[str]:
        if not db.exists():
            return None
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows = conn.execute(
                    "SELECT Progress FROM units WHERE Progress IS NOT NULL"
                ).fetchall()
        except sqlite3.OperationalError:  # the schema is being created
            return None
        return rows[0][0] if rows else None

    with FakeAepPlatform.generate(**CATALOG, bandwidth=BANDWIDTH) as platform:
        args = run_args(
            str(tmp_path / "out"), f"sqlite:///{db}", "--lease-seconds", "2"
        )
        env = {**os.environ, **platform.env()}
        result = kill_at_90_then_rerun(platform, args, env, progress)
        expected = expected_tree(platform)

    assert result.final is not None
    assert result.final.returncode == 0, result.final.stderr
    assert result.recorded_at_kill >= result.kill_at_parts
    assert "took over the lease of" in result.final.stderr
    assert "resuming upload" in result.final.stderr
    print(
        f"\nkill at {result.recorded_at_kill} parts recorded: "
        f"{result.transferred_again} bytes served again, "
        f"{result.large_asked_again} of the large file (parts of {PART_SIZE})"
    )
    assert result.transferred_again <= 2 * PART_SIZE  # bytes_served
    assert result.large_asked_again <= 2 * PART_SIZE
    assert sink_tree(LocalSink(tmp_path / "out")) == expected
    assert list((tmp_path / "out").rglob(".*.part")) == []
    store = SQLiteCheckpointStore(db)
    assert all(cp.progress is None for cp in store.list(platform.DEMO_DATASET_ID))


def test_files_in_parts_land_byte_exact_with_bounded_parts_in_memory(tmp_path):
    """Parts of many files run at once, never more than the knobs allow: 2 per
    file, 3 in all (with 6 workers); every object and manifest checksum is exact."""
    with FakeAepPlatform.generate(**MANY_IN_PARTS) as platform:
        store = SQLiteCheckpointStore(tmp_path / "state.db")
        sink = LocalSink(tmp_path / "out")
        extractor, reads = extractor_in_parts(
            platform,
            store,
            sink,
            part_size=64 * 1024,
            max_parts_per_file=2,
            max_parts_in_flight=3,
        )
        with extractor:
            report = extractor.run(DATASET, START, END)
        expected = expected_tree(platform)

    assert report.ok
    assert len(reads.starts) > 10  # most files went in parts
    assert reads.peak_per_file == 2
    assert reads.peak_total == 3
    assert sink_tree(sink) == expected
    for manifest in manifests(sink).values():
        for entry in manifest["files"]:
            assert entry["sha256"] == hashlib.sha256(expected[entry["key"]]).hexdigest()
    assert list((tmp_path / "out").rglob(".*.part")) == []
