"""The adaptive rate limiter against a platform limited to R requests/s.

Run by hand, never in CI:

    python benchmarks/bench_ratelimit.py                   # R = 50, 200, 1000
    python benchmarks/bench_ratelimit.py --rates 200 --seconds 60
    python benchmarks/bench_ratelimit.py --rates none      # no limit: the machine
    python benchmarks/bench_ratelimit.py --basic           # the issue's basic copy

The fake platform runs in a child process (its CPU shows) with its gateway limited to
R requests per second (``rate_limit=R``, burst R/10); the extractor copies a dataset of
many small files with default settings (8 workers, the default rate limiter) into a
local directory with an in-memory store. ``requests/s`` counts the calls the gateway
let through over the run; ``429 %`` is the share it refused. ``--basic`` times the
issue's figure instead: the default dataset with the default settings, with the limits
lifted, and a plain parallel copy of the same files. Figures go into
docs/performance.rst.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote

MIB = 1024 * 1024
FILES_PER_BATCH = 20
WARM_UP = 10.0
"""Seconds left out of the steady-state figure (slow start, the first cuts)."""
EXPORT_FILES = "/data/foundation/export/files/"


def serve(conn: Any, options: dict[str, Any]) -> None:
    """Child process: serve a platform; answer "stats" and "files" until "stop"."""
    from aep_extract import TimeWindow
    from aep_extract.testing import FakeAepPlatform

    with FakeAepPlatform.generate(**options) as platform:
        conn.send(platform.env())
        while True:
            command = conn.recv()
            if command == "stats":
                calls = [r for r in platform.requests if not r.path.startswith("/ims/")]
                conn.send({"requests": len(calls), "throttled": platform.rate_limited})
            elif command == "files":
                window = TimeWindow.parse(
                    FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END
                )
                files = platform.expected_files(
                    FakeAepPlatform.DEMO_DATASET_ID, window.start_ms, window.end_ms
                )
                names = [(file_id, fake.name) for _, file_id, fake in files]
                conn.send((platform.auth_headers(), names))
            else:
                return


class Platform:
    """A fake platform in a child process (thread-safe)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(child, options)
        )
        self._process.start()
        if not self._conn.poll(300):  # the child died or hung while generating
            self._process.terminate()
            raise RuntimeError("the fake platform did not start")
        self.env: dict[str, str] = self._conn.recv()

    def ask(self, command: str) -> Any:
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    def close(self) -> None:
        self._conn.send("stop")
        self._process.join()


def extract(env: dict[str, str], out: Path, **concurrency: Any) -> tuple[Any, float]:
    """One extraction of the demo window; returns its report and seconds."""
    from aep_extract import (
        ConcurrencyConfig,
        Extractor,
        ExtractorConfig,
        HttpAepSource,
        LocalSink,
        MemoryCheckpointStore,
    )
    from aep_extract.testing import FakeAepPlatform

    settings = ConcurrencyConfig(**concurrency)
    source = HttpAepSource.from_env(env, concurrency=settings)
    with Extractor(
        source,
        store=MemoryCheckpointStore(),
        sink=LocalSink(out),
        config=ExtractorConfig(concurrency=settings),
    ) as extractor:
        started = time.perf_counter()
        report = extractor.run(
            FakeAepPlatform.DEMO_DATASET_ID,
            FakeAepPlatform.DEMO_START,
            FakeAepPlatform.DEMO_END,
        )
        seconds = time.perf_counter() - started
    assert report.ok, str(report)
    source.close()
    return report, seconds


def plain_copy(
    env: dict[str, str],
    headers: dict[str, str],
    files: list[tuple[str, str]],
    out: Path,
    workers: int,
) -> float:
    """GET every file, ``workers`` at a time, into ``out``: no listing, no
    checkpoints, no limiter. Returns seconds."""
    import requests

    base = env["AEP_PLATFORM_URL"].rstrip("/")
    local = threading.local()

    def copy(index: int, file_id: str, name: str) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        path = quote(file_id, safe="")
        url = f"{base}{EXPORT_FILES}{path}?path={quote(name, safe='')}"
        with session.get(url, headers=headers, stream=True, timeout=60) as answer:
            answer.raise_for_status()
            with open(out / str(index), "wb") as sink:
                for piece in answer.iter_content(8 * MIB):
                    sink.write(piece)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(copy, i, *file) for i, file in enumerate(files)]:
            done.result()
    return time.perf_counter() - started


def limited(rate: Optional[float], seconds: float) -> dict[str, float]:
    """A many-small-files copy under a gateway limit of ``rate`` (None: none)."""
    # About 2 calls per file (its listing, its download) and one per batch.
    calls = (rate or 1000) * seconds
    batches = max(4, round(calls / (2 * FILES_PER_BATCH + 1)))
    options: dict[str, Any] = {
        "batches": batches,
        "other_batches": 0,
        "files_per_batch": FILES_PER_BATCH,
        "max_file_size": 2048,
        "large_file_size": 0,
        "rate_limit": rate,
    }
    platform = Platform(options)
    out = Path(tempfile.mkdtemp(prefix="aep-bench-"))
    warm: dict[str, Any] = {}
    done = threading.Event()

    def after_warm_up() -> None:  # the calls the first WARM_UP seconds had let through
        if not done.wait(WARM_UP):
            warm.update(platform.ask("stats"), at=time.perf_counter())

    try:
        before = platform.ask("stats")
        sampler = threading.Thread(target=after_warm_up)
        sampler.start()
        report, took = extract(platform.env, out)
        ended = time.perf_counter()
        done.set()
        sampler.join()
        after = platform.ask("stats")
    finally:
        platform.close()
        shutil.rmtree(out, ignore_errors=True)
    answered = after["requests"] - before["requests"]
    throttled = after["throttled"] - before["throttled"]
    steady = float("nan")
    if warm:
        admitted = (after["requests"] - after["throttled"]) - (
            warm["requests"] - warm["throttled"]
        )
        steady = admitted / (ended - warm["at"])
    return {
        "files": report.files_copied,
        "requests": answered,
        "seconds": took,
        "admitted_per_s": (answered - throttled) / took,
        "steady_per_s": steady,
        "throttled_share": throttled / answered if answered else 0.0,
    }


def basic(repeat: int) -> list[tuple[str, float]]:
    """The issue's figure: the default dataset, three ways, side by side."""
    platform = Platform({})
    headers, files = platform.ask("files")
    rows = []
    try:
        for _ in range(repeat):
            runs: list[tuple[str, Callable[[Path], float]]] = [
                (
                    "default settings, 8 workers",
                    lambda out: extract(platform.env, out)[1],
                ),
                (
                    "--max-rps 1000 --max-in-flight 64, 16 workers",
                    lambda out: extract(
                        platform.env,
                        out,
                        workers=16,
                        max_requests_per_second=1000,
                        max_in_flight=64,
                    )[1],
                ),
                (
                    "default settings, 16 workers",
                    lambda out: extract(platform.env, out, workers=16)[1],
                ),
                (
                    "plain parallel copy, 8 threads",
                    lambda out: plain_copy(platform.env, headers, files, out, 8),
                ),
            ]
            for name, run in runs:
                out = Path(tempfile.mkdtemp(prefix="aep-bench-"))
                try:
                    took = run(out)
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                rows.append((name, took))
    finally:
        platform.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rates", nargs="+", default=["50", "200", "1000"], help="R, or none"
    )
    parser.add_argument(
        "--seconds", type=float, default=40.0, help="planned length of a run at R"
    )
    parser.add_argument("--basic", action="store_true", help="the issue's figure")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of --basic")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}")
    if args.basic:
        for name, took in basic(args.repeat):
            print(f"{name:<46} {took:6.2f} s")
        return 0
    print("     R  files  requests  seconds  requests/s  of R  after 10 s  429 %")
    for text in args.rates:
        rate = None if text == "none" else float(text)
        row = limited(rate, args.seconds)
        share = row["admitted_per_s"] / rate if rate else float("nan")
        steady = row["steady_per_s"] / (rate or row["steady_per_s"])
        print(
            f"{text:>6} {row['files']:>6.0f} {row['requests']:>9.0f} "
            f"{row['seconds']:>8.1f} {row['admitted_per_s']:>11.1f} {share:>5.2f} "
            f"{steady:>10.2f} {100 * row['throttled_share']:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
