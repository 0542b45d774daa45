"""Throughput of an extraction with and without each built-in transform.

Run by hand, never in CI (needs the ``parquet`` extra):

    python benchmarks/bench_transforms.py                 # 24 files of 20,000 rows
    python benchmarks/bench_transforms.py --rows 50000 --workers 8

The fake platform serves XDM Parquet files (:func:`aep_extract.testing.xdm_parquet.
xdm_batches`) from a child process, so the extractor's CPU and peak RSS are its
own. Each scenario extracts the same files into a fresh local sink. Figures go into
docs/performance.rst.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

MIB = 1024 * 1024
START, END = "2024-07-01T00:00:00Z", "2024-07-02T00:00:00Z"
PROJECT = "project:columns=_id,timestamp,eventType,productListItems.SKU"
SCENARIOS: dict[str, Optional[list[str]]] = {
    "copy (none)": None,
    "project": [PROJECT],
    "filter": ["filter:expr=eventType = 'commerce.purchases'"],
    "parquet zstd": ["parquet:compression=zstd"],
    "jsonl": ["jsonl"],
    "project + jsonl": [PROJECT, "jsonl"],
}


def serve(conn: Any, batches: int, files: int, rows: int) -> None:
    """Child process: serve XDM batches until told to stop."""
    from aep_extract.testing import FakeAepPlatform
    from aep_extract.testing.xdm_parquet import xdm_batches

    platform = FakeAepPlatform.generate(batches=1, other_batches=0)
    dataset = FakeAepPlatform.DEMO_DATASET_ID
    platform.add_batches(
        xdm_batches(
            dataset,
            START,
            END,
            batches,
            seed=1,
            files_per_batch=files,
            rows=rows,
            row_group_rows=10_000,
        )
    )
    with platform:
        conn.send(platform.env())
        conn.recv()


def measure(
    env: dict[str, str], specs: Optional[list[str]], workers: int
) -> dict[str, float]:
    """One extraction; seconds, source MiB/s, output MiB and CPU seconds."""
    from aep_extract import (
        Extractor,
        HttpAepSource,
        LocalSink,
        MemoryCheckpointStore,
        ThreadPoolScheduler,
    )
    from aep_extract.testing import FakeAepPlatform

    out = Path(tempfile.mkdtemp(prefix="aep-bench-"))
    try:
        cpu = time.process_time()
        with Extractor(
            HttpAepSource.from_env(env),
            store=MemoryCheckpointStore(),
            sink=LocalSink(out),
            scheduler=ThreadPoolScheduler(workers),
            transform=specs,
            progress=False,
        ) as extractor:
            started = time.perf_counter()
            report = extractor.run(FakeAepPlatform.DEMO_DATASET_ID, START, END)
            seconds = time.perf_counter() - started
        assert report.ok, str(report)
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "files": report.files_copied,
        "mib": report.bytes_copied / MIB,
        "seconds": seconds,
        "mib_per_s": report.bytes_copied / MIB / seconds,
        "out_mib": written / MIB,
        "cpu": time.process_time() - cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--files", type=int, default=3, help="files per batch")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per file")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(child, args.batches, args.files, args.rows)
    )
    server.start()
    if not parent.poll(600):
        server.terminate()
        raise RuntimeError("the fake platform did not start")
    env = parent.recv()
    rows = args.batches * args.files * args.rows
    print(
        f"python {sys.version.split()[0]}, {args.workers} workers, "
        f"{args.batches * args.files} files, {rows} rows"
    )
    print(
        "scenario          files  src MiB  seconds  src MiB/s  rows/s  out MiB  CPU s"
    )
    try:
        for name, specs in SCENARIOS.items():
            row = measure(env, specs, args.workers)
            print(
                f"{name:<17} {row['files']:>5.0f} {row['mib']:>8.1f} "
                f"{row['seconds']:>8.2f} {row['mib_per_s']:>10.1f} "
                f"{rows / row['seconds']:>7.0f} {row['out_mib']:>8.1f} "
                f"{row['cpu']:>6.1f}"
            )
    finally:
        parent.send("stop")
        server.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the extracting process: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
