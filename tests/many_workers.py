"""Several worker processes, each with several threads, on one checkpoint store.

Every successful checkpoint write of every worker is appended to a record file; the
tests then prove from it that a unit never had two owners at once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from aep_extract import (
    Checkpoint,
    CheckpointStore,
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    ThreadPoolScheduler,
    open_sink,
    open_store,
)

LEASE_SECONDS = 2.0


def recording(store: CheckpointStore, record: Path) -> CheckpointStore:
    """Make ``store`` append each successful write to ``record`` (JSON lines)."""
    replace = store._replace

    def recorded(checkpoint: Checkpoint, expected_version: int) -> None:
        replace(checkpoint, expected_version)
        with record.open("a") as out:
            out.write(
                json.dumps(
                    {
                        "unit": checkpoint.unit_id,
                        "version": checkpoint.version,
                        "owner": checkpoint.owner,
                        "status": checkpoint.status.value,
                        "expires": checkpoint.lease_expires_at,
                        "at": checkpoint.updated_at,
                    }
                )
                + "\n"
            )

    store._replace = recorded  # type: ignore[method-assign]
    return store


def worker(
    env: Mapping[str, str],
    store_url: str,
    sink_url: str,
    dataset: str,
    start: str,
    end: str,
    record: str,
) -> None:
    """One process: 4 threads extracting the window; exits 0 when all is done."""
    os.environ.update(env)
    store = recording(open_store(store_url), Path(record))
    extractor = Extractor(
        HttpAepSource.from_env(env),
        store=store,
        sink=open_sink(sink_url),
        scheduler=ThreadPoolScheduler(4),
        config=ExtractorConfig(lease_seconds=LEASE_SECONDS),
    )
    with extractor:
        report = extractor.run(dataset, start, end)
    if not report.ok:
        raise SystemExit(f"worker {os.getpid()}: {report}")


def run_workers(
    env: Mapping[str, str],
    store_url: str,
    sink_url: str,
    records: Path,
    *,
    processes: int = 4,
) -> list[Optional[int]]:
    """Run ``processes`` workers on the demo window at once; their exit codes."""
    from .e2e.helpers import DATASET, END, START

    context = multiprocessing.get_context("spawn")
    started = [
        context.Process(
            target=worker,
            args=(
                env,
                store_url,
                sink_url,
                DATASET,
                START,
                END,
                str(records / f"worker{i}.jsonl"),
            ),
        )
        for i in range(processes)
    ]
    for process in started:
        process.start()
    for process in started:
        process.join(timeout=300)
    return [process.exitcode for process in started]


def check_single_owner(records: list[dict[str, Any]]) -> dict[str, int]:
    """Assert no unit ever had two valid owners; returns counts for the note."""
    by_unit: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in records:
        by_unit[row["unit"]].append(row)
    takeovers = 0
    for unit, rows in by_unit.items():
        versions = [row["version"] for row in rows]
        assert len(versions) == len(set(versions)), f"{unit}: a version written twice"
        rows.sort(key=lambda row: row["version"])
        holder: Optional[dict[str, Any]] = None
        for row in rows:
            held_by = holder["owner"] if holder is not None else None
            if row["status"] == "InProgress" and row["owner"] != held_by:
                if holder is not None:  # a takeover: only after the lease ran out
                    assert row["at"] >= holder["expires"], (unit, holder, row)
                    takeovers += 1
                holder = row
            elif row["status"] == "InProgress":
                holder = row  # a renewal or an advance by the same owner
            else:
                holder = None
    return {"units": len(by_unit), "writes": len(records), "takeovers": takeovers}


def read_records(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
