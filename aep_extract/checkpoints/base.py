"""The CheckpointStore interface: durable, fenced progress of every work unit.

A store implements four primitives (:meth:`_insert`, :meth:`_load`, :meth:`_replace`,
:meth:`_scan`); the base class builds the lease protocol of the work model on them:
idempotent registration, claim with owner and expiry, renewal, fenced advance, complete,
fail and release. Optional primitives back the rest: :meth:`_delete` backs
:meth:`forget`; :meth:`_load_watermark` and :meth:`_save_watermark` back
:meth:`watermark`, which incremental runs (``run --since-last``) start from;
:meth:`_load_destination` and :meth:`_save_destination` back
:meth:`bind_destination`, which keeps a dataset's units to one sink.
Every write after a claim is a compare-and-swap on
:attr:`Checkpoint.version`, so a worker whose lease was taken over can no longer touch
the unit: its next write raises :class:`~aep_extract.errors.CheckpointConflict`.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, Callable, Optional, TypeVar

import attrs

from .._closeable import Closeable
from .._liveness import provably_dead
from ..errors import (
    CheckpointConflict,
    CheckpointError,
    ConfigError,
    DestinationMismatch,
)
from ..models import (
    WHOLE_BATCH,
    Checkpoint,
    Lease,
    TimeWindow,
    UnitStatus,
    WorkUnit,
)
from ..registry import FromUrl

logger = logging.getLogger(__name__)

_CLAIM_CANDIDATES = 16
"""How many claimable units a claim picks from at random, so workers spread out."""

MAX_ERROR_LENGTH = 2000
"""Recorded error text is cut to this many characters."""


_Store = TypeVar("_Store", bound="CheckpointStore")


class CheckpointStore(Closeable, FromUrl, abc.ABC):
    """Records the state of every work unit so a run resumes where the last stopped.

    Subclasses implement the four primitives; everything else is built on them. The
    clock (epoch seconds) can be replaced for tests by setting :attr:`clock`. A store
    registered in :mod:`aep_extract.registry` is opened by URL
    (:func:`~aep_extract.open_store`) with :meth:`from_url`.
    """

    @classmethod
    def from_url(
        cls: type[_Store], url: str, *, read_only: bool = False, **options: Any
    ) -> _Store:
        """Build the store a URL names; by default ``cls(url, **options)``.

        Args:
            url: the URL, its scheme one this class is registered for.
            read_only: open an existing store to read it, creating nothing (the
                default refuses: a store that can, overrides this method).
            **options: the constructor's keyword arguments.

        Raises:
            ConfigError: a malformed URL, invalid options, or ``read_only`` for a
                store that cannot open read-only.
        """
        if read_only:
            raise ConfigError(f"{cls.__name__} cannot be opened read-only")
        return super().from_url(url, **options)

    clock: Callable[[], float] = staticmethod(time.time)

    owner_is_dead: Callable[[str], bool] = staticmethod(provably_dead)
    """Whether a lease's owner is proven dead, so that :meth:`claim` takes its unit
    over before the lease expires: only a process of this host that has ended,
    unless another test is installed here (as the store contract does)."""

    consistent_listing: bool = True
    """Whether :meth:`_scan` sees every write at once. A store listing through an
    eventually consistent index sets it False; runs then look twice before they
    conclude that no unit is left."""

    # -- primitives ---------------------------------------------------------------

    @abc.abstractmethod
    def _insert(self, checkpoints: Sequence[Checkpoint]) -> int:
        """Store the checkpoints whose unit is absent; never touch existing ones.

        Returns:
            How many were inserted.
        """

    @abc.abstractmethod
    def _load(self, batch_id: str, offset_range: str) -> Optional[Checkpoint]:
        """The stored checkpoint of one unit, or None."""

    @abc.abstractmethod
    def _replace(self, checkpoint: Checkpoint, expected_version: int) -> None:
        """Overwrite a unit's checkpoint if its stored version is ``expected_version``.

        Raises:
            CheckpointConflict: the stored version differs or the unit is gone.
        """

    @abc.abstractmethod
    def _scan(
        self, dataset_id: str, statuses: Optional[Collection[UnitStatus]] = None
    ) -> Iterator[Checkpoint]:
        """Every checkpoint of a dataset, optionally only those in ``statuses``."""

    def _delete(self, batch_id: str, offset_range: str) -> None:
        """Remove one unit's checkpoint; a unit already absent is not an error.

        Optional primitive: only :meth:`forget` needs it.

        Raises:
            NotImplementedError: the store cannot delete (the default).
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot delete units: implement "
            "_delete(batch_id, offset_range) to support forget() and `reset`"
        )

    def _load_watermark(self, dataset_id: str) -> Optional[int]:
        """The stored watermark of a dataset (epoch ms), or None.

        Optional primitive, with :meth:`_save_watermark`: only :meth:`watermark`
        and :meth:`raise_watermark` need them.

        Raises:
            NotImplementedError: the store keeps no watermarks (the default).
        """
        raise NotImplementedError(
            f"{type(self).__name__} keeps no watermarks: implement "
            "_load_watermark and _save_watermark to support --since-last"
        )

    def _save_watermark(self, dataset_id: str, end_ms: Optional[int]) -> None:
        """Store a dataset's watermark (epoch ms); None removes it.

        Raises:
            NotImplementedError: the store keeps no watermarks (the default).
        """
        raise NotImplementedError(
            f"{type(self).__name__} keeps no watermarks: implement "
            "_load_watermark and _save_watermark to support --since-last"
        )

    def _load_destination(self, dataset_id: str) -> Optional[str]:
        """The destination recorded for a dataset, or None.

        Optional primitive, with :meth:`_save_destination`: only
        :meth:`bind_destination` and :meth:`destination` need them.

        Raises:
            NotImplementedError: the store records no destinations (the default).
        """
        raise NotImplementedError(
            f"{type(self).__name__} records no destinations: implement "
            "_load_destination and _save_destination"
        )

    def _save_destination(self, dataset_id: str, destination: Optional[str]) -> None:
        """Record a dataset's destination; None removes it.

        Raises:
            NotImplementedError: the store records no destinations (the default).
        """
        raise NotImplementedError(
            f"{type(self).__name__} records no destinations: implement "
            "_load_destination and _save_destination"
        )

    def _bind_destination(self, dataset_id: str, destination: str) -> str:
        """Record ``destination`` unless the dataset has one; return the one
        recorded now.

        Built on the two primitives, so two first bindings racing may both think
        they won; a store that can read and write at once overrides it (the
        built-in stores do).
        """
        recorded = self._load_destination(dataset_id)
        if recorded is None:
            self._save_destination(dataset_id, destination)
            return destination
        return recorded

    # -- the work model -----------------------------------------------------------

    def register(
        self,
        units: Iterable[WorkUnit],
        *,
        status: UnitStatus = UnitStatus.PENDING,
        reason: Optional[str] = None,
    ) -> int:
        """Register units (as Pending, or as Waiting or Skipped with a ``reason``);
        units already known keep their state and progress.

        Returns:
            How many units were new.

        Raises:
            ConfigError: ``status`` is InProgress, Completed or Failed.
        """
        if status not in (UnitStatus.PENDING, UnitStatus.WAITING, UnitStatus.SKIPPED):
            raise ConfigError(f"units cannot be registered as {status}")
        now = self.clock()
        fresh = [
            Checkpoint(
                unit=u, status=status, error=reason, created_at=now, updated_at=now
            )
            for u in units
        ]
        return self._insert(fresh) if fresh else 0

    def settle(
        self, current: Checkpoint, status: UnitStatus, reason: Optional[str] = None
    ) -> bool:
        """Move a unit no worker holds (Pending, Waiting or Skipped) to Pending,
        Waiting or Skipped, recording ``reason`` as its note.

        Returns:
            False if the unit changed since ``current`` was read (nothing written).

        Raises:
            CheckpointError: ``current`` or ``status`` is InProgress, Completed or
                Failed: those change only through a lease or :meth:`retry_failed`.
        """
        movable = (UnitStatus.PENDING, UnitStatus.WAITING, UnitStatus.SKIPPED)
        if current.status not in movable or status not in movable:
            raise CheckpointError(
                f"unit {current.unit_id}: cannot move from {current.status} to {status}"
            )
        try:
            self._replace(
                attrs.evolve(
                    current,
                    status=status,
                    error=None if reason is None else reason[:MAX_ERROR_LENGTH],
                    updated_at=self.clock(),
                    version=current.version + 1,
                ),
                current.version,
            )
        except CheckpointConflict:
            return False
        return True

    def watermark(self, dataset_id: str) -> Optional[int]:
        """The end (epoch ms) of the latest window planned for the dataset, or None."""
        return self._load_watermark(dataset_id)

    def raise_watermark(self, dataset_id: str, end_ms: int) -> None:
        """Record that the dataset was planned up to ``end_ms``; a watermark
        never moves back. (Two planners racing may lose the later end: the next
        incremental run then lists that stretch again, which registers nothing
        twice.)"""
        current = self._load_watermark(dataset_id)
        if current is None or end_ms > current:
            self._save_watermark(dataset_id, end_ms)

    def bind_destination(self, dataset_id: str, destination: str) -> None:
        """Bind a dataset to the destination (sink and layout) its units are
        copied to: the first binding records it; binding the same one again
        changes nothing. A store that records no destinations accepts any.

        Raises:
            ConfigError: ``destination`` is empty.
            DestinationMismatch: another destination is recorded for the dataset;
                with this store its units count as copied there.
        """
        if not destination:
            raise ConfigError("destination must not be empty")
        try:
            recorded = self._bind_destination(dataset_id, destination)
        except NotImplementedError:
            logger.debug("%r records no destinations; %s not bound", self, dataset_id)
            return
        if recorded != destination:
            raise DestinationMismatch(dataset_id, recorded, destination)

    def destination(self, dataset_id: str) -> Optional[str]:
        """The destination the dataset is bound to, or None (also from a store
        that records no destinations)."""
        try:
            return self._load_destination(dataset_id)
        except NotImplementedError:
            return None

    def claim(
        self,
        dataset_id: str,
        owner: str,
        lease_seconds: float,
        *,
        max_crashes: Optional[int] = None,
    ) -> Optional[Lease]:
        """Take a Pending unit, or an InProgress one whose lease expired or whose
        owner is proven dead (:attr:`owner_is_dead`).

        The unit becomes InProgress, owned by ``owner`` until ``now + lease_seconds``.
        Taking over a lease counts a crash of the unit (its worker died or hung). A
        unit whose crashes would reach ``max_crashes`` is not taken but moved to
        Failed, so a unit that kills its workers cannot do so forever; the claim goes
        on with the next unit. Failed attempts are counted by :meth:`fail`, not here.

        Returns:
            The lease, or None when nothing is claimable.
        """
        now = self.clock()
        dead: dict[str, bool] = {}
        # Pending units first, taken-over leases after; the scan is consumed lazily
        # so a claim reads a page or two, not the whole dataset.
        for status in (UnitStatus.PENDING, UnitStatus.IN_PROGRESS):
            claimable = (
                cp
                for cp in self._candidates(dataset_id, status)
                if self._takeable(cp, now, dead)
            )
            while True:
                batch = list(itertools.islice(claimable, _CLAIM_CANDIDATES))
                if not batch:
                    break
                random.shuffle(batch)  # workers racing for the same page spread out
                for current in batch:
                    lease = self._try_claim(
                        current, owner, now + lease_seconds, max_crashes
                    )
                    if lease is not None:
                        return lease
        return None

    def _takeable(self, current: Checkpoint, now: float, dead: dict[str, bool]) -> bool:
        """Whether a claim at ``now`` may take ``current``: Pending, or InProgress
        under a lease that expired or whose owner is proven dead. ``dead`` keeps
        the verdicts of one claim, so each owner is looked at once."""
        if current.claimable(now):
            return True
        owner = current.owner
        if current.status is not UnitStatus.IN_PROGRESS or owner is None:
            return False
        if owner not in dead:
            dead[owner] = self.owner_is_dead(owner)
        return dead[owner]

    def _candidates(self, dataset_id: str, status: UnitStatus) -> Iterator[Checkpoint]:
        """Units of ``status`` a claim tries, lazily: by default :meth:`_scan`. A
        store whose listing costs a request per page may serve claims from a
        page it read before (every claim is a compare-and-swap, so a stale
        candidate only loses), as the DynamoDB store does."""
        return self._scan(dataset_id, (status,))

    def _try_claim(
        self,
        current: Checkpoint,
        owner: str,
        expires_at: float,
        max_crashes: Optional[int],
    ) -> Optional[Lease]:
        """Take ``current`` if it is unchanged (a compare-and-swap on its version:
        of claimers racing for it, one wins)."""
        crashes = current.crashes
        if current.status is UnitStatus.IN_PROGRESS:
            crashes += 1
            if max_crashes is not None and crashes >= max_crashes:
                self._fail_crashed(current, crashes)
                return None
        now = self.clock()
        taken = attrs.evolve(
            current,
            status=UnitStatus.IN_PROGRESS,
            owner=owner,
            lease_expires_at=expires_at,
            crashes=crashes,
            updated_at=now,
            version=current.version + 1,
        )
        try:
            self._replace(taken, current.version)
        except CheckpointConflict:
            return None  # another worker was faster
        if current.status is UnitStatus.IN_PROGRESS:
            expired = (current.lease_expires_at or 0.0) <= now
            logger.warning(
                "unit %s: took over the lease of %s, %s (crash %d)",
                current.unit_id,
                current.owner,
                "which expired" if expired else "whose process has ended",
                crashes,
            )
        return Lease(checkpoint=taken, owner=owner)

    def _fail_crashed(self, current: Checkpoint, crashes: int) -> None:
        """Move a unit whose lease expired once too often to Failed."""
        error = (
            f"lease of {current.owner} expired {crashes} times: its workers died "
            "or hung while copying it"
        )
        try:
            self._replace(
                attrs.evolve(
                    current,
                    status=UnitStatus.FAILED,
                    owner=None,
                    lease_expires_at=None,
                    crashes=crashes,
                    error=error,
                    updated_at=self.clock(),
                    version=current.version + 1,
                ),
                current.version,
            )
        except CheckpointConflict:
            return  # another worker moved it first
        logger.error("unit %s: %s; now Failed", current.unit_id, error)

    def renew(self, lease: Lease, lease_seconds: float) -> Lease:
        """Extend a lease. Raises CheckpointConflict if it was lost."""
        now = self.clock()
        return self._write(lease, lease_expires_at=now + lease_seconds)

    def advance(
        self,
        lease: Lease,
        offset: int,
        *,
        files: int = 0,
        size: int = 0,
        lease_seconds: Optional[float] = None,
    ) -> Lease:
        """Move LastProcessedOffset forward to ``offset`` (never backward).

        ``files`` and ``size`` are added to the unit's done counters. With
        ``lease_seconds`` the same write also renews the lease.
        """
        current = lease.checkpoint
        if offset <= current.last_processed_offset:
            return lease
        changes: dict[str, object] = {
            "last_processed_offset": offset,
            "files_done": current.files_done + files,
            "bytes_done": current.bytes_done + size,
        }
        if lease_seconds is not None:
            changes["lease_expires_at"] = self.clock() + lease_seconds
        return self._write(lease, **changes)

    def save_progress(
        self, lease: Lease, progress: Optional[str], lease_seconds: float
    ) -> Lease:
        """Record the progress of the unit's files in progress (the engine's opaque
        ``progress`` of the :class:`~aep_extract.Checkpoint`; None clears it) and
        renew the lease, in one fenced write. :meth:`advance`, :meth:`fail`,
        :meth:`release` and a takeover keep it; :meth:`complete` clears it.

        Raises:
            CheckpointConflict: the lease was lost.
        """
        return self._write(
            lease, progress=progress, lease_expires_at=self.clock() + lease_seconds
        )

    def complete(self, lease: Lease) -> Checkpoint:
        """Mark the unit Completed and drop the lease (and its progress record)."""
        return self._write(
            lease,
            status=UnitStatus.COMPLETED,
            owner=None,
            lease_expires_at=None,
            error=None,
            progress=None,
        ).checkpoint

    def fail(self, lease: Lease, error: str, *, max_attempts: int) -> Checkpoint:
        """Record a failed attempt and its error. The attempt count goes up by one;
        the unit goes back to Pending, or to Failed once the count reaches
        ``max_attempts``. Progress is kept either way."""
        attempts = lease.checkpoint.attempts + 1
        exhausted = attempts >= max_attempts
        return self._write(
            lease,
            status=UnitStatus.FAILED if exhausted else UnitStatus.PENDING,
            owner=None,
            lease_expires_at=None,
            attempts=attempts,
            error=error[:MAX_ERROR_LENGTH],
        ).checkpoint

    def release(self, lease: Lease) -> Checkpoint:
        """Give a unit back as Pending, counting neither an attempt nor a crash
        (a graceful stop)."""
        return self._write(
            lease, status=UnitStatus.PENDING, owner=None, lease_expires_at=None
        ).checkpoint

    def retry_failed(
        self, dataset_id: str, unit_ids: Optional[Collection[str]] = None
    ) -> int:
        """Put Failed units (all, or those in ``unit_ids``) back to Pending.

        Their progress is kept and their counts of attempts and crashes reset.
        Returns how many moved.
        """
        moved = 0
        for current in self._scan(dataset_id, (UnitStatus.FAILED,)):
            if unit_ids is not None and current.unit_id not in unit_ids:
                continue
            try:
                self._replace(
                    attrs.evolve(
                        current,
                        status=UnitStatus.PENDING,
                        attempts=0,
                        crashes=0,
                        updated_at=self.clock(),
                        version=current.version + 1,
                    ),
                    current.version,
                )
            except CheckpointConflict:
                continue
            moved += 1
        return moved

    def forget(self, dataset_id: str, window: Optional[TimeWindow] = None) -> int:
        """Delete the units of a dataset, or only those whose batch was created in
        ``window``, so that the next plan registers them afresh. Forgetting the
        whole dataset also forgets its watermark and its destination.

        Objects already in the sink are not touched; a later run finds them there
        and does not copy them again. Do not forget units while a run works on them.

        Returns:
            How many units were deleted.

        Raises:
            NotImplementedError: the store does not implement :meth:`_delete`.
        """
        doomed = [
            cp
            for cp in self._scan(dataset_id)
            if window is None or window.contains_ms(cp.unit.batch_created_ms)
        ]
        for cp in doomed:
            self._delete(cp.unit.batch_id, cp.unit.offset_range)
        if window is None:
            with contextlib.suppress(NotImplementedError):
                self._save_watermark(dataset_id, None)
            with contextlib.suppress(NotImplementedError):
                self._save_destination(dataset_id, None)
        logger.info("forgot %d unit(s) of dataset %s", len(doomed), dataset_id)
        return len(doomed)

    def check(self) -> None:
        """Fail now, rather than in the middle of a run, if the store cannot be
        used (a missing table, a file that cannot be written). The default does
        nothing; the SQLite store tries a write, the DynamoDB store describes its
        table.

        Raises:
            ConfigError: the store cannot be used as configured (its subclass
                :exc:`~aep_extract.errors.MissingResourceError` when the table or
                file does not exist).
        """

    # -- reading ------------------------------------------------------------------

    def get(
        self, batch_id: str, offset_range: str = WHOLE_BATCH
    ) -> Optional[Checkpoint]:
        """The checkpoint of one unit, or None."""
        return self._load(batch_id, offset_range)

    def get_many(
        self, dataset_id: str, batch_ids: Iterable[str]
    ) -> dict[str, list[Checkpoint]]:
        """The units of each of ``batch_ids`` that has some in the dataset.

        What a plan reads: the units of the batches it lists and of their replay
        predecessors, whatever the dataset's history. The default scans the
        dataset once per call; the built-in stores look the batches up by key.

        Returns:
            Batch id to its units ordered by unit id; a batch without units in
            the dataset is absent.
        """
        wanted = set(batch_ids)
        return group_by_batch(
            cp for cp in self._scan(dataset_id) if cp.unit.batch_id in wanted
        )

    def list(
        self, dataset_id: str, status: Optional[UnitStatus] = None
    ) -> list[Checkpoint]:
        """Every unit of a dataset (optionally of one status), ordered by unit id."""
        statuses = None if status is None else (status,)
        return sorted(self._scan(dataset_id, statuses), key=lambda cp: cp.unit_id)

    def summary(self, dataset_id: str) -> dict[UnitStatus, int]:
        """How many units of a dataset are in each status (every status present)."""
        counts = Counter(cp.status for cp in self._scan(dataset_id))
        return {status: counts.get(status, 0) for status in UnitStatus}

    # -- helpers ------------------------------------------------------------------

    def _write(self, lease: Lease, **changes: object) -> Lease:
        """A fenced write: applies ``changes`` only if the lease is still current."""
        current = lease.checkpoint
        if current.owner != lease.owner or current.status is not UnitStatus.IN_PROGRESS:
            raise CheckpointError(f"unit {current.unit_id}: lease is not active")
        updated = attrs.evolve(
            current,
            updated_at=self.clock(),
            version=current.version + 1,
            **changes,  # type: ignore[arg-type]
        )
        self._replace(updated, current.version)
        return Lease(checkpoint=updated, owner=lease.owner)


def group_by_batch(checkpoints: Iterable[Checkpoint]) -> dict[str, list[Checkpoint]]:
    """Checkpoints grouped by batch id, each group ordered by unit id."""
    found: dict[str, list[Checkpoint]] = {}
    for cp in checkpoints:
        found.setdefault(cp.unit.batch_id, []).append(cp)
    for units in found.values():
        units.sort(key=lambda cp: cp.unit_id)
    return found
