"""aep_extract against a raw parallel copy: many small files, big files, one huge file.

Run by hand, never in CI:

    python benchmarks/bench_bigfile.py                      # small + big, 3 rounds
    python benchmarks/bench_bigfile.py --scenarios huge     # 4 GiB at 25 MB/s a stream
    python benchmarks/bench_bigfile.py --scenarios huge --huge-gib 1 \\
        --knob part_size=8388608 --knob max_parts_per_file=8

The baseline is a raw copy: plain ``requests`` over ``--workers`` threads (one
session each) that list the window's batches and their files with the same Data
Access calls, then fetch every file in 8 MiB ``Range`` requests at once, each
written at its offset with ``os.pwrite``; no checkpoints, checksums or fsync. It
copies from the same fake platform (its own process) into the same local directory
as ``aep_extract``, which runs with its rate limits lifted to match
(``max_requests_per_second=100000, max_in_flight=64``) and a SQLite store. Each copy
runs in a fresh process, so its peak RSS is its own. Rounds alternate raw and
``aep_extract``, and each round's ratio is printed, then the median.

Scenarios: ``small`` is 124 files of 0.5 to 2.5 MB (about 187 MB) in 31 batches,
``big`` is 6 files of 33 to 96 MiB, ``huge`` one file of ``--huge-gib`` GiB of bytes
generated as served, the platform limiting each connection to ``--bandwidth``
bytes/s (about 25 MB/s, a WAN link). ``--knob NAME=VALUE`` sets any field of
:class:`~aep_extract.ConcurrencyConfig` by name (those of this version are printed),
so multi-stream knobs are used where they exist. ``--only aep_extract`` runs that copy
alone in this process, for a profiler:

    py-spy record --gil -f raw -o small.txt -- python \
        benchmarks/bench_bigfile.py --scenarios small --rounds 1 --only aep_extract

Figures go into docs/performance.rst.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
PIECE = 8 * MIB
START, END = "2024-06-10T00:00:00Z", "2024-06-14T00:00:00Z"
START_MS, END_MS = 1_717_977_600_000, 1_718_323_200_000  # the same, epoch ms
DATASET = "5e8f81cf7a4ecb28a8d85b22"


# -- the platform (a child process) ---------------------------------------------------


def build_platform(scenario: str, options: dict[str, Any]) -> Any:
    """The fake platform of a scenario."""
    from aep_extract.testing import (
        FakeAepPlatform,
        FakeBatch,
        FakeDataSetFile,
        FakeFile,
        GeneratedBytes,
    )

    rng = random.Random(f"bench:{scenario}")
    if scenario == "small":
        sizes = [rng.randint(500_000, 2_500_000) for _ in range(124)]
        per_batch = 4
    elif scenario == "big":
        sizes = [rng.randint(33 * MIB, 96 * MIB) for _ in range(6)]
        per_batch = 1
    else:
        sizes = [int(options["huge_gib"] * GIB)]
        per_batch = 1
    batches = []
    for index in range(0, len(sizes), per_batch):
        batch_id = f"{index:024x}"
        files = []
        for n, size in enumerate(sizes[index : index + per_batch]):
            name = f"part-{n:05d}.parquet"
            content: Any = (
                GeneratedBytes(rng.getrandbits(64), size)
                if scenario == "huge"
                else rng.randbytes(size)
            )
            files.append(FakeDataSetFile(f"{batch_id}-{n}", [FakeFile(name, content)]))
        created = START_MS + index * 1000
        batches.append(FakeBatch(batch_id, DATASET, "success", created, files))
    bandwidth = options["bandwidth"] if scenario == "huge" else None
    return FakeAepPlatform({DATASET: {"name": "bench"}}, batches, bandwidth=bandwidth)


def serve(conn: Any, scenario: str, options: dict[str, Any]) -> None:
    """Child process: serve a scenario; answer "served" until "stop"."""
    with build_platform(scenario, options) as platform:
        total = sum(batch.size for batch in platform.batches)
        count = sum(batch.file_count for batch in platform.batches)
        conn.send((platform.env(), platform.auth_headers(), count, total))
        while conn.recv() == "served":
            conn.send(platform.reset_bytes_served())


# -- the copies (each in a child process) --------------------------------------------


def raw_copy(
    env: dict[str, str], headers: dict[str, str], out: str, workers: int
) -> int:
    """List the window's batches and files, then copy every file in 8 MiB ranges,
    all over ``workers`` threads; returns the bytes copied."""
    import requests

    local = threading.local()
    lock = threading.Lock()
    descriptors: list[int] = []
    base = env["AEP_PLATFORM_URL"] + "/data/foundation"

    def http() -> requests.Session:
        if not hasattr(local, "http"):
            local.http = requests.Session()
            local.http.headers.update(headers)
        session: requests.Session = local.http
        return session

    def data(url: str) -> list[Any]:
        with http().get(url, timeout=60) as response:
            response.raise_for_status()
            items: list[Any] = response.json()["data"]
        return items

    def fetch(url: str, fd: int, first: int, stop: int) -> int:
        ranged = {"Range": f"bytes={first}-{stop - 1}"}
        with http().get(url, headers=ranged, stream=True, timeout=120) as response:
            response.raise_for_status()
            at = first
            for chunk in response.iter_content(MIB):
                os.pwrite(fd, chunk, at)
                at += len(chunk)
        if at != stop:
            raise RuntimeError(f"{url}: got {at - first} of {stop - first} bytes")
        return stop - first

    def copy_batch(pool: Any, batch_id: str) -> list[Any]:
        ranges = []
        for dataset_file in data(f"{base}/export/batches/{batch_id}/files"):
            for item in data(dataset_file["_links"]["self"]["href"]):
                size = int(item["length"])
                name = f"{dataset_file['dataSetFileId']}-{item['name']}"
                fd = os.open(os.path.join(out, name), os.O_CREAT | os.O_WRONLY)
                os.ftruncate(fd, size)
                with lock:
                    descriptors.append(fd)
                url = item["_links"]["self"]["href"]
                ranges += [
                    pool.submit(fetch, url, fd, first, min(first + PIECE, size))
                    for first in range(0, size, PIECE)
                ]
        return ranges

    query = (
        f"dataSet={DATASET}&createdAfter={START_MS - 1}&createdBefore={END_MS}"
        "&orderBy=asc:created&limit=100"
    )
    with http().get(f"{base}/catalog/batches?{query}", timeout=60) as response:
        response.raise_for_status()
        batch_ids = list(response.json())
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            listings = [pool.submit(copy_batch, pool, bid) for bid in batch_ids]
            ranges = [future for done in listings for future in done.result()]
            return sum(future.result() for future in ranges)
    finally:
        for fd in descriptors:
            os.close(fd)


def extract_copy(
    env: dict[str, str], out: str, store_dir: str, knobs: dict[str, int]
) -> int:
    """Copy the dataset with aep_extract; returns bytes."""
    from aep_extract import (
        ConcurrencyConfig,
        Extractor,
        ExtractorConfig,
        HttpAepSource,
        LocalSink,
        SQLiteCheckpointStore,
        ThreadPoolScheduler,
    )

    concurrency = ConcurrencyConfig(
        max_requests_per_second=100_000, max_in_flight=64, **knobs
    )
    source = HttpAepSource.from_env(env, concurrency=concurrency)
    store = SQLiteCheckpointStore(os.path.join(store_dir, "state.db"))
    with Extractor(
        source,
        store=store,
        sink=LocalSink(out),
        scheduler=ThreadPoolScheduler(concurrency.workers),
        config=ExtractorConfig(concurrency=concurrency),
    ) as extractor:
        report = extractor.run(DATASET, START, END)
    if not report.ok:
        raise RuntimeError(str(report))
    return int(report.bytes_copied)


def copy_child(conn: Any, kind: str, args: tuple[Any, ...]) -> None:
    """Child process: one timed copy; sends (bytes, seconds, peak RSS MiB)."""
    started = time.perf_counter()
    copied = raw_copy(*args) if kind == "raw" else extract_copy(*args)
    seconds = time.perf_counter() - started
    conn.send(
        (copied, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    )


def timed(
    kind: str, args: tuple[Any, ...], in_process: bool
) -> tuple[int, float, float]:
    """One copy: in a fresh process, or (to profile it) in this one."""
    parent, child = multiprocessing.Pipe()
    if in_process:
        copy_child(child, kind, args)
        result: tuple[int, float, float] = parent.recv()
        return result
    process = multiprocessing.get_context("spawn").Process(
        target=copy_child, args=(child, kind, args)
    )
    process.start()
    result = parent.recv()
    process.join()
    return result


# -- driver ---------------------------------------------------------------------------


def run_scenario(
    scenario: str, args: argparse.Namespace, knobs: dict[str, int]
) -> None:
    parent, child = multiprocessing.Pipe()
    options = {"huge_gib": args.huge_gib, "bandwidth": args.bandwidth}
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(child, scenario, options)
    )
    server.start()
    env, headers, count, total = parent.recv()
    work = Path(tempfile.mkdtemp(prefix="aep-bigfile-", dir=args.dir))
    print(f"\n{scenario}: {count} files, {total / 1e6:.0f} MB")
    print(" round  copy      seconds    MB/s  served MB  peak RSS MiB   ratio")
    ratios = []
    try:
        for round_ in range(1, args.rounds + 1):
            rates = {}
            for kind in [args.only] if args.only else ["raw", "aep_extract"]:
                out = work / kind
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                (work / "state.db").unlink(missing_ok=True)
                if kind == "raw":
                    copy_args: tuple[Any, ...] = (env, headers, str(out), args.workers)
                else:
                    copy_args = (env, str(out), str(work), knobs)
                copied, seconds, rss = timed(kind, copy_args, args.only is not None)
                parent.send("served")
                served = parent.recv()
                if copied != total:
                    raise RuntimeError(f"{kind} copied {copied} of {total} bytes")
                rates[kind] = copied / seconds
                ratio = f"{rates[kind] / rates['raw']:>7.2f}" if len(rates) == 2 else ""
                print(
                    f"{round_:>6}  {kind:<11} {seconds:>7.2f} {rates[kind] / 1e6:>7.1f}"
                    f" {served / 1e6:>10.0f} {rss:>13.0f} {ratio}"
                )
            if args.only is None:
                ratios.append(rates["aep_extract"] / rates["raw"])
        if ratios:
            median = statistics.median(ratios)
            print(f"aep_extract / raw on {scenario}: median {median:.2f}")
    finally:
        parent.send("stop")
        server.join()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["small", "big"],
        choices=["small", "big", "huge"],
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8, help="of the raw copy")
    parser.add_argument("--huge-gib", type=float, default=4.0)
    parser.add_argument("--bandwidth", type=float, default=25e6, help="bytes/s")
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--dir", default=None, help="where the sinks go (tmp)")
    parser.add_argument(
        "--only",
        choices=["raw", "aep_extract"],
        help="run only this copy, in this process (to profile it)",
    )
    args = parser.parse_args()

    import attrs

    from aep_extract import ConcurrencyConfig

    fields = [field.name for field in attrs.fields(ConcurrencyConfig)]
    knobs: dict[str, int] = {}
    for item in args.knob:
        name, _, value = item.partition("=")
        if name not in fields:
            parser.error(f"unknown knob {name!r}; this version has {', '.join(fields)}")
        knobs[name] = int(value)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"ConcurrencyConfig fields: {', '.join(fields)}; set: {knobs or 'none'}")
    for scenario in args.scenarios:
        run_scenario(scenario, args, knobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
