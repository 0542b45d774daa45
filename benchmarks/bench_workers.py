"""Scale-out: worker processes sharing one AEP rate limit and one DynamoDB table.

Run by hand, never in CI:

    python benchmarks/bench_workers.py              # R = 20, gateway burst R, 1 2 4 8
    python benchmarks/bench_workers.py --burst 2    # a narrow gateway
    python benchmarks/bench_workers.py --rate 50 --workers 1 8 --share 0.9

As the AWS pipeline's Map does: the fake platform runs in one process with its gateway
limited to R requests/s over all clients, moto's DynamoDB server in another, the
window is planned once into a fresh table, then N worker processes each run
``Extractor.execute(dataset)`` (no plan) with a request budget of R/N (``--share``
scales the sum), sharing the units through the table's leases and writing into one
local directory. Figures go into docs/performance.rst.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

MIB = 1024 * 1024
REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def serve_platform(conn: Any, options: dict[str, Any]) -> None:
    """Child process: serve a rate-limited platform; answer "stats" until "stop"."""
    from aep_extract.testing import FakeAepPlatform

    with FakeAepPlatform.generate(**options) as platform:
        conn.send(platform.env())
        while conn.recv() == "stats":
            served = [r for r in platform.requests if not r.path.startswith("/ims/")]
            conn.send({"requests": len(served), "throttled": platform.rate_limited})


def serve_dynamodb(conn: Any) -> None:
    """Child process: moto's server (DynamoDB) until told to stop."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    conn.send(f"http://{host}:{port}")
    conn.recv()
    server.stop()


def extractor(
    env: dict[str, str], store: Any, out: str, threads: int, per_second: float
) -> Any:
    """An extractor as the pipeline's worker builds one: its own source and budget."""
    from aep_extract import (
        ConcurrencyConfig,
        Extractor,
        ExtractorConfig,
        HttpAepSource,
        LocalSink,
    )

    concurrency = ConcurrencyConfig(workers=threads, max_requests_per_second=per_second)
    return Extractor(
        HttpAepSource.from_env(env, concurrency=concurrency),
        store=store,
        sink=LocalSink(out),
        config=ExtractorConfig(concurrency=concurrency),
    )


def worker(
    env: dict[str, str],
    table: str,
    endpoint: str,
    out: str,
    threads: int,
    per_second: float,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Child process: one Map worker; waits for ``go``, executes, sends its report."""
    from aep_extract import DynamoDBCheckpointStore
    from aep_extract.testing import FakeAepPlatform

    store = DynamoDBCheckpointStore(table, endpoint_url=endpoint, region_name=REGION)
    with extractor(env, store, out, threads, per_second) as ex:
        ready.put(os.getpid())
        go.wait()
        report = ex.execute(FakeAepPlatform.DEMO_DATASET_ID)
    results.put(
        {
            "ok": report.ok,
            "files": report.files_copied,
            "bytes": report.bytes_copied,
            "summary": str(report),
        }
    )


def measure(
    context: Any,
    platform: Any,
    env: dict[str, str],
    endpoint: str,
    workers: int,
    rate: float,
    threads: int,
    share: float,
) -> dict[str, float]:
    """Plan once into a fresh table, then run ``workers`` processes at R/N each."""
    from aep_extract import DynamoDBCheckpointStore
    from aep_extract.testing import FakeAepPlatform

    table = f"aep-bench-{workers}-{uuid.uuid4().hex[:8]}"
    out = tempfile.mkdtemp(prefix="aep-bench-workers-")
    dataset = FakeAepPlatform.DEMO_DATASET_ID
    store = DynamoDBCheckpointStore(
        table, endpoint_url=endpoint, region_name=REGION, create_table=True
    )
    with extractor(env, store, out, threads, rate) as planner:
        planner.plan(dataset, FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END)
    time.sleep(1.5)  # let the gateway's bucket refill after the plan
    budget = share * rate / workers
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(
            target=worker,
            args=(env, table, endpoint, out, threads, budget, ready, go, results),
        )
        for _ in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            ready.get(timeout=120)
        platform.send("stats")
        before = platform.recv()
        started = time.perf_counter()
        go.set()
        reports = [results.get(timeout=600) for _ in processes]
        seconds = time.perf_counter() - started
        platform.send("stats")
        after = platform.recv()
        for process in processes:
            process.join()
        bad = [report["summary"] for report in reports if not report["ok"]]
        if bad:
            raise RuntimeError(f"a worker did not finish: {bad}")
        with extractor(env, store, out, threads, rate) as checker:
            status = checker.status(dataset)
        if not status.ok:
            raise RuntimeError(f"units left undone: {status.counts}")
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        shutil.rmtree(out, ignore_errors=True)
    answered = after["requests"] - before["requests"]
    throttled = after["throttled"] - before["throttled"]
    admitted = answered - throttled
    copied = sum(report["bytes"] for report in reports)
    return {
        "workers": workers,
        "files": sum(report["files"] for report in reports),
        "requests": answered,
        "seconds": seconds,
        "admitted_per_s": admitted / seconds,
        "of_limit": admitted / seconds / rate,
        "throttled_share": throttled / answered if answered else 0.0,
        "mib_per_s": copied / MIB / seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="R, requests/s")
    parser.add_argument(
        "--burst", type=float, default=None, help="gateway burst (default: R)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument(
        "--share", type=float, default=1.0, help="workers' budgets add up to share x R"
    )
    parser.add_argument("--batches", type=int, default=64)
    parser.add_argument("--files-per-batch", type=int, default=8)
    args = parser.parse_args()
    os.environ.update(AWS_ENV)  # moto's; the spawned children inherit them
    context = multiprocessing.get_context("spawn")
    options = {
        "batches": args.batches,
        "files_per_batch": args.files_per_batch,
        "large_file_size": 0,
        "rate_limit": args.rate,
        "rate_burst": args.rate if args.burst is None else args.burst,
    }
    platform, platform_end = context.Pipe()
    moto, moto_end = context.Pipe()
    servers = [
        context.Process(target=serve_platform, args=(platform_end, options)),
        context.Process(target=serve_dynamodb, args=(moto_end,)),
    ]
    for server in servers:
        server.start()
    try:
        env, endpoint = platform.recv(), moto.recv()
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.2f}; R = {args.rate:g} requests/s, "
            f"{args.threads} threads per worker"
        )
        print("workers  files  requests  seconds  requests/s  of R   429 %  MiB/s")
        for workers in args.workers:
            row = measure(
                context,
                platform,
                env,
                endpoint,
                workers,
                args.rate,
                args.threads,
                args.share,
            )
            print(
                f"{workers:>7} {row['files']:>6.0f} {row['requests']:>9.0f} "
                f"{row['seconds']:>8.1f} {row['admitted_per_s']:>11.1f} "
                f"{row['of_limit']:>5.2f} {100 * row['throttled_share']:>7.1f} "
                f"{row['mib_per_s']:>6.2f}"
            )
    finally:
        platform.send("stop")
        moto.send("stop")
        for server in servers:
            server.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
