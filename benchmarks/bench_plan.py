"""Planning at scale: a large window, and one day after a long history.

Run by hand, never in CI:

    python benchmarks/bench_plan.py window --store memory   # 100,000 batches
    python benchmarks/bench_plan.py window --store sqlite
    python benchmarks/bench_plan.py history --store sqlite  # a day after 100,000
    python benchmarks/bench_plan.py history --store dynamodb

``window``: the fake platform runs in a child process with ``--batches`` batches
spread over 30 days and answers every Catalog batch page after ``--latency``
seconds (a ``latency`` fault on the Catalog route); the window is planned, then
planned again. Prints the time, the peak RSS of this process, and the store's
writes (units inserted, units rewritten, watermark raised).

``history``: the store first gets ``--history`` Completed units of earlier days
(written directly), then a day of ``--day`` new batches is planned, then planned
again. Prints the store's reads: the units read (SQLite) or the requests and the
items they returned (DynamoDB on moto, counted by a botocore event hook).
Figures go into docs/performance.rst.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Optional

DATASET = "bench-plan-ds"
T0 = 1_717_977_600_000  # 2024-06-10T00:00:00Z
DAY_MS = 86_400_000
REGION = "us-east-1"


def serve_platform(conn: Any, count: int, span_ms: int, latency: float) -> None:
    """Child process: a platform of ``count`` batches without files over
    ``[T0, T0 + span_ms)``; serves until told to stop."""
    from aep_extract.testing import FakeAepPlatform, FakeBatch, FaultPlan, FaultRule

    batches = [
        FakeBatch(
            batch_id=f"b{n:07d}",
            dataset_id=DATASET,
            status="success",
            created_ms=T0 + n * span_ms // count,
        )
        for n in range(count)
    ]
    rules = (
        [FaultRule("latency", delay=latency, routes="catalog", match="/batches$")]
        if latency
        else []
    )
    faults = FaultPlan(rules=rules) if rules else None
    with FakeAepPlatform({DATASET: {}}, batches, faults=faults) as platform:
        conn.send(platform.env())
        conn.recv()


def start_platform(count: int, span_ms: int, latency: float) -> tuple[Any, Any]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=serve_platform, args=(theirs, count, span_ms, latency)
    )
    process.start()
    return process, ours


def counting(store_class: type) -> type:
    """A subclass of ``store_class`` counting units written and read."""

    class Counting(store_class):  # type: ignore[misc]
        writes: Counter[str]
        reads: Counter[str]

        def _insert(self, checkpoints: Any) -> int:
            inserted = super()._insert(checkpoints)
            self.writes["units inserted"] += inserted
            return int(inserted)

        def _replace(self, checkpoint: Any, expected_version: int) -> None:
            self.writes["units rewritten"] += 1
            super()._replace(checkpoint, expected_version)

        def _scan(self, dataset_id: str, statuses: Any = None) -> Iterator[Any]:
            found = list(super()._scan(dataset_id, statuses))
            kind = "all" if statuses is None else "+".join(map(str, statuses))
            self.reads[f"listed ({kind})"] += len(found)
            return iter(found)

        def get_many(self, dataset_id: str, batch_ids: Any) -> Any:
            found = super().get_many(dataset_id, batch_ids)
            self.reads["looked up"] += sum(map(len, found.values()))
            return found

    Counting.writes = Counter()
    Counting.reads = Counter()
    return Counting


def rss_mib() -> float:
    """Peak RSS of this process so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan_twice(extractor: Any, store: Any, start: Any, end: Any) -> None:
    for attempt in ("plan", "re-plan"):
        store.writes.clear()
        store.reads.clear()
        mark = store.watermark(DATASET)
        began = time.perf_counter()
        result = extractor.plan(DATASET, start, end)
        took = time.perf_counter() - began
        raised = store.watermark(DATASET) != mark
        print(
            f"{attempt}: {took:.1f} s, {result.batches_found} batches, "
            f"{result.units_new} new; peak RSS {rss_mib():.0f} MiB; writes "
            f"{dict(store.writes) or 'none'}"
            f"{', watermark raised' if raised else ''}; reads {dict(+store.reads)}"
        )


def window(args: argparse.Namespace) -> None:
    from aep_extract import Extractor, HttpAepSource, MemorySink
    from aep_extract.checkpoints import MemoryCheckpointStore, SQLiteCheckpointStore
    from aep_extract.models import from_epoch_ms

    span = 30 * DAY_MS
    process, conn = start_platform(args.batches, span, args.latency)
    env = conn.recv()
    with tempfile.TemporaryDirectory() as tmp:
        if args.store == "memory":
            store = counting(MemoryCheckpointStore)()
        else:
            store = counting(SQLiteCheckpointStore)(os.path.join(tmp, "state.db"))
        print(f"{args.batches} batches over 30 days, {args.latency} s a Catalog page, "
              f"{args.store} store; RSS before {rss_mib():.0f} MiB")  # fmt: skip
        source = HttpAepSource.from_env(env)
        try:
            with Extractor(
                source, store=store, sink=MemorySink(), progress=False
            ) as ex:
                plan_twice(ex, store, from_epoch_ms(T0), from_epoch_ms(T0 + span))
        finally:
            conn.send("stop")
            process.join()
        print(f"requests to the platform: {source.counters()['requests']}")


def history(args: argparse.Namespace) -> None:
    from aep_extract import Extractor, HttpAepSource, MemorySink
    from aep_extract.models import Checkpoint, UnitStatus, WorkUnit, from_epoch_ms

    years = 1000 * DAY_MS  # the history: the 1,000 days before the planned one
    history = [
        Checkpoint(
            unit=WorkUnit(
                dataset_id=DATASET,
                batch_id=f"h{n:07d}",
                batch_created_ms=T0 - years + n * years // args.history,
            ),
            status=UnitStatus.COMPLETED,
            last_processed_offset=2,
            files_done=3,
            bytes_done=3000,
        )
        for n in range(args.history)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store, calls = open_history_store(args.store, tmp, history)
        process, conn = start_platform(args.day, DAY_MS, 0.0)
        env = conn.recv()
        print(f"{args.history} units of history, a day of {args.day} batches, "
              f"{args.store} store")  # fmt: skip
        source = HttpAepSource.from_env(env)
        ex = Extractor(source, store=store, sink=MemorySink(), progress=False)
        try:
            for attempt in ("plan", "re-plan"):
                store.reads.clear()
                if calls is not None:
                    calls.clear()
                began = time.perf_counter()
                result = ex.plan(DATASET, from_epoch_ms(T0), from_epoch_ms(T0 + DAY_MS))
                took = time.perf_counter() - began
                requests = "" if calls is None else f"; DynamoDB {dict(calls)}"
                print(
                    f"{attempt}: {took:.1f} s, {result.units_new} new; units read "
                    f"{dict(+store.reads)}{requests}"
                )
        finally:
            ex.close()
            conn.send("stop")
            process.join()


def open_history_store(
    kind: str, tmp: str, history: list[Any]
) -> tuple[Any, Optional[Counter[str]]]:
    """A counting store holding ``history``, and the DynamoDB request counter."""
    if kind == "sqlite":
        from aep_extract.checkpoints import SQLiteCheckpointStore

        store = counting(SQLiteCheckpointStore)(os.path.join(tmp, "state.db"))
        for start in range(0, len(history), 5000):
            store._insert(history[start : start + 5000])
        return store, None
    import boto3
    from moto import mock_aws

    from aep_extract.checkpoints import _dynamodb_items as items
    from aep_extract.checkpoints.dynamodb import DynamoDBCheckpointStore

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        os.environ.setdefault(name, value)
    mock_aws().start()

    class Serial(counting(DynamoDBCheckpointStore)):  # type: ignore[misc]
        """One request at a time: moto's in-process backend is not thread-safe."""

        lock = threading.Lock()

        def _call(self, operation: str, request: Any) -> Any:
            with self.lock:
                return super()._call(operation, request)

    session = boto3.Session(region_name=REGION)
    store = Serial("bench-plan", session=session, create_table=True)
    client = store.client
    for start in range(0, len(history), 25):
        client.batch_write_item(
            RequestItems={
                "bench-plan": [
                    {"PutRequest": {"Item": items.to_item(cp)}}
                    for cp in history[start : start + 25]
                ]
            }
        )
    calls: Counter[str] = Counter()

    def count(model: Any, parsed: Any, **_: Any) -> None:
        calls[f"{model.name} requests"] += 1
        if model.name == "Query":
            calls["Query items"] += len(parsed.get("Items", []))
        elif model.name == "BatchGetItem":
            calls["BatchGetItem items"] += sum(
                map(len, parsed.get("Responses", {}).values())
            )
        elif model.name == "GetItem":
            calls["GetItem items"] += "Item" in parsed

    client.meta.events.register("after-call.dynamodb", count)
    return store, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    big = commands.add_parser("window", help="plan a window of many batches")
    big.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    big.add_argument("--batches", type=int, default=100_000)
    big.add_argument("--latency", type=float, default=0.2)
    day = commands.add_parser("history", help="plan a day after a long history")
    day.add_argument("--store", choices=("sqlite", "dynamodb"), default="sqlite")
    day.add_argument("--history", type=int, default=100_000)
    day.add_argument("--day", type=int, default=1000)
    args = parser.parse_args()
    {"window": window, "history": history}[args.command](args)


if __name__ == "__main__":
    main()
