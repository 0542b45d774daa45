"""Planning at scale: slices listed at once, groups streamed, only the window read."""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from typing import Any, Optional

import attrs
import pytest

from aep_extract import Batch, HttpAepSource, MemoryCheckpointStore, UnitStatus
from aep_extract._plan_slices import Slice, SliceLister, even_slices
from aep_extract._planning import Planner
from aep_extract.models import Checkpoint, TimeWindow, WorkUnit, from_epoch_ms
from aep_extract.sources.base import AepSource
from aep_extract.testing import FakeAepPlatform, FakeBatch, MemoryAepSource

DATASET = "ds1"
T0 = 1_717_977_600_000  # 2024-06-10T00:00:00Z
DAY_MS = 86_400_000


def window(start_ms: int, end_ms: int) -> TimeWindow:
    return TimeWindow(from_epoch_ms(start_ms), from_epoch_ms(end_ms))


def whole(batch: Batch) -> list[WorkUnit]:
    return [
        WorkUnit(
            dataset_id=batch.dataset_id,
            batch_id=batch.batch_id,
            batch_created_ms=batch.created_ms,
        )
    ]


class Generated(AepSource):
    """Batches made as they are listed, none kept: ``count`` of them, ``step_ms``
    apart from ``T0``. Remembers each one handed out, weakly, to count the live."""

    def __init__(self, count: int, step_ms: int = 1000) -> None:
        self.count, self.step_ms = count, step_ms
        self.handed: list[weakref.ref[Batch]] = []
        self.most_alive = 0
        self._lock = threading.Lock()

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return {}

    def list_batches(
        self, dataset_id: str, window: TimeWindow, *, status: Optional[str] = None
    ) -> Iterator[Batch]:
        first = max(0, -(-(window.start_ms - T0) // self.step_ms))
        for n in range(first, self.count):
            created = T0 + n * self.step_ms
            if created >= window.end_ms:
                return
            batch = Batch(
                batch_id=f"b{n:06d}", dataset_id=dataset_id, status="success",
                created_ms=created,
            )  # fmt: skip
            with self._lock:
                self.handed.append(weakref.ref(batch))
                alive = sum(ref() is not None for ref in self.handed[-2000:])
                self.most_alive = max(self.most_alive, alive)
            yield batch

    def list_files(self, batch_id: str) -> list[Any]:
        raise NotImplementedError

    def read_file(
        self, file: Any, start: int = 0, end: Optional[int] = None
    ) -> Iterator[bytes]:
        raise NotImplementedError


class CountingStore(MemoryCheckpointStore):
    """Counts the units each read hands out and every write."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()

    def _scan(
        self, dataset_id: str, statuses: Optional[Collection[UnitStatus]] = None
    ) -> Iterator[Checkpoint]:
        found = list(super()._scan(dataset_id, statuses))
        kind = "scan" if statuses is None else "+".join(sorted(map(str, statuses)))
        self.reads[kind] += len(found)
        return iter(found)

    def get_many(
        self, dataset_id: str, batch_ids: Iterable[str]
    ) -> dict[str, list[Checkpoint]]:
        found = super().get_many(dataset_id, batch_ids)
        self.reads["get_many"] += sum(map(len, found.values()))
        return found

    def _insert(self, checkpoints: Any) -> int:
        inserted = super()._insert(checkpoints)
        self.writes["insert"] += inserted
        return inserted

    def _replace(self, checkpoint: Checkpoint, expected_version: int) -> None:
        self.writes["replace"] += 1
        super()._replace(checkpoint, expected_version)


def lister_run(
    batches: list[Batch], start_ms: int, end_ms: int, threads: int, group: int
) -> tuple[list[str], list[Slice]]:
    """The ids handed on by a SliceLister over a memory source, and its slices.
    The first slice is listed once every other thread waits for work."""
    source = MemoryAepSource(DATASET, {b: {} for b in batches})
    handed: list[str] = []
    slices: list[Slice] = []
    lock = threading.Lock()

    def list_slice(piece: Slice) -> Iterator[Batch]:
        with lock:
            slices.append(piece)
        if piece.start_ms == start_ms:  # the first slice goes once the rest wait
            while lister._waiting < threads - 1:
                time.sleep(0.001)
        return source.list_batches(DATASET, piece.window)

    def handle(group_: list[Batch]) -> None:
        assert len(group_) <= group
        with lock:
            handed.extend(b.batch_id for b in group_)

    lister = SliceLister(list_slice, handle, threads=threads, group_size=group)
    lister.run(start_ms, end_ms)
    return handed, slices


def test_even_slices_cover_the_window_edge_to_edge():
    assert even_slices(0, 10, 3) == [Slice(0, 3), Slice(3, 6), Slice(6, 10)]
    assert even_slices(5, 7, 8) == [Slice(5, 6), Slice(6, 7)]


def test_batches_on_slice_edges_and_in_one_millisecond_are_listed_once():
    # 4 slices of [T0, T0 + 4000): edges at +1000, +2000, +3000.
    times = [0, 999, 1000, 1000, 1001, 1999, 2000, 2999, 3000, 3999, -1, 4000]
    times += [2500] * 30  # one millisecond, many batches: never cut
    batches = [
        Batch(batch_id=f"b{n:02d}", dataset_id=DATASET, status="success",
              created_ms=T0 + t)
        for n, t in enumerate(times)
    ]  # fmt: skip
    inside = sorted(b.batch_id for b in batches if T0 <= b.created_ms < T0 + 4000)
    for threads, group in [(4, 3), (4, 1000), (1, 2), (3, 1)]:
        handed, _ = lister_run(batches, T0, T0 + 4000, threads, group)
        assert sorted(handed) == inside, (threads, group)


def test_a_dense_slice_is_split_for_idle_threads_without_loss_or_repeat():
    # Every batch in the first of 4 slices, several per millisecond.
    batches = [
        Batch(batch_id=f"b{n:03d}", dataset_id=DATASET, status="success",
              created_ms=T0 + n // 3)
        for n in range(600)
    ]  # fmt: skip
    handed, slices = lister_run(batches, T0, T0 + 4000, threads=4, group=10)
    assert sorted(handed) == sorted(b.batch_id for b in batches)
    assert len(handed) == len(set(handed))
    assert len(slices) > 4, "idle threads got parts of the dense slice"


def test_an_error_in_one_slice_stops_the_others_and_is_raised():
    source = Generated(10_000)
    handled = []

    def handle(group: list[Batch]) -> None:
        handled.append(len(group))
        if group[0].created_ms >= T0 + 5_000_000:
            raise RuntimeError("boom")

    lister = SliceLister(
        lambda piece: source.list_batches(DATASET, piece.window),
        handle,
        threads=4,
        group_size=100,
    )
    with pytest.raises(RuntimeError, match="boom"):
        lister.run(T0, T0 + 10_000_000)
    assert sum(handled) < 10_000


def test_the_planner_holds_a_group_per_thread_not_the_window():
    source = Generated(6000)
    store = MemoryCheckpointStore()
    planner = Planner(source, store, whole, threads=4, group_size=50)
    result = planner.plan(DATASET, window(T0, T0 + DAY_MS))
    assert (result.batches_found, result.units_new) == (6000, 6000)
    assert len(store.list(DATASET)) == 6000
    assert source.most_alive <= 4 * (50 + 1), source.most_alive


def test_concurrent_slices_plan_as_one_listing_does():
    statuses = ["success", "success", "failed", "loading", "active", "aborted"]
    batches = [
        Batch(
            batch_id=f"b{n:03d}", dataset_id=DATASET,
            status=statuses[n % len(statuses)], created_ms=T0 + 7 * n,
            successors=(f"b{n + 1:03d}",) if n % 10 == 9 else (),
            predecessors=(f"b{n - 1:03d}",) if n % 10 == 0 and n else (),
        )
        for n in range(400)
    ]  # fmt: skip
    late = Batch(batch_id="late", dataset_id=DATASET, status="success", created_ms=T0)
    history = [  # copied, pending, waiting (also outside the window) and gone
        Checkpoint(unit=whole(b)[0], status=status, files_done=done,
                   last_processed_offset=done - 1)
        for b, status, done in [
            *((batches[n], UnitStatus.COMPLETED, 1) for n in range(19, 400, 20)),
            *((batches[n], UnitStatus.PENDING, 0) for n in range(5, 400, 20)),
            *((batches[n], UnitStatus.WAITING, 0) for n in range(3, 400, 30)),
            (late, UnitStatus.WAITING, 0),
            (attrs.evolve(late, batch_id="gone"), UnitStatus.WAITING, 0),
        ]
    ]  # fmt: skip
    source = MemoryAepSource(DATASET, {b: {} for b in [*batches, late]})
    outcomes = []
    for threads, group in [(1, 10_000), (8, 7)]:
        store = MemoryCheckpointStore(clock=lambda: 1.0)
        store._insert(history)
        result = Planner(source, store, whole, threads=threads, group_size=group).plan(
            DATASET, window(T0 + 1, T0 + 2801)
        )
        outcomes.append(
            (result, {cp.unit_id: (cp.status, cp.error) for cp in store.list(DATASET)})
        )
    assert outcomes[0] == outcomes[1]
    result, states = outcomes[0]
    assert states["late"] == (UnitStatus.PENDING, None)
    assert states["gone"] == (UnitStatus.SKIPPED, "gone from the Catalog")
    assert result.skipped.keys() == {"failed", "aborted", "superseded", "replay"}


def test_a_plan_reads_the_units_of_its_window_not_the_history():
    days = 20
    source = Generated(days * 100, step_ms=DAY_MS // 100)  # 100 batches a day
    store = CountingStore()
    for day in range(days - 1):  # the history, copied
        history = window(T0 + day * DAY_MS, T0 + (day + 1) * DAY_MS)
        store.register(
            u for b in source.list_batches(DATASET, history) for u in whole(b)
        )
    old = T0 - DAY_MS  # a batch still loading long ago, not in the window
    store.register(
        [WorkUnit(dataset_id=DATASET, batch_id="slow", batch_created_ms=old)],
        status=UnitStatus.WAITING,
    )
    store.reads.clear()
    store.writes.clear()
    last_day = window(T0 + (days - 1) * DAY_MS, T0 + days * DAY_MS)
    planner = Planner(source, store, whole, threads=4, group_size=30)
    result = planner.plan(DATASET, last_day)
    assert (result.batches_found, result.units_new) == (100, 100)
    assert store.reads["scan"] == 0, "no read of the whole history"
    assert store.reads["get_many"] == 0  # the day's batches are new
    assert store.reads["Waiting"] == 1  # the one Waiting unit
    assert store.writes == {"insert": 100, "replace": 1}  # "slow" is gone now
    store.reads.clear()
    store.writes.clear()
    assert planner.plan(DATASET, last_day).units_new == 0
    assert store.writes == {}, "re-planning known units writes nothing"
    assert +store.reads == {"get_many": 100}  # nothing else, none twice


def test_slices_over_http_list_every_batch_once_at_edges_and_in_one_millisecond():
    # 4 slices of [T0, T0 + 4000); 150 batches in one millisecond on an edge need
    # two Catalog pages there; groups of 40 let idle threads split busy slices.
    times = [-1, 0, 999, 1000, 1999, 3999, 4000] + [2000] * 150 + [2001] * 3
    batches = [
        FakeBatch(batch_id=f"b{n:03d}", dataset_id=DATASET, status="success",
                  created_ms=T0 + t)
        for n, t in enumerate(times)
    ]  # fmt: skip
    inside = {b.batch_id for b in batches if T0 <= b.created_ms < T0 + 4000}
    store = MemoryCheckpointStore()
    with FakeAepPlatform({DATASET: {}}, batches) as platform:
        source = HttpAepSource.from_env(platform.env())
        planner = Planner(source, store, whole, threads=4, group_size=40)
        result = planner.plan(DATASET, window(T0, T0 + 4000))
    assert {cp.unit_id for cp in store.list(DATASET)} == inside
    assert result.batches_found == result.units_new == len(inside)
