"""Planning decisions: waiting batches, replays, supersession, incremental windows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs
import pytest

from aep_extract import (
    Batch,
    CheckpointStore,
    Extractor,
    ExtractorConfig,
    MemoryCheckpointStore,
    MemorySink,
    SerialScheduler,
    UnitStatus,
)
from aep_extract.errors import ConfigError
from aep_extract.models import from_epoch_ms
from aep_extract.testing import MemoryAepSource

DATASET = "ds1"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
T0 = 1_717_977_600_000  # 2024-06-10T00:00:00Z


def day(n: int) -> str:
    """ISO text of midnight of day ``n`` (day 0 is 2024-06-10)."""
    return from_epoch_ms(T0 + n * DAY_MS).isoformat()


def batch(name: str, hour: int, status: str = "success", **fields: object) -> Batch:
    return Batch(
        batch_id=name,
        dataset_id=DATASET,
        status=status,
        created_ms=T0 + hour * HOUR_MS,
        **fields,  # type: ignore[arg-type]
    )


def files(name: str) -> dict[tuple[str, str], bytes]:
    return {(f"{name}-f", f"{name}.parquet"): name.encode() * 10}


class Catalog(MemoryAepSource):
    """A memory source whose batches can change status between plans."""

    def __init__(self, *batches: Batch) -> None:
        super().__init__(DATASET, {b: files(b.batch_id) for b in batches})

    def add(self, *batches: Batch) -> None:
        for b in batches:
            self.batches[b] = files(b.batch_id)

    def change(self, name: str, **fields: object) -> None:
        (old,) = [b for b in self.batches if b.batch_id == name]
        self.batches[attrs.evolve(old, **fields)] = self.batches.pop(old)  # type: ignore[arg-type]


@pytest.fixture
def store() -> MemoryCheckpointStore:
    return MemoryCheckpointStore()


def extractor(
    catalog: Catalog, store: MemoryCheckpointStore, sink: MemorySink, **config: object
) -> Extractor:
    return Extractor(
        catalog,
        store=store,
        sink=sink,
        scheduler=SerialScheduler(),
        config=ExtractorConfig(**config),  # type: ignore[arg-type]
        progress=False,
    )


def states(store: MemoryCheckpointStore) -> dict[str, tuple[str, object]]:
    return {cp.unit_id: (cp.status.value, cp.error) for cp in store.list(DATASET)}


def copied(sink: MemorySink) -> set[str]:
    """Batch ids with a manifest in the sink."""
    return {
        k.split("batch=")[1].split("/")[0] for k in sink.list_keys() if "_manifest" in k
    }


def test_a_loading_batch_waits_then_is_copied_by_a_later_plan_of_another_window(store):
    catalog = Catalog(batch("a", 1), batch("b", 2, "loading"))
    sink = MemorySink()
    with extractor(catalog, store, sink) as ex:
        report = ex.run(DATASET, day(0), day(1))
        assert report.ok, str(report)
        assert report.units[UnitStatus.WAITING] == 1
        assert "1 unit(s) waiting for AEP" in str(report)
        assert states(store) == {
            "a": ("Completed", None),
            "b": ("Waiting", "AEP status 'loading'"),
        }
        assert copied(sink) == {"a"}

        catalog.change("b", status="processing")
        assert ex.plan(DATASET, day(1), day(2)).batches_waiting == 1
        assert states(store)["b"] == ("Waiting", "AEP status 'processing'")

        catalog.change("b", status="success")
        result = ex.plan(DATASET, day(1), day(2))  # b was created on day 0
        assert (result.units_promoted, result.batches_waiting) == (1, 0)
        assert "1 no longer waiting" in str(result)
        report = ex.execute(DATASET)
    assert states(store) == {"a": ("Completed", None), "b": ("Completed", None)}
    assert copied(sink) == {"a", "b"}
    assert report.files_copied == 1


def test_a_waiting_batch_that_fails_or_vanishes_is_skipped_with_the_reason(store):
    catalog = Catalog(batch("a", 1, "loading"), batch("b", 2, "queued"))
    with extractor(catalog, store, MemorySink()) as ex:
        ex.plan(DATASET, day(0), day(1))
        catalog.change("a", status="failed")
        del catalog.batches[next(b for b in catalog.batches if b.batch_id == "b")]
        result = ex.plan(DATASET, day(1), day(2))
    assert states(store) == {
        "a": ("Skipped", "AEP status 'failed'"),
        "b": ("Skipped", "gone from the Catalog"),
    }
    assert result.skipped == {"failed": 1}
    assert result.batches_waiting == 0


def test_failed_and_aborted_batches_are_counted_not_registered(store):
    catalog = Catalog(batch("a", 1, "failed"), batch("b", 2, "aborted"))
    with extractor(catalog, store, MemorySink()) as ex:
        result = ex.plan(DATASET, day(0), day(1))
    assert result.skipped == {"failed": 1, "aborted": 1}
    assert states(store) == {}


def test_a_superseded_batch_is_skipped_and_its_successor_copied(store):
    catalog = Catalog(
        batch("old", 1, "success", successors=("new",)),
        batch("new", 2, predecessors=("old",), replay_reason="consolidation"),
    )
    sink = MemorySink()
    with extractor(catalog, store, sink) as ex:
        report = ex.run(DATASET, day(0), day(1))
    assert report.ok
    assert states(store) == {
        "new": ("Completed", None),
        "old": ("Skipped", "superseded by new (acp_successor)"),
    }
    assert copied(sink) == {"new"}


def test_a_replay_of_copied_batches_is_not_copied_again_unless_asked(store):
    catalog = Catalog(batch("p1", 1), batch("p2", 2, "loading"))
    sink = MemorySink()
    with extractor(catalog, store, sink) as ex:
        ex.run(DATASET, day(0), day(1))
    catalog.change("p1", status="inactive", successors=("r",))
    catalog.change("p2", status="inactive", successors=("r",))
    catalog.add(batch("r", 25, predecessors=("p1", "p2"), replay_reason="compaction"))
    with extractor(catalog, store, sink) as ex:
        result = ex.plan(DATASET, day(1), day(2))
        ex.execute(DATASET)
    assert result.skipped == {"replay": 1, "inactive": 1}  # p2 was Waiting
    assert states(store) == {
        "p1": ("Completed", None),  # work done is never undone
        "p2": ("Skipped", "AEP status 'inactive'"),
        "r": ("Skipped", "replays batches already copied: p1; not copied: p2"),
    }
    assert copied(sink) == {"p1"}

    with extractor(catalog, store, sink, copy_replays=True) as ex:
        report = ex.run(DATASET, day(1), day(2))
    assert states(store)["r"] == ("Completed", None)
    assert copied(sink) == {"p1", "r"}
    assert report.files_copied == 1


def test_a_replay_supersedes_predecessors_not_started_yet(store):
    catalog = Catalog(batch("p", 1))
    sink = MemorySink()
    with extractor(catalog, store, sink) as ex:
        ex.plan(DATASET, day(0), day(1))  # p is Pending, nothing copied
        catalog.add(batch("r", 25, predecessors=("p",), replay_reason="fix"))
        report = ex.run(DATASET, day(1), day(2))
    assert report.ok
    assert states(store) == {
        "p": ("Skipped", "superseded by replay r"),
        "r": ("Completed", None),
    }
    assert copied(sink) == {"r"}


def test_a_pending_unit_keeps_its_last_error_when_planned_again(store):
    catalog = Catalog(batch("a", 1))
    with extractor(catalog, store, MemorySink()) as ex:
        ex.plan(DATASET, day(0), day(1))
        lease = store.claim(DATASET, "w", 60)
        assert lease is not None
        store.fail(lease, "boom", max_attempts=3)
        ex.plan(DATASET, day(0), day(1))
    assert states(store) == {"a": ("Pending", "boom")}


def test_since_last_continues_from_the_watermark(store):
    catalog = Catalog(batch("a", 1), batch("b", 25), batch("c", 49))
    sink = MemorySink()
    with extractor(catalog, store, sink) as ex:
        with pytest.raises(ConfigError, match="no planned window yet"):
            ex.plan_since_last(DATASET, end=day(1))
        first = ex.plan_since_last(DATASET, start=day(0), end=day(1))
        assert (first.window.start, first.window.end) == (
            from_epoch_ms(T0),
            from_epoch_ms(T0 + DAY_MS),
        )
        assert store.watermark(DATASET) == T0 + DAY_MS
        ex.plan(DATASET, day(-5), day(-4))  # a backfill never moves it back
        second = ex.run_since_last(DATASET, start=day(-9), end=day(2))
        with pytest.raises(ConfigError, match="nothing new to plan"):
            ex.plan_since_last(DATASET, end=day(2))
    assert second.ok
    assert copied(sink) == {"a", "b"}
    assert store.watermark(DATASET) == T0 + 2 * DAY_MS


def test_since_last_ends_the_safety_lag_before_now(store):
    with extractor(Catalog(), store, MemorySink(), safety_lag_seconds=3600) as ex:
        window = ex.next_window(DATASET, start=day(0))
    expected = datetime.now(timezone.utc) - timedelta(hours=1)
    assert abs(window.end - expected) < timedelta(seconds=60)


def test_since_last_needs_a_store_with_watermarks():
    class NoMarks(MemoryCheckpointStore):
        _load_watermark = CheckpointStore._load_watermark

    ex = extractor(Catalog(), NoMarks(), MemorySink())
    with pytest.raises(ConfigError, match="keeps no watermarks"):
        ex.plan_since_last(DATASET, start=day(0), end=day(1))


def test_verify_expects_nothing_of_waiting_and_skipped_units(store):
    catalog = Catalog(
        batch("a", 1),
        batch("b", 2, "loading"),
        batch("old", 3, successors=("a",)),
    )
    with extractor(catalog, store, MemorySink()) as ex:
        ex.run(DATASET, day(0), day(1))
        report = ex.verify(DATASET, day(0), day(1))
    assert report.findings == ()
    assert report.batches == 1


def test_since_last_refuses_a_naive_time(store):
    with extractor(Catalog(), store, MemorySink()) as ex:
        with pytest.raises(ConfigError, match="no UTC offset"):
            ex.next_window(DATASET, start=datetime(2024, 6, 10))
        with pytest.raises(ConfigError, match="no UTC offset"):
            ex.next_window(DATASET, start=day(0), end="2024-06-11T00:00:00")
