"""Planning: which batches of a window to copy, wait for or skip, and why.

A plan lists the window's batches, and also looks again at every Waiting unit of
the dataset, whatever its window: a batch still loading when it was first seen
becomes Pending once AEP reports it succeeded. Units that work has touched are
never changed here; untouched ones (Pending with nothing copied, Waiting, Skipped)
follow the batch's current Catalog state.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Callable, Optional

import attrs

from ._plan_slices import GROUP_SIZE, PLAN_THREADS, SliceLister
from .checkpoints.base import CheckpointStore, group_by_batch
from .models import (
    EXPORTABLE_BATCH_STATUSES,
    NOTHING_DONE,
    PENDING_BATCH_STATUSES,
    Batch,
    Checkpoint,
    TimeWindow,
    UnitStatus,
    WorkUnit,
)
from .report import PlanResult
from .sources.base import AepSource

logger = logging.getLogger(__name__)

SUPERSEDED = "superseded"
"""The :attr:`PlanResult.skipped` key of batches replaced by a later one."""
REPLAY = "replay"
"""The :attr:`PlanResult.skipped` key of replays of batches already copied."""


Known = Mapping[str, Sequence[Checkpoint]]
"""Units of batches by batch id, as :meth:`CheckpointStore.get_many` reads them."""


class Action(enum.Enum):
    """What a plan does with a batch."""

    COPY = "copy"
    WAIT = "wait"
    SKIP = "skip"
    KEEP = "keep"  # work started: its units go on as they are
    IGNORE = "ignore"  # not exportable and never registered: only counted


@attrs.frozen
class Decision:
    """A batch's action, with the note recorded on its units and the counter key."""

    action: Action
    note: Optional[str] = None
    key: Optional[str] = None


def untouched(units: Sequence[Checkpoint]) -> bool:
    """No worker has started on any of these units: a plan may still move them."""
    return all(
        cp.status in (UnitStatus.PENDING, UnitStatus.WAITING, UnitStatus.SKIPPED)
        and cp.last_processed_offset == NOTHING_DONE
        and cp.files_done == 0
        for cp in units
    )


@attrs.define
class _Tally:
    """What a plan did, added up over its groups of batches."""

    found: int = 0
    planned: int = 0
    new: int = 0
    promoted: int = 0
    skipped: Counter[str] = attrs.field(factory=Counter)
    replays: dict[str, str] = attrs.field(factory=dict)
    """Predecessors, unknown when their replay was planned, to the replay."""

    def add(self, other: _Tally) -> None:
        self.found += other.found
        self.planned += other.planned
        self.new += other.new
        self.promoted += other.promoted
        self.skipped.update(other.skipped)
        self.replays.update(other.replays)


class Planner:
    """Registers the units of a window; see the module docstring.

    The window is listed in slices on ``threads`` threads, and its batches are
    decided and registered in groups of at most ``group_size`` as they come
    (:mod:`._plan_slices`): memory holds a group per thread, and the store is
    asked only for the units of the batches listed, of their replay predecessors
    and of the dataset's Waiting batches.
    """

    def __init__(
        self,
        source: AepSource,
        store: CheckpointStore,
        units_of: Callable[[Batch], list[WorkUnit]],
        *,
        copy_replays: bool = False,
        threads: int = PLAN_THREADS,
        group_size: int = GROUP_SIZE,
    ) -> None:
        self.source = source
        self.store = store
        self.units_of = units_of
        self.copy_replays = copy_replays
        self.threads = threads
        self.group_size = group_size

    def plan(self, dataset_id: str, window: TimeWindow) -> PlanResult:
        """List, decide and register; raise the dataset's watermark to the end
        once the whole window is registered."""
        waiting = group_by_batch(self.store.list(dataset_id, UnitStatus.WAITING))
        total = _Tally()
        lock = threading.Lock()

        def handle(batches: list[Batch]) -> None:
            tally = self._plan_group(dataset_id, batches)
            tally.found = len(batches)
            with lock:
                total.add(tally)
                for batch in batches:  # looked at with the window
                    waiting.pop(batch.batch_id, None)

        SliceLister(
            lambda piece: self.source.list_batches(dataset_id, piece.window),
            handle,
            threads=self.threads,
            group_size=self.group_size,
        ).run(window.start_ms, window.end_ms)
        rechecked = self._recheck(dataset_id, waiting)
        for start in range(0, len(rechecked), self.group_size):
            group = rechecked[start : start + self.group_size]
            total.add(self._plan_group(dataset_id, group))
        if total.replays:
            self._supersede(
                total.replays, self.store.get_many(dataset_id, total.replays)
            )
        still_waiting = self.store.list(dataset_id, UnitStatus.WAITING)
        self._raise_watermark(dataset_id, window)
        result = PlanResult(
            dataset_id=dataset_id,
            window=window,
            batches_found=total.found,
            units_planned=total.planned,
            units_new=total.new,
            units_promoted=total.promoted,
            batches_waiting=len({cp.unit.batch_id for cp in still_waiting}),
            skipped=dict(total.skipped),
        )
        logger.info("%s", result)
        return result

    def _plan_group(self, dataset_id: str, batches: Sequence[Batch]) -> _Tally:
        """Decide and register a group of batches, reading only their units and
        those of their replay predecessors."""
        wanted = {b.batch_id for b in batches}.union(*(b.predecessors for b in batches))
        known = self.store.get_many(dataset_id, wanted)
        tally = _Tally()
        replays: dict[str, str] = {}  # predecessor -> replay being copied
        fresh: dict[tuple[UnitStatus, Optional[str]], list[WorkUnit]] = defaultdict(
            list
        )  # new units by status and note, registered together at the end
        for batch in batches:
            units = known.get(batch.batch_id, [])
            decision = self.decide(batch, known)
            if decision.key is not None:
                tally.skipped[decision.key] += 1
            if decision.action is Action.KEEP:
                tally.planned += len(units)
            if decision.action in (Action.KEEP, Action.IGNORE):
                continue
            status = _STATUS_OF[decision.action]
            if units:  # a batch keeps the unit layout it was first registered with
                if status is UnitStatus.PENDING and all(
                    cp.status is UnitStatus.WAITING for cp in units
                ):
                    tally.promoted += len(units)
                self._move(units, status, decision.note)
                count = len(units)
            else:
                new_units = (
                    self.units_of(batch)
                    if status is UnitStatus.PENDING
                    else [_whole(batch)]
                )
                fresh[status, decision.note] += new_units
                count = len(new_units)
            if status is UnitStatus.PENDING:
                tally.planned += count
                for predecessor in batch.predecessors:
                    replays[predecessor] = batch.batch_id
        for (status, note), group in fresh.items():
            registered = self.store.register(group, status=status, reason=note)
            # New Pending units; new Waiting and Skipped ones count elsewhere.
            tally.new += registered if status is UnitStatus.PENDING else 0
        self._supersede(replays, known)
        # Predecessors not registered before this group may be by now, in it or
        # in a group listed meanwhile: the plan looks at them once more at the end.
        tally.replays = {p: r for p, r in replays.items() if p not in known}
        return tally

    def decide(self, batch: Batch, known: Known) -> Decision:
        """What to do with ``batch``, given the known units of it and of its
        replay predecessors."""
        units = known.get(batch.batch_id, [])
        if units and not untouched(units):
            return Decision(Action.KEEP)
        if batch.status in PENDING_BATCH_STATUSES:
            return Decision(Action.WAIT, f"AEP status '{batch.status}'")
        if batch.status not in EXPORTABLE_BATCH_STATUSES:
            if units:  # was Waiting or Pending: record why it will not be copied
                return Decision(
                    Action.SKIP, f"AEP status '{batch.status}'", batch.status
                )
            return Decision(Action.IGNORE, key=batch.status)
        if batch.successors:
            note = f"superseded by {', '.join(batch.successors)} (acp_successor)"
            return Decision(Action.SKIP, note, SUPERSEDED)
        if batch.predecessors and not self.copy_replays:
            copied = [p for p in batch.predecessors if _copied(known.get(p, []))]
            if copied:
                rest = [p for p in batch.predecessors if p not in copied]
                note = f"replays batches already copied: {', '.join(copied)}" + (
                    f"; not copied: {', '.join(rest)}" if rest else ""
                )
                if rest:
                    logger.warning(
                        "batch %s: %s; their data is only in this skipped replay",
                        batch.batch_id,
                        note,
                    )
                return Decision(Action.SKIP, note, REPLAY)
        return Decision(Action.COPY)

    def _recheck(
        self, dataset_id: str, waiting: dict[str, list[Checkpoint]]
    ) -> list[Batch]:
        """Current state of Waiting batches outside the window."""
        found = []
        for batch_id, units in sorted(waiting.items()):
            created = units[0].unit.batch_created_ms
            batch = self.source.get_batch(dataset_id, batch_id, created_ms=created)
            if batch is None:
                self._move(units, UnitStatus.SKIPPED, "gone from the Catalog")
            else:
                found.append(batch)
        return found

    def _move(
        self, units: Sequence[Checkpoint], status: UnitStatus, note: Optional[str]
    ) -> None:
        """Settle untouched units; Pending ones keep the error of their last try."""
        for cp in units:
            if status is UnitStatus.PENDING and cp.status is UnitStatus.PENDING:
                continue
            unchanged = (cp.status, cp.error) == (status, note)
            if not unchanged and not self.store.settle(cp, status, note):
                logger.info("unit %s changed meanwhile; left as is", cp.unit_id)

    def _supersede(self, replays: Mapping[str, str], known: Known) -> None:
        """A replay being copied replaces its untouched predecessors (``replays``
        maps each predecessor to its replay); one Skipped already keeps its note."""
        for predecessor, replay in replays.items():
            units = known.get(predecessor, [])
            if units and untouched(units):
                self._move(
                    [cp for cp in units if cp.status is not UnitStatus.SKIPPED],
                    UnitStatus.SKIPPED,
                    f"superseded by replay {replay}",
                )

    def _raise_watermark(self, dataset_id: str, window: TimeWindow) -> None:
        try:
            self.store.raise_watermark(dataset_id, window.end_ms)
        except NotImplementedError:
            logger.debug("%r keeps no watermarks", self.store)


_STATUS_OF = {
    Action.COPY: UnitStatus.PENDING,
    Action.WAIT: UnitStatus.WAITING,
    Action.SKIP: UnitStatus.SKIPPED,
}


def _whole(batch: Batch) -> WorkUnit:
    return WorkUnit(
        dataset_id=batch.dataset_id,
        batch_id=batch.batch_id,
        batch_created_ms=batch.created_ms,
    )


def _copied(units: Sequence[Checkpoint]) -> bool:
    """Some of the batch is (or is being) copied."""
    return bool(units) and not untouched(units)
