"""An in-process checkpoint store: a dict behind a lock, for tests and notebooks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, Callable, Optional

from ..errors import CheckpointConflict
from ..models import Checkpoint, UnitStatus
from ..registry import require_bare
from .base import CheckpointStore, group_by_batch

logger = logging.getLogger(__name__)


class MemoryCheckpointStore(CheckpointStore):
    """Keeps checkpoints in memory; thread-safe, gone when the process ends.

    Checkpoints are frozen values, so the store keeps the objects it is given and
    hands them out as they are: nobody can change them behind its back.

    Args:
        clock: epoch-seconds clock; defaults to :func:`time.time`.
    """

    @classmethod
    def check_url(cls, url: str) -> None:
        """``memory://``, with nothing after it."""
        require_bare("store", url)

    @classmethod
    def from_url(
        cls, url: str, *, read_only: bool = False, **options: Any
    ) -> MemoryCheckpointStore:
        """A new, empty store for ``memory://`` (``read_only`` changes nothing:
        there is nothing to read)."""
        cls.check_url(url)
        return cls(**options)

    def __init__(self, clock: Optional[Callable[[], float]] = None) -> None:
        if clock is not None:
            self.clock = clock
        self._lock = threading.Lock()
        self._units: dict[tuple[str, str], Checkpoint] = {}
        self._ranges: dict[str, set[str]] = {}  # batch id -> its units' ranges
        self._watermarks: dict[str, int] = {}
        self._destinations: dict[str, str] = {}

    def _insert(self, checkpoints: Sequence[Checkpoint]) -> int:
        inserted = 0
        with self._lock:
            for checkpoint in checkpoints:
                key = _key(checkpoint)
                if key not in self._units:
                    self._units[key] = checkpoint
                    self._ranges.setdefault(key[0], set()).add(key[1])
                    inserted += 1
        logger.debug("registered %d of %d unit(s)", inserted, len(checkpoints))
        return inserted

    def _load(self, batch_id: str, offset_range: str) -> Optional[Checkpoint]:
        with self._lock:
            return self._units.get((batch_id, offset_range))

    def _replace(self, checkpoint: Checkpoint, expected_version: int) -> None:
        key = _key(checkpoint)
        with self._lock:
            current = self._units.get(key)
            if current is None or current.version != expected_version:
                raise CheckpointConflict(
                    f"unit {checkpoint.unit_id}: expected version {expected_version}, "
                    f"found {'none' if current is None else current.version}"
                )
            self._units[key] = checkpoint

    def _delete(self, batch_id: str, offset_range: str) -> None:
        with self._lock:
            if self._units.pop((batch_id, offset_range), None) is not None:
                ranges = self._ranges[batch_id]
                ranges.discard(offset_range)
                if not ranges:
                    del self._ranges[batch_id]

    def _scan(
        self, dataset_id: str, statuses: Optional[Collection[UnitStatus]] = None
    ) -> Iterator[Checkpoint]:
        # A snapshot taken under the lock: a generator would hold it between items.
        with self._lock:
            found = [
                cp
                for cp in self._units.values()
                if cp.unit.dataset_id == dataset_id
                and (statuses is None or cp.status in statuses)
            ]
        return iter(found)

    def get_many(
        self, dataset_id: str, batch_ids: Iterable[str]
    ) -> dict[str, list[Checkpoint]]:
        """The units of each of ``batch_ids`` that has some in the dataset (a
        lookup by batch id, whatever the store holds)."""
        with self._lock:
            found = [
                self._units[batch_id, offset_range]
                for batch_id in set(batch_ids)
                for offset_range in self._ranges.get(batch_id, ())
            ]
        return group_by_batch(cp for cp in found if cp.unit.dataset_id == dataset_id)

    def _load_watermark(self, dataset_id: str) -> Optional[int]:
        with self._lock:
            return self._watermarks.get(dataset_id)

    def _save_watermark(self, dataset_id: str, end_ms: Optional[int]) -> None:
        with self._lock:
            if end_ms is None:
                self._watermarks.pop(dataset_id, None)
            else:
                self._watermarks[dataset_id] = end_ms

    def raise_watermark(self, dataset_id: str, end_ms: int) -> None:
        # Read and write under one lock: racing planners cannot lose the later end.
        with self._lock:
            current = self._watermarks.get(dataset_id)
            if current is None or end_ms > current:
                self._watermarks[dataset_id] = end_ms

    def _load_destination(self, dataset_id: str) -> Optional[str]:
        with self._lock:
            return self._destinations.get(dataset_id)

    def _save_destination(self, dataset_id: str, destination: Optional[str]) -> None:
        with self._lock:
            if destination is None:
                self._destinations.pop(dataset_id, None)
            else:
                self._destinations[dataset_id] = destination

    def _bind_destination(self, dataset_id: str, destination: str) -> str:
        # Under one lock: of racing first bindings, exactly one is recorded.
        with self._lock:
            return self._destinations.setdefault(dataset_id, destination)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(units={len(self._units)})"


def _key(checkpoint: Checkpoint) -> tuple[str, str]:
    return (checkpoint.unit.batch_id, checkpoint.unit.offset_range)
