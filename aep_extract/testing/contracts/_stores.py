"""The checkpoint store contracts: basic, with watermarks, with atomic watermarks."""

from __future__ import annotations

import random
import threading
import uuid
from typing import Optional

import attrs
import pytest

from ...checkpoints.base import MAX_ERROR_LENGTH, CheckpointStore
from ...errors import (
    CheckpointConflict,
    CheckpointError,
    ConfigError,
    DestinationMismatch,
)
from ...models import (
    WHOLE_BATCH,
    Checkpoint,
    Lease,
    TimeWindow,
    UnitStatus,
    WorkUnit,
    from_epoch_ms,
)

__all__ = [
    "AtomicWatermarksContract",
    "BasicCheckpointStoreContract",
    "CheckpointStoreContract",
    "ManualClock",
]

LEASE = 60.0
"""Lease length the store suite claims with, in seconds."""

START = 1_700_000_000.25
"""The store suite's starting time: exactly representable, with a fraction."""

PLANNED_MS = 1_718_000_000_000
"""An end of a planned window (epoch ms) the watermark tests start from."""

SINK_A = "s3://bucket-a/aep {dataset_id}/date={date}/batch={batch_id}/{name}"
SINK_B = "file:///data/aep {dataset_id}/date={date}/batch={batch_id}/{name}"
"""Destinations the destination tests bind (any text a caller chooses)."""

_UNSETTLED = (UnitStatus.IN_PROGRESS, UnitStatus.COMPLETED, UnitStatus.FAILED)
"""Statuses ``settle`` neither moves from nor to, nor ``register`` creates."""


class ManualClock:
    """An epoch-seconds clock that moves only when told to; thread-safe."""

    def __init__(self, now: float = START) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now


class BasicCheckpointStoreContract:
    """What every :class:`~aep_extract.checkpoints.base.CheckpointStore` must do,
    watermarks aside (see :class:`CheckpointStoreContract`).

    Supply a function-scoped ``store`` fixture returning an open store.
    """

    @pytest.fixture
    def clock(self, store: CheckpointStore) -> ManualClock:
        """A manual clock, installed on the store."""
        clock = ManualClock()
        store.clock = clock
        return clock

    @pytest.fixture
    def dataset(self) -> str:
        """A dataset id no other test uses."""
        return f"ds-{uuid.uuid4().hex[:12]}"

    @staticmethod
    def units(dataset: str, count: int) -> list[WorkUnit]:
        """``count`` whole-batch units of ``dataset`` with distinct batch ids."""
        return [
            WorkUnit(
                dataset_id=dataset,
                batch_id=f"{dataset}-b{index:03d}",
                batch_created_ms=1_690_000_000_000 + index,
            )
            for index in range(count)
        ]

    @staticmethod
    def claim(store: CheckpointStore, dataset: str, owner: str = "worker-a") -> Lease:
        """Claim a unit, failing the test if none is claimable."""
        lease = store.claim(dataset, owner, LEASE)
        assert lease is not None, f"{owner} could not claim a unit of {dataset}"
        return lease

    @staticmethod
    def stored(store: CheckpointStore, unit: WorkUnit) -> Checkpoint:
        """The stored checkpoint of a unit, failing the test if it is missing."""
        checkpoint = store.get(unit.batch_id, unit.offset_range)
        assert checkpoint is not None, f"unit {unit.unit_id} is not stored"
        return checkpoint

    # -- register -------------------------------------------------------------------

    def test_register_creates_pending_units(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        units = self.units(dataset, 3)
        assert store.register(units) == 3
        for unit in units:
            checkpoint = self.stored(store, unit)
            assert checkpoint.unit == unit
            assert checkpoint.status is UnitStatus.PENDING
            assert checkpoint.last_processed_offset == -1
            assert checkpoint.owner is None
            assert checkpoint.lease_expires_at is None
            assert (checkpoint.attempts, checkpoint.crashes) == (0, 0)
            assert checkpoint.created_at == clock()

    def test_register_is_idempotent(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        units = self.units(dataset, 3)
        assert store.register(units[:2]) == 2
        assert store.register(units) == 1
        assert store.register(units) == 0
        assert store.register([]) == 0
        assert len(store.list(dataset)) == 3

    def test_register_never_resets_progress(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = store.advance(self.claim(store, dataset), 4, files=5, size=100)
        clock.advance(1)
        assert store.register([unit]) == 0
        assert self.stored(store, unit) == lease.checkpoint
        store.complete(lease)
        assert store.register([unit]) == 0
        kept = self.stored(store, unit)
        assert kept.status is UnitStatus.COMPLETED
        assert (kept.last_processed_offset, kept.files_done) == (4, 5)

    def test_register_as_waiting_or_skipped_with_a_reason(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        waiting, skipped, pending = self.units(dataset, 3)
        assert store.register([waiting], status=UnitStatus.WAITING, reason="loading")
        assert store.register(
            [skipped], status=UnitStatus.SKIPPED, reason="superseded by b9"
        )
        assert store.register([pending]) == 1
        for unit, status, reason in (
            (waiting, UnitStatus.WAITING, "loading"),
            (skipped, UnitStatus.SKIPPED, "superseded by b9"),
            (pending, UnitStatus.PENDING, None),
        ):
            checkpoint = self.stored(store, unit)
            assert checkpoint.unit == unit
            assert (checkpoint.status, checkpoint.error) == (status, reason)
            assert (checkpoint.owner, checkpoint.attempts) == (None, 0)
            assert checkpoint.last_processed_offset == -1
            assert checkpoint.created_at == checkpoint.updated_at == clock()
        assert [cp.unit for cp in store.list(dataset, UnitStatus.WAITING)] == [waiting]
        assert [cp.unit for cp in store.list(dataset, UnitStatus.SKIPPED)] == [skipped]
        summary = store.summary(dataset)
        assert summary[UnitStatus.WAITING] == summary[UnitStatus.SKIPPED] == 1
        assert summary[UnitStatus.PENDING] == 1

    def test_claim_never_takes_waiting_or_skipped_units(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        waiting, skipped, pending = self.units(dataset, 3)
        store.register([waiting], status=UnitStatus.WAITING, reason="processing")
        store.register([skipped], status=UnitStatus.SKIPPED, reason="failed batch")
        assert store.claim(dataset, "worker-a", LEASE) is None
        store.register([pending])
        assert self.claim(store, dataset).unit == pending
        clock.advance(LEASE * 100)
        lease = self.claim(store, dataset, "worker-b")
        assert lease.unit == pending, "only the expired lease is taken over"
        store.complete(lease)
        assert store.claim(dataset, "worker-c", LEASE) is None
        assert self.stored(store, waiting).status is UnitStatus.WAITING
        assert self.stored(store, skipped).status is UnitStatus.SKIPPED

    @pytest.mark.parametrize("status", _UNSETTLED)
    def test_register_refuses_leased_and_final_statuses(
        self,
        store: CheckpointStore,
        clock: ManualClock,
        dataset: str,
        status: UnitStatus,
    ) -> None:
        with pytest.raises(ConfigError, match=status.value):
            store.register(self.units(dataset, 1), status=status)
        assert store.list(dataset) == []

    def test_register_twice_keeps_the_first_status(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        waiting, pending, skipped = self.units(dataset, 3)
        store.register([waiting], status=UnitStatus.WAITING, reason="loading")
        store.register([pending])
        store.register([skipped], status=UnitStatus.SKIPPED, reason="replay")
        before = {u.unit_id: self.stored(store, u) for u in (waiting, pending, skipped)}
        clock.advance(1)
        assert store.register([waiting, pending, skipped]) == 0
        assert store.register([waiting, pending], status=UnitStatus.SKIPPED) == 0
        assert (
            store.register([pending, skipped], status=UnitStatus.WAITING, reason="x")
            == 0
        )
        after = {u.unit_id: self.stored(store, u) for u in (waiting, pending, skipped)}
        assert after == before

    # -- settle ---------------------------------------------------------------------

    def test_settle_waiting_to_pending_makes_the_unit_claimable(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit], status=UnitStatus.WAITING, reason="loading")
        current = self.stored(store, unit)
        clock.advance(5)
        assert store.settle(current, UnitStatus.PENDING) is True
        settled = self.stored(store, unit)
        assert settled == attrs.evolve(
            current,
            status=UnitStatus.PENDING,
            error=None,
            updated_at=clock(),
            version=current.version + 1,
        )
        lease = self.claim(store, dataset)
        assert lease.unit == unit
        assert (lease.checkpoint.attempts, lease.checkpoint.crashes) == (0, 0)

    def test_settle_moves_between_pending_waiting_and_skipped(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        moves = [
            (UnitStatus.SKIPPED, "superseded by b2"),
            (UnitStatus.WAITING, "successor is loading"),
            (UnitStatus.SKIPPED, "x" * (MAX_ERROR_LENGTH + 10)),
            (UnitStatus.PENDING, None),
            (UnitStatus.PENDING, "planned again"),
            (UnitStatus.WAITING, None),
        ]
        for status, reason in moves:
            clock.advance(1)
            current = self.stored(store, unit)
            assert store.settle(current, status, reason) is True
            settled = self.stored(store, unit)
            assert settled.status is status
            assert settled.error == (
                None if reason is None else reason[:MAX_ERROR_LENGTH]
            )
            assert settled.version == current.version + 1
            assert settled.updated_at == clock()
            assert settled.created_at == current.created_at
            assert settled.last_processed_offset == current.last_processed_offset
        assert store.claim(dataset, "worker-a", LEASE) is None

    def test_settle_refuses_leased_completed_and_failed_units(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        leased, done, failed = self.units(dataset, 3)
        store.register([leased])
        lease = self.claim(store, dataset)
        store.register([done])
        store.complete(self.claim(store, dataset))
        store.register([failed])
        store.fail(self.claim(store, dataset), "broken", max_attempts=1)
        for unit in (leased, done, failed):
            current = self.stored(store, unit)
            for status in (UnitStatus.PENDING, UnitStatus.WAITING, UnitStatus.SKIPPED):
                with pytest.raises(CheckpointError) as caught:
                    store.settle(current, status, "no")
                assert not isinstance(caught.value, CheckpointConflict)
            assert self.stored(store, unit) == current
        assert self.stored(store, leased) == lease.checkpoint

    @pytest.mark.parametrize("status", _UNSETTLED)
    def test_settle_refuses_to_move_to_a_leased_or_final_status(
        self,
        store: CheckpointStore,
        clock: ManualClock,
        dataset: str,
        status: UnitStatus,
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit], status=UnitStatus.WAITING, reason="loading")
        current = self.stored(store, unit)
        with pytest.raises(CheckpointError):
            store.settle(current, status)
        assert self.stored(store, unit) == current

    def test_settle_returns_false_on_a_stale_version(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit], status=UnitStatus.WAITING, reason="loading")
        stale = self.stored(store, unit)
        assert store.settle(stale, UnitStatus.PENDING) is True
        moved = self.stored(store, unit)
        assert store.settle(stale, UnitStatus.SKIPPED, "late") is False
        assert self.stored(store, unit) == moved
        # Read as Pending, then claimed by a worker: settling must not undo the claim.
        lease = self.claim(store, dataset)
        assert store.settle(moved, UnitStatus.SKIPPED, "late") is False
        assert self.stored(store, unit) == lease.checkpoint
        # A unit that is not stored at all.
        ghost = attrs.evolve(moved, unit=attrs.evolve(unit, batch_id=f"{dataset}-gone"))
        assert store.settle(ghost, UnitStatus.SKIPPED) is False
        assert store.get(ghost.unit.batch_id) is None

    # -- claim ----------------------------------------------------------------------

    def test_claim_marks_unit_in_progress(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        clock.advance(10)
        lease = self.claim(store, dataset, "worker-a")
        assert lease.owner == "worker-a"
        assert lease.unit == unit
        taken = lease.checkpoint
        assert taken.status is UnitStatus.IN_PROGRESS
        assert taken.owner == "worker-a"
        assert taken.lease_expires_at == clock() + LEASE
        assert lease.expires_at == clock() + LEASE
        assert (taken.attempts, taken.crashes) == (0, 0), "a claim counts nothing"
        assert taken.updated_at == clock()
        assert self.stored(store, unit) == taken

    def test_claim_returns_none_when_nothing_is_claimable(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        assert store.claim(dataset, "worker-a", LEASE) is None
        store.register(self.units(dataset, 1))
        lease = self.claim(store, dataset)
        assert store.claim(dataset, "worker-b", LEASE) is None
        store.complete(lease)
        assert store.claim(dataset, "worker-b", LEASE) is None

    def test_claim_stays_within_its_dataset(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        store.register(self.units(dataset, 2))
        assert store.claim(f"{dataset}-other", "worker-a", LEASE) is None

    def test_two_owners_claim_different_units(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        store.register(self.units(dataset, 2))
        first = self.claim(store, dataset, "worker-a")
        second = self.claim(store, dataset, "worker-b")
        assert first.unit != second.unit
        assert store.claim(dataset, "worker-c", LEASE) is None

    def test_only_one_owner_wins_a_single_unit(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        winner = self.claim(store, dataset, "worker-a")
        assert store.claim(dataset, "worker-b", LEASE) is None
        assert self.stored(store, unit).owner == winner.owner == "worker-a"

    def test_expired_lease_is_taken_over_and_old_owner_is_fenced(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        old = store.advance(self.claim(store, dataset, "worker-a"), 2, files=3)
        clock.advance(LEASE - 1)
        assert store.claim(dataset, "worker-b", LEASE) is None
        clock.advance(1)
        new = self.claim(store, dataset, "worker-b")
        assert new.unit == unit
        assert (new.checkpoint.attempts, new.checkpoint.crashes) == (0, 1)
        assert new.checkpoint.last_processed_offset == 2
        with pytest.raises(CheckpointConflict):
            store.advance(old, 5, files=1)
        with pytest.raises(CheckpointConflict):
            store.renew(old, LEASE)
        with pytest.raises(CheckpointConflict):
            store.complete(old)
        with pytest.raises(CheckpointConflict):
            store.fail(old, "late", max_attempts=3)
        with pytest.raises(CheckpointConflict):
            store.release(old)
        assert self.stored(store, unit) == new.checkpoint
        store.complete(new)
        assert self.stored(store, unit).status is UnitStatus.COMPLETED

    def test_renew_extends_the_lease(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        store.register(self.units(dataset, 1))
        lease = self.claim(store, dataset, "worker-a")
        clock.advance(LEASE / 2)
        renewed = store.renew(lease, LEASE)
        assert renewed.expires_at == clock() + LEASE
        clock.advance(LEASE / 2 + 1)
        assert store.claim(dataset, "worker-b", LEASE) is None
        assert store.advance(renewed, 0).checkpoint.last_processed_offset == 0

    def test_advance_can_renew_the_lease_in_the_same_write(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = self.claim(store, dataset, "worker-a")
        clock.advance(LEASE - 1)
        lease = store.advance(lease, 0, files=1, lease_seconds=LEASE)
        assert lease.expires_at == clock() + LEASE
        assert self.stored(store, unit) == lease.checkpoint
        clock.advance(2)
        assert store.claim(dataset, "worker-b", LEASE) is None
        plain = store.advance(lease, 1)
        assert plain.expires_at == lease.expires_at

    def test_save_progress_stores_the_record_and_renews_the_lease(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = self.claim(store, dataset, "worker-a")
        clock.advance(LEASE - 1)
        record = '{"files":[{"o":0,"t":"upload-1","d":{"1":"c1 e1"}}]}' + "x" * 50_000
        lease = store.save_progress(lease, record, LEASE)
        assert lease.expires_at == clock() + LEASE
        stored = self.stored(store, unit)
        assert stored == lease.checkpoint
        assert stored.progress == record
        clock.advance(2)
        assert store.claim(dataset, "worker-b", LEASE) is None  # renewed

    def test_progress_survives_advance_release_fail_and_takeover(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        """A record of uploads in progress outlives its owner: the next owner of
        the unit resumes them. Only completing the unit drops it."""
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = store.save_progress(self.claim(store, dataset, "a"), "r1", LEASE)
        lease = store.advance(lease, 0, files=1)
        store.release(lease)
        assert self.stored(store, unit).progress == "r1"
        lease = store.save_progress(self.claim(store, dataset, "b"), "r2", LEASE)
        store.fail(lease, "boom", max_attempts=3)
        assert self.stored(store, unit).progress == "r2"
        self.claim(store, dataset, "c")
        clock.advance(LEASE + 1)
        taken = self.claim(store, dataset, "d")  # c died: its lease expired
        assert taken.checkpoint.progress == "r2"
        store.complete(taken)
        assert self.stored(store, unit).progress is None

    def test_save_progress_is_fenced_and_none_clears_it(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        first = self.claim(store, dataset)
        second = store.save_progress(first, "r1", LEASE)
        with pytest.raises(CheckpointConflict):
            store.save_progress(first, "r0", LEASE)
        store.save_progress(second, None, LEASE)
        assert self.stored(store, unit).progress is None

    def test_stale_lease_object_is_fenced(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        store.register(self.units(dataset, 1))
        first = self.claim(store, dataset)
        second = store.advance(first, 0)
        # `first` carries an old version: writing with it must lose.
        with pytest.raises(CheckpointConflict):
            store.advance(first, 1)
        assert store.advance(second, 1).checkpoint.last_processed_offset == 1

    # -- progress -------------------------------------------------------------------

    def test_advance_moves_forward_and_accumulates(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = self.claim(store, dataset)
        lease = store.advance(lease, 0, files=1, size=10)
        lease = store.advance(lease, 2, files=2, size=20)
        stored = self.stored(store, unit)
        assert stored.last_processed_offset == 2
        assert (stored.files_done, stored.bytes_done) == (3, 30)
        for offset in (1, 2):
            same = store.advance(lease, offset, files=9, size=99)
            assert same == lease
            assert self.stored(store, unit) == stored

    def test_complete_clears_the_owner(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = store.advance(self.claim(store, dataset), 6, files=7, size=70)
        done = store.complete(lease)
        assert self.stored(store, unit) == done
        assert done.status is UnitStatus.COMPLETED
        assert (done.owner, done.lease_expires_at, done.error) == (None, None, None)
        assert (done.last_processed_offset, done.files_done, done.bytes_done) == (
            6,
            7,
            70,
        )
        clock.advance(LEASE * 10)
        assert store.claim(dataset, "worker-b", LEASE) is None

    def test_fail_retries_until_max_attempts_then_fails(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        for attempt in (1, 2):
            lease = self.claim(store, dataset)
            assert lease.checkpoint.attempts == attempt - 1
            lease = store.advance(lease, attempt)
            pending = store.fail(lease, f"error {attempt}", max_attempts=3)
            assert pending.status is UnitStatus.PENDING
            assert (pending.attempts, pending.crashes) == (attempt, 0)
            assert pending.error == f"error {attempt}"
            assert pending.owner is None
            assert self.stored(store, unit) == pending
        failed = store.fail(self.claim(store, dataset), "error 3", max_attempts=3)
        assert self.stored(store, unit) == failed
        assert failed.status is UnitStatus.FAILED
        assert failed.error == "error 3"
        assert failed.attempts == 3
        assert failed.last_processed_offset == 2
        assert store.claim(dataset, "worker-a", LEASE) is None

    def test_fail_stores_long_error_text_cut_to_the_limit(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        text = "é" + "x" * (MAX_ERROR_LENGTH * 2)
        store.fail(self.claim(store, dataset), text, max_attempts=1)
        assert self.stored(store, unit).error == text[:MAX_ERROR_LENGTH]

    def test_release_returns_unit_without_counting_the_attempt(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = store.advance(self.claim(store, dataset), 3)
        released = store.release(lease)
        assert self.stored(store, unit) == released
        assert released.status is UnitStatus.PENDING
        assert (released.owner, released.lease_expires_at) == (None, None)
        assert (released.attempts, released.crashes) == (0, 0)
        assert released.last_processed_offset == 3
        again = self.claim(store, dataset, "worker-b")
        assert (again.checkpoint.attempts, again.checkpoint.crashes) == (0, 0)
        assert again.checkpoint.last_processed_offset == 3

    # -- attempts and crashes -------------------------------------------------------

    def test_only_fail_counts_an_attempt(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        for _ in range(3):  # claims given back by graceful stops count nothing
            lease = self.claim(store, dataset)
            assert lease.checkpoint.attempts == 0
            store.release(lease)
        failed = store.fail(self.claim(store, dataset), "boom", max_attempts=5)
        assert (failed.attempts, failed.crashes) == (1, 0)
        lease = self.claim(store, dataset)
        assert lease.checkpoint.attempts == 1
        assert store.release(lease).attempts == 1, "release keeps the count"
        failed = store.fail(self.claim(store, dataset), "boom", max_attempts=5)
        assert failed.attempts == 2
        assert self.stored(store, unit) == failed

    def test_takeover_of_an_expired_lease_counts_a_crash(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        lease = self.claim(store, dataset, "worker-0")
        for crash in (1, 2):
            clock.advance(LEASE)
            lease = self.claim(store, dataset, f"worker-{crash}")
            assert (lease.checkpoint.attempts, lease.checkpoint.crashes) == (0, crash)
            assert self.stored(store, unit) == lease.checkpoint
        failed = store.fail(lease, "boom", max_attempts=5)
        assert (failed.status, failed.attempts, failed.crashes) == (
            UnitStatus.PENDING,
            1,
            2,
        )
        released = store.release(self.claim(store, dataset))
        assert (released.attempts, released.crashes) == (1, 2)

    def test_max_crashes_fails_the_unit_instead_of_taking_it(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        crashing, healthy = self.units(dataset, 2)
        store.register([crashing])
        store.advance(self.claim(store, dataset, "worker-a"), 1, files=2)
        clock.advance(LEASE)
        lost = self.claim(store, dataset, "worker-b")  # crash 1
        store.register([healthy])
        assert self.claim(store, dataset, "worker-c").unit == healthy
        clock.advance(LEASE)
        # Both leases expired: the unit at one crash short of the limit is failed,
        # the claim goes on and takes the other.
        taken = store.claim(dataset, "worker-d", LEASE, max_crashes=2)
        assert taken is not None
        assert taken.unit == healthy
        assert taken.checkpoint.crashes == 1
        assert store.claim(dataset, "worker-e", LEASE, max_crashes=2) is None
        failed = self.stored(store, crashing)
        assert failed.status is UnitStatus.FAILED
        assert (failed.owner, failed.lease_expires_at) == (None, None)
        assert (failed.attempts, failed.crashes) == (0, 2)
        assert (failed.last_processed_offset, failed.files_done) == (1, 2)
        assert failed.error == (
            "lease of worker-b expired 2 times: its workers died or hung while "
            "copying it"
        )
        with pytest.raises(CheckpointConflict):
            store.advance(lost, 5)
        clock.advance(LEASE)
        again = self.claim(store, dataset, "worker-f")  # no limit: never fails
        assert (again.unit, again.checkpoint.crashes) == (healthy, 2)
        assert self.stored(store, crashing) == failed

    def test_a_dead_owners_lease_is_taken_over_before_it_expires(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        dead, live = self.units(dataset, 2)
        store.register([dead])
        old = store.advance(self.claim(store, dataset, "worker-dead"), 1, files=2)
        store.register([live])
        self.claim(store, dataset, "worker-live")
        store.owner_is_dead = lambda owner: owner == "worker-dead"
        clock.advance(1)
        new = self.claim(store, dataset, "worker-b")
        assert new.unit == dead
        assert (new.checkpoint.attempts, new.checkpoint.crashes) == (0, 1)
        assert (new.checkpoint.last_processed_offset, new.checkpoint.files_done) == (
            1,
            2,
        )
        assert new.expires_at == clock() + LEASE
        assert self.stored(store, dead) == new.checkpoint
        with pytest.raises(CheckpointConflict):
            store.advance(old, 5)
        assert store.claim(dataset, "worker-c", LEASE) is None
        assert self.stored(store, live).owner == "worker-live"

    def test_owners_are_looked_at_only_when_no_pending_unit_is_claimable(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        held, pending = self.units(dataset, 2)
        store.register([held])
        self.claim(store, dataset, "worker-dead")
        store.register([pending])
        looked_at: list[str] = []

        def owner_is_dead(owner: str) -> bool:
            looked_at.append(owner)
            return owner == "worker-dead"

        store.owner_is_dead = owner_is_dead
        assert self.claim(store, dataset, "worker-b").unit == pending
        assert looked_at == []
        assert self.claim(store, dataset, "worker-c").unit == held
        assert sorted(looked_at) == ["worker-b", "worker-dead"]  # once each

    def test_racing_claims_take_a_dead_owners_unit_once(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        self.claim(store, dataset, "worker-dead")
        store.owner_is_dead = lambda owner: owner == "worker-dead"
        won: list[str] = []
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def work(owner: str) -> None:
            try:
                start.wait()
                if store.claim(dataset, owner, LEASE) is not None:
                    won.append(owner)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(f"worker-{n}",)) for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert len(won) == 1
        stored = self.stored(store, unit)
        assert (stored.owner, stored.crashes) == (won[0], 1)

    def test_retry_failed_resets_attempts_and_crashes(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        store.fail(store.advance(self.claim(store, dataset), 3), "boom", max_attempts=9)
        self.claim(store, dataset, "worker-a")
        clock.advance(LEASE)
        self.claim(store, dataset, "worker-b")
        clock.advance(LEASE)
        assert store.claim(dataset, "worker-c", LEASE, max_crashes=2) is None
        failed = self.stored(store, unit)
        assert (failed.status, failed.attempts, failed.crashes) == (
            UnitStatus.FAILED,
            1,
            2,
        )
        assert store.retry_failed(dataset) == 1
        again = self.stored(store, unit)
        assert (again.status, again.attempts, again.crashes) == (
            UnitStatus.PENDING,
            0,
            0,
        )
        assert again.last_processed_offset == 3
        lease = store.claim(dataset, "worker-d", LEASE, max_crashes=2)
        assert lease is not None
        assert lease.unit == unit

    def _fail_all(self, store: CheckpointStore, dataset: str, count: int) -> None:
        for offset in range(count):
            lease = store.advance(self.claim(store, dataset), offset)
            store.fail(lease, "broken", max_attempts=1)

    def test_retry_failed_resets_every_failed_unit(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        units = self.units(dataset, 3)
        store.register(units)
        self._fail_all(store, dataset, 2)
        assert store.summary(dataset)[UnitStatus.FAILED] == 2
        assert store.retry_failed(dataset) == 2
        assert store.retry_failed(dataset) == 0
        progress = set()
        for unit in units:
            checkpoint = self.stored(store, unit)
            assert checkpoint.status is UnitStatus.PENDING
            assert checkpoint.attempts == 0
            progress.add(checkpoint.last_processed_offset)
        assert progress == {-1, 0, 1}

    def test_retry_failed_by_unit_ids(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        whole = self.units(dataset, 1)[0]
        split = attrs.evolve(whole, batch_id=f"{dataset}-split", last_offset=9)
        store.register([whole, split])
        self._fail_all(store, dataset, 2)
        assert split.unit_id != split.batch_id
        assert store.retry_failed(dataset, [split.unit_id, "no-such-unit"]) == 1
        assert self.stored(store, split).status is UnitStatus.PENDING
        assert self.stored(store, whole).status is UnitStatus.FAILED
        assert store.retry_failed(dataset, [whole.unit_id]) == 1
        assert store.summary(dataset)[UnitStatus.FAILED] == 0

    # -- reading --------------------------------------------------------------------

    def test_list_summary_and_get(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        units = self.units(dataset, 4)
        store.register(reversed(units))
        store.complete(self.claim(store, dataset))
        self.claim(store, dataset)
        listed = store.list(dataset)
        assert [cp.unit_id for cp in listed] == sorted(u.unit_id for u in units)
        completed = store.list(dataset, UnitStatus.COMPLETED)
        assert len(completed) == 1
        assert completed[0].status is UnitStatus.COMPLETED
        assert len(store.list(dataset, UnitStatus.PENDING)) == 2
        assert store.list(dataset, UnitStatus.FAILED) == []
        assert store.summary(dataset) == {
            UnitStatus.PENDING: 2,
            UnitStatus.IN_PROGRESS: 1,
            UnitStatus.COMPLETED: 1,
            UnitStatus.FAILED: 0,
            UnitStatus.WAITING: 0,
            UnitStatus.SKIPPED: 0,
        }
        assert store.summary(f"{dataset}-other") == dict.fromkeys(UnitStatus, 0)
        assert store.list(f"{dataset}-other") == []
        assert store.get(units[0].batch_id) == self.stored(store, units[0])
        assert store.get(units[0].batch_id, WHOLE_BATCH) is not None
        assert store.get(f"{dataset}-missing") is None
        assert store.get(units[0].batch_id, "0-9") is None

    def test_get_many_finds_the_units_of_the_batches_asked_for(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        units = self.units(dataset, 4)
        split = self.units(dataset, 5)[4]
        parts = [
            attrs.evolve(split, first_offset=0, last_offset=9),
            attrs.evolve(split, first_offset=10, last_offset=None),
        ]
        (foreign,) = self.units(f"{dataset}-other", 1)
        store.register([*units, *parts, foreign])
        assert store.settle(self.stored(store, units[2]), UnitStatus.SKIPPED, "why")
        asked = [units[0], units[2], split, foreign, units[0]]
        found = store.get_many(dataset, [u.batch_id for u in asked])
        assert found == {
            units[0].batch_id: [self.stored(store, units[0])],
            units[2].batch_id: [self.stored(store, units[2])],
            split.batch_id: [self.stored(store, part) for part in parts],
        }
        assert found[units[2].batch_id][0].status is UnitStatus.SKIPPED
        assert store.get_many(dataset, [f"{dataset}-missing"]) == {}
        assert store.get_many(dataset, iter(())) == {}

    def test_get_many_answers_for_many_batches_at_once(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        units = self.units(dataset, 120)
        store.register(units[::2])
        found = store.get_many(dataset, (u.batch_id for u in units))
        assert sorted(found) == sorted(u.batch_id for u in units[::2])
        assert all([cp.unit for cp in found[u.batch_id]] == [u] for u in units[::2])

    def test_split_units_of_one_batch_are_distinct(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        base = self.units(dataset, 1)[0]
        ranges: list[tuple[int, Optional[int]]] = [(0, 9), (10, 19), (20, None)]
        units = [
            attrs.evolve(base, first_offset=first, last_offset=last)
            for first, last in ranges
        ]
        assert store.register(units) == 3
        assert len({u.unit_id for u in units}) == 3
        loaded = store.get(base.batch_id, "10-19")
        assert loaded is not None
        assert (loaded.unit.first_offset, loaded.unit.last_offset) == (10, 19)
        assert self.stored(store, units[2]).unit.last_offset is None
        lease = self.claim(store, dataset)
        store.complete(store.advance(lease, lease.unit.first_offset + 1))
        others = [u for u in units if u != lease.unit]
        for unit in others:
            untouched = self.stored(store, unit)
            assert untouched.status is UnitStatus.PENDING
            assert untouched.last_processed_offset == -1

    def test_primitives_refuse_a_stale_version(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        (unit,) = self.units(dataset, 1)
        store.register([unit])
        current = self.stored(store, unit)
        changed = attrs.evolve(current, error="x", version=current.version + 1)
        with pytest.raises(CheckpointConflict):
            store._replace(changed, current.version + 5)
        ghost = attrs.evolve(changed, unit=attrs.evolve(unit, batch_id="ghost"))
        with pytest.raises(CheckpointConflict):
            store._replace(ghost, current.version)
        store._replace(changed, current.version)
        assert self.stored(store, unit) == changed

    # -- forget ---------------------------------------------------------------------

    def test_forget_deletes_a_window_then_the_dataset(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        """Needs the optional ``_delete`` primitive; a store without it fails here
        with its NotImplementedError message."""
        units = self.units(dataset, 3)
        other = self.units(f"{dataset}-other", 1)
        store.register([*units, *other])
        lease = self.claim(store, dataset)
        store.advance(lease, 0, files=1, size=10)
        second = units[1]
        window = TimeWindow(
            from_epoch_ms(second.batch_created_ms),
            from_epoch_ms(second.batch_created_ms + 1),
        )
        assert store.forget(dataset, window) == 1
        assert store.get(second.batch_id, second.offset_range) is None
        assert {cp.unit_id for cp in store.list(dataset)} == {
            units[0].unit_id,
            units[2].unit_id,
        }
        assert store.forget(dataset) == 2
        assert store.list(dataset) == []
        assert store.forget(dataset) == 0
        assert [cp.unit for cp in store.list(f"{dataset}-other")] == other
        assert store.register(units) == 3
        assert all(
            cp.status is UnitStatus.PENDING and cp.last_processed_offset == -1
            for cp in store.list(dataset)
        )

    def test_concurrent_claims_take_every_unit_exactly_once(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        units = self.units(dataset, 20)
        store.register(units)
        claimed: list[str] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def work(owner: str) -> None:
            try:
                start.wait()
                while True:
                    lease = store.claim(dataset, owner, LEASE)
                    if lease is None:
                        return
                    with lock:
                        claimed.append(lease.unit.unit_id)
                    store.complete(lease)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(f"worker-{n}",)) for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert sorted(claimed) == sorted(u.unit_id for u in units)
        assert store.summary(dataset)[UnitStatus.COMPLETED] == 20


class CheckpointStoreContract(BasicCheckpointStoreContract):
    """:class:`BasicCheckpointStoreContract` plus the per-dataset records: the
    watermarks that incremental runs start from (the optional
    ``_load_watermark``/``_save_watermark``) and the destination a dataset is
    bound to (``_load_destination``/``_save_destination``)."""

    def test_watermark_is_none_until_raised(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        assert store.watermark(dataset) is None
        store.register(self.units(dataset, 2))
        assert store.watermark(dataset) is None
        store.raise_watermark(dataset, PLANNED_MS)
        assert store.watermark(dataset) == PLANNED_MS

    def test_raise_watermark_never_moves_back(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        store.raise_watermark(dataset, PLANNED_MS)
        for lower in (PLANNED_MS - 1, PLANNED_MS, 0):
            clock.advance(1)
            store.raise_watermark(dataset, lower)
            assert store.watermark(dataset) == PLANNED_MS
        higher = PLANNED_MS + 86_400_000
        store.raise_watermark(dataset, higher)
        assert store.watermark(dataset) == higher
        store.raise_watermark(dataset, PLANNED_MS)
        assert store.watermark(dataset) == higher

    def test_watermark_primitives_store_what_they_are_given(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        """The primitives are plain load and save: only ``raise_watermark`` keeps
        the watermark from moving back."""
        assert store._load_watermark(dataset) is None
        store._save_watermark(dataset, None)  # removing an absent one is no error
        store._save_watermark(dataset, PLANNED_MS)
        assert store._load_watermark(dataset) == PLANNED_MS
        store._save_watermark(dataset, PLANNED_MS - 1000)
        assert store.watermark(dataset) == PLANNED_MS - 1000
        store._save_watermark(dataset, None)
        assert store.watermark(dataset) is None
        store.raise_watermark(dataset, 5)
        assert store.watermark(dataset) == 5

    def test_watermarks_are_per_dataset(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        others = [f"{dataset}-other", f"{dataset}x", dataset[:-1]]
        store.raise_watermark(dataset, PLANNED_MS)
        assert [store.watermark(other) for other in others] == [None, None, None]
        for n, other in enumerate(others, start=1):
            store.raise_watermark(other, PLANNED_MS + n)
        store.raise_watermark(others[0], PLANNED_MS + 100)
        assert store.watermark(dataset) == PLANNED_MS
        assert [store.watermark(other) for other in others] == [
            PLANNED_MS + 100,
            PLANNED_MS + 2,
            PLANNED_MS + 3,
        ]
        store.forget(others[0])
        assert store.watermark(others[0]) is None
        assert store.watermark(dataset) == PLANNED_MS
        assert store.watermark(others[1]) == PLANNED_MS + 2

    def test_watermark_is_not_a_unit(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        lonely = f"{dataset}-lonely"
        store.raise_watermark(lonely, PLANNED_MS)
        assert store.list(lonely) == []
        assert store.summary(lonely) == dict.fromkeys(UnitStatus, 0)
        assert store.claim(lonely, "worker-a", LEASE) is None
        assert store.retry_failed(lonely) == 0
        for status in UnitStatus:
            assert store.list(lonely, status) == []

        units = self.units(dataset, 2)
        store.register(units)
        store.raise_watermark(dataset, PLANNED_MS)
        assert [cp.unit for cp in store.list(dataset)] == units
        assert sum(store.summary(dataset).values()) == 2
        leases = [self.claim(store, dataset, f"worker-{n}") for n in range(2)]
        assert store.claim(dataset, "worker-x", LEASE) is None
        for lease in leases:
            store.complete(lease)
        assert store.summary(dataset)[UnitStatus.COMPLETED] == 2
        assert store.watermark(dataset) == PLANNED_MS

    def test_forget_dataset_clears_the_watermark_a_window_keeps_it(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        """Needs ``_delete`` as well."""
        units = self.units(dataset, 2)
        store.register(units)
        store.raise_watermark(dataset, PLANNED_MS)
        store.raise_watermark(f"{dataset}-other", PLANNED_MS + 1)
        first = units[0]
        window = TimeWindow(
            from_epoch_ms(first.batch_created_ms),
            from_epoch_ms(first.batch_created_ms + 1),
        )
        assert store.forget(dataset, window) == 1
        assert store.watermark(dataset) == PLANNED_MS
        assert store.forget(dataset) == 1
        assert store.watermark(dataset) is None
        assert store.watermark(f"{dataset}-other") == PLANNED_MS + 1
        # A dataset with a watermark and no units: forgetting clears the watermark.
        store.raise_watermark(dataset, PLANNED_MS)
        assert store.forget(dataset) == 0
        assert store.watermark(dataset) is None

    # -- destinations ---------------------------------------------------------------

    def test_the_first_binding_records_the_destination(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        assert store.destination(dataset) is None
        store.bind_destination(dataset, SINK_A)
        assert store.destination(dataset) == SINK_A
        store.bind_destination(dataset, SINK_A)  # the same again: nothing changes
        assert store.destination(dataset) == SINK_A

    def test_binding_another_destination_is_refused(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        store.bind_destination(dataset, SINK_A)
        with pytest.raises(DestinationMismatch) as caught:
            store.bind_destination(dataset, SINK_B)
        error = caught.value
        assert (error.dataset_id, error.recorded, error.destination) == (
            dataset,
            SINK_A,
            SINK_B,
        )
        assert str(error).startswith(
            f"dataset {dataset} was copied with this store to {SINK_A}; "
            f"this run writes to {SINK_B}."
        )
        assert "`aep-extract reset`" in str(error)
        assert store.destination(dataset) == SINK_A
        with pytest.raises(ConfigError, match="empty"):
            store.bind_destination(dataset, "")

    def test_destinations_are_per_dataset_and_not_units(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        other = f"{dataset}-other"
        store.bind_destination(dataset, SINK_A)
        assert store.destination(other) is None
        store.bind_destination(other, SINK_B)
        assert (store.destination(dataset), store.destination(other)) == (
            SINK_A,
            SINK_B,
        )
        assert store.list(dataset) == []
        assert store.summary(dataset) == dict.fromkeys(UnitStatus, 0)
        assert store.claim(dataset, "worker-a", LEASE) is None
        units = self.units(dataset, 2)
        store.register(units)
        assert [cp.unit for cp in store.list(dataset)] == units
        assert store.summary(dataset)[UnitStatus.PENDING] == 2

    def test_destination_primitives_store_what_they_are_given(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        """Plain load and save: only ``bind_destination`` refuses a change."""
        assert store._load_destination(dataset) is None
        store._save_destination(dataset, None)  # removing an absent one is no error
        store._save_destination(dataset, SINK_A)
        assert store._load_destination(dataset) == SINK_A
        store._save_destination(dataset, SINK_B)
        assert store.destination(dataset) == SINK_B
        store._save_destination(dataset, None)
        assert store.destination(dataset) is None
        store.bind_destination(dataset, SINK_A)
        assert store.destination(dataset) == SINK_A

    def test_forget_dataset_clears_the_destination_a_window_keeps_it(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        """Needs ``_delete`` as well."""
        units = self.units(dataset, 2)
        store.register(units)
        store.bind_destination(dataset, SINK_A)
        store.bind_destination(f"{dataset}-other", SINK_B)
        first = units[0]
        window = TimeWindow(
            from_epoch_ms(first.batch_created_ms),
            from_epoch_ms(first.batch_created_ms + 1),
        )
        assert store.forget(dataset, window) == 1
        assert store.destination(dataset) == SINK_A
        assert store.forget(dataset) == 1
        assert store.destination(dataset) is None
        assert store.destination(f"{dataset}-other") == SINK_B
        store.bind_destination(dataset, SINK_B)  # forgotten: another may be bound
        assert store.destination(dataset) == SINK_B


class AtomicWatermarksContract(CheckpointStoreContract):
    """:class:`CheckpointStoreContract` plus racing raises and bindings: for a
    store whose ``raise_watermark`` and ``_bind_destination`` are atomic (the base
    class's load-then-save is not)."""

    def test_concurrent_raises_keep_the_highest_end(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        ends = list(range(PLANNED_MS, PLANNED_MS + 8 * 5))
        random.Random(7).shuffle(ends)
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def work(mine: list[int]) -> None:
            try:
                start.wait()
                for end in mine:
                    store.raise_watermark(dataset, end)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(ends[n::8],)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert store.watermark(dataset) == max(ends)

    def test_racing_first_bindings_have_one_winner(
        self, store: CheckpointStore, clock: ManualClock, dataset: str
    ) -> None:
        """Eight threads bind two destinations at once: one is recorded, every
        binder of it succeeds and every binder of the other is refused."""
        wanted = [SINK_A, SINK_B] * 4
        outcomes: dict[int, str] = {}
        errors: list[BaseException] = []
        start = threading.Barrier(len(wanted))

        def bind(n: int) -> None:
            try:
                start.wait()
                store.bind_destination(dataset, wanted[n])
                outcomes[n] = "bound"
            except DestinationMismatch:
                outcomes[n] = "refused"
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=bind, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        winner = store.destination(dataset)
        assert winner in (SINK_A, SINK_B)
        assert outcomes == {
            n: "bound" if wanted[n] == winner else "refused" for n in range(8)
        }
