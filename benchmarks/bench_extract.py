"""Throughput and memory of a whole extraction: fake AEP (own process) -> local sink.

Run by hand, never in CI:

    python benchmarks/bench_extract.py                  # the default scenarios
    python benchmarks/bench_extract.py --large-mib 512  # one bigger file

The fake platform runs in a child process so the extractor's peak RSS is its own.
Figures go into docs/performance.rst.
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
from typing import Any

MIB = 1024 * 1024


def serve(conn: Any, options: dict[str, int]) -> None:
    """Child process: generate and serve a platform until told to stop."""
    from aep_extract.testing import FakeAepPlatform

    with FakeAepPlatform.generate(**options) as platform:
        conn.send(platform.env())
        conn.recv()


def measure(options: dict[str, int], workers: int, chunk_mib: int) -> dict[str, float]:
    """One extraction; returns seconds, MB/s and this process's peak RSS growth."""
    from aep_extract import (
        Extractor,
        ExtractorConfig,
        HttpAepSource,
        LocalSink,
        MemoryCheckpointStore,
        ThreadPoolScheduler,
    )
    from aep_extract.testing import FakeAepPlatform

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(child, options)
    )
    server.start()
    if not parent.poll(120):  # the child died or hung while generating
        server.terminate()
        raise RuntimeError("the fake platform did not start")
    env = parent.recv()
    out = Path(tempfile.mkdtemp(prefix="aep-bench-"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        source = HttpAepSource.from_env(env, chunk_size=chunk_mib * MIB)
        with Extractor(
            source,
            store=MemoryCheckpointStore(),
            sink=LocalSink(out),
            scheduler=ThreadPoolScheduler(workers),
            config=ExtractorConfig(),
        ) as extractor:
            started = time.perf_counter()
            report = extractor.run(
                FakeAepPlatform.DEMO_DATASET_ID,
                FakeAepPlatform.DEMO_START,
                FakeAepPlatform.DEMO_END,
            )
            seconds = time.perf_counter() - started
        assert report.ok, str(report)
    finally:
        parent.send("stop")
        server.join()
        shutil.rmtree(out, ignore_errors=True)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "files": report.files_copied,
        "mib": report.bytes_copied / MIB,
        "seconds": seconds,
        "mib_per_s": report.bytes_copied / MIB / seconds,
        "peak_rss_mib": rss_after / 1024,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--chunk-mib", type=int, default=16)
    args = parser.parse_args()
    many_small = {
        "batches": 40,
        "files_per_batch": 10,
        "max_file_size": 512 * 1024,
        "large_file_size": 0,
    }
    one_large = {
        "batches": 6,
        "files_per_batch": 1,
        "max_file_size": 1024,
        "large_file_size": args.large_mib * MIB,
    }
    print(f"python {sys.version.split()[0]}, chunk {args.chunk_mib} MiB")
    print("scenario        workers  files    MiB  seconds  MiB/s  peak RSS MiB")
    for name, options in (("many small", many_small), ("one large", one_large)):
        for workers in (1, 4, 8):
            row = measure(options, workers, args.chunk_mib)
            print(
                f"{name:<15} {workers:>7} {row['files']:>6.0f} {row['mib']:>6.1f} "
                f"{row['seconds']:>8.2f} {row['mib_per_s']:>6.1f} "
                f"{row['peak_rss_mib']:>13.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
