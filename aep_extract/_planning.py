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
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Callable, Optional

import attrs

from .checkpoints.base import CheckpointStore
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


class Planner:
    """Registers the units of a window; see the module docstring."""

    def __init__(
        self,
        source: AepSource,
        store: CheckpointStore,
        units_of: Callable[[Batch], list[WorkUnit]],
        *,
        copy_replays: bool = False,
    ) -> None:
        self.source = source
        self.store = store
        self.units_of = units_of
        self.copy_replays = copy_replays

    def plan(self, dataset_id: str, window: TimeWindow) -> PlanResult:
        """List, decide and register; raise the dataset's watermark to the end."""
        listed = list(self.source.list_batches(dataset_id, window))
        known: dict[str, list[Checkpoint]] = defaultdict(list)
        for cp in self.store.list(dataset_id):
            known[cp.unit.batch_id].append(cp)
        batches = listed + self._recheck(
            dataset_id, known, {b.batch_id for b in listed}
        )
        skipped: Counter[str] = Counter()
        fresh: dict[tuple[UnitStatus, Optional[str]], list[WorkUnit]] = defaultdict(
            list
        )  # new units by status and note, registered together at the end
        planned = promoted = 0
        for batch in batches:
            units = known.get(batch.batch_id, [])
            decision = self.decide(batch, known)
            if decision.key is not None:
                skipped[decision.key] += 1
            if decision.action is Action.KEEP:
                planned += len(units)
            if decision.action in (Action.KEEP, Action.IGNORE):
                continue
            status = _STATUS_OF[decision.action]
            if units:  # a batch keeps the unit layout it was first registered with
                if status is UnitStatus.PENDING and all(
                    cp.status is UnitStatus.WAITING for cp in units
                ):
                    promoted += len(units)
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
                planned += count
                self._supersede(batch, known)
        new = 0  # new Pending units; new Waiting and Skipped ones count elsewhere
        for (status, note), group in fresh.items():
            registered = self.store.register(group, status=status, reason=note)
            new += registered if status is UnitStatus.PENDING else 0
        waiting = {
            cp.unit.batch_id for cp in self.store.list(dataset_id, UnitStatus.WAITING)
        }
        self._raise_watermark(dataset_id, window)
        result = PlanResult(
            dataset_id=dataset_id,
            window=window,
            batches_found=len(listed),
            units_planned=planned,
            units_new=new,
            units_promoted=promoted,
            batches_waiting=len(waiting),
            skipped=dict(skipped),
        )
        logger.info("%s", result)
        return result

    def decide(self, batch: Batch, known: dict[str, list[Checkpoint]]) -> Decision:
        """What to do with ``batch``, given every known unit of its dataset."""
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
        self, dataset_id: str, known: dict[str, list[Checkpoint]], listed: set[str]
    ) -> list[Batch]:
        """Current state of Waiting batches outside the listing."""
        found = []
        for batch_id, units in sorted(known.items()):
            if batch_id in listed or not any(
                cp.status is UnitStatus.WAITING for cp in units
            ):
                continue
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

    def _supersede(self, batch: Batch, known: dict[str, list[Checkpoint]]) -> None:
        """A replay being copied replaces its untouched predecessors."""
        for predecessor in batch.predecessors:
            units = known.get(predecessor, [])
            if units and untouched(units):
                self._move(
                    units, UnitStatus.SKIPPED, f"superseded by replay {batch.batch_id}"
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
