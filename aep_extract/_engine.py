"""The execution loop: claims units, runs file copies on the scheduler, checkpoints.

All store writes happen on the thread that runs the loop; worker threads only read
from the source and write to the sink. That keeps fencing simple (one writer per lease
per process) and makes the checkpoint order deterministic.

An abort (a second SIGTERM, ``stop(abort=True)``) or the deadline ends the run within
moments: the loop cuts the source's requests in flight (:meth:`AepSource.interrupt`),
their tasks give up without retrying (:mod:`._run`), nothing partial is kept and
the leases are given back. An error that no unit can overcome (IMS refuses the
credentials or gives no token) ends the run the same way and is raised: it is not
counted against the units.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar, Union

import attrs

from ._jobs import UnitJob
from ._liveness import WaitNotice
from ._logging import log_context
from ._run import RunScope
from ._tasks import CopyAborted, FileTasks, describe
from .checkpoints.base import CheckpointStore
from .config import ExtractorConfig
from .errors import (
    AepExtractError,
    AuthError,
    CheckpointConflict,
    TokenUnavailable,
    UnsafeKeyError,
)
from .layout import KeyLayout
from .models import FileCopy, FileRef, UnitStatus
from .report import RunReport
from .schedulers.base import Scheduler
from .sinks.base import Sink
from .sources.base import AepSource

logger = logging.getLogger(__name__)

_Result = Union[list[tuple[FileRef, str]], tuple[FileCopy, bool], None]
_RUN_FATAL = (AuthError, TokenUnavailable)
"""Errors that end the run, not a unit: without a token no unit can go on."""
_IDLE_POLL_SECONDS = 5.0
_RECHECK_SECONDS = 1.0
T = TypeVar("T")


@attrs.define
class _Counters:
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    units_completed: int = 0
    failures: list[tuple[str, str]] = attrs.field(factory=list)


class Engine:
    """Runs one ``execute`` call. Not reusable."""

    def __init__(
        self,
        *,
        source: AepSource,
        store: CheckpointStore,
        sink: Sink,
        scheduler: Scheduler,
        config: ExtractorConfig,
        owner: str,
        stop_event: threading.Event,
        scope: RunScope,
        deadline: Optional[float] = None,
    ) -> None:
        self.source = source
        self.scope = scope
        self.hooks = scope.hooks  # never raises: a hook cannot break a run
        self.store = store
        self.sink = sink
        self.scheduler = scheduler
        self.config = config
        self.owner = owner
        self.stop_event = stop_event
        self.abort_event = scope.abort
        self.deadline = deadline
        self.layout = KeyLayout(
            file_template=config.key_template,
            manifest_template=config.manifest_template,
        )
        self.tasks = FileTasks(source, sink, self.layout, scope)
        self.jobs: dict[str, UnitJob] = {}
        self.in_flight: dict[Future[_Result], tuple[UnitJob, str, int]] = {}
        self.counters = _Counters()
        self.may_claim = True
        self.rechecked = False
        self.fatal: Optional[AepExtractError] = None
        """An error that ended the run (raised once its leases are given back)."""
        self.interrupted = False
        self.wait_notice = WaitNotice()

    # -- the loop -----------------------------------------------------------------

    def run(self, dataset_id: str, *, started: Optional[float] = None) -> RunReport:
        """Work until every unit of the dataset is Completed or Failed, or a stop.

        ``started`` (time.monotonic) lets the report's duration cover planning done
        just before; its request counts are the run scope's, planning included.
        """
        started = time.monotonic() if started is None else started
        try:
            while True:
                self._fill(dataset_id)
                if not self.in_flight:
                    if self.jobs:
                        continue  # jobs became ready to finish: loop once more
                    if self._stopping() or not self._await_others(dataset_id):
                        break
                    continue
                done, _ = wait(
                    list(self.in_flight),
                    timeout=self._renew_interval(),
                    return_when=FIRST_COMPLETED,
                )
                for future in done:
                    self._collect(future)
                self._interrupt_if_aborting()
                self._renew_due()
        except BaseException:
            self._abandon()
            raise
        if self.fatal is not None:
            raise self.fatal
        counted = self.scope.counters()
        c = self.counters
        units = self.store.summary(dataset_id)
        if all(status.ok for status, count in units.items() if count):
            self._clean_leftovers(dataset_id)
        return RunReport(
            dataset_id=dataset_id,
            units=units,
            units_completed=c.units_completed,
            files_copied=c.files_copied,
            bytes_copied=c.bytes_copied,
            files_skipped=c.files_skipped,
            duration_seconds=time.monotonic() - started,
            requests=counted["requests"],
            retries=counted["retries"],
            throttled=counted["throttled"],
            failures=tuple(c.failures),
            stopped=self.stop_event.is_set(),
        )

    def _stopping(self) -> bool:
        """A stop was asked for, or the deadline (time.monotonic) has passed."""
        if (
            not self.stop_event.is_set()
            and self.deadline is not None
            and time.monotonic() >= self.deadline
        ):
            logger.warning(
                "deadline reached: abandoning in-flight files, giving leases back"
            )
            self.abort_event.set()
            self.stop_event.set()
        return self.stop_event.is_set()

    def _interrupt_if_aborting(self) -> None:
        """Once per abort, cut the source's requests in flight: a read blocked on a
        slow server would otherwise hold its thread until the request deadline."""
        if self.abort_event.is_set() and not self.interrupted and self.in_flight:
            self.interrupted = True
            cut = self.source.interrupt()
            logger.info("aborting: %d request(s) in flight cut short", cut)

    def _halt(self, exc: AepExtractError) -> None:
        """End the run because of ``exc``: abort what is in flight, raise it later."""
        if self.fatal is None:
            logger.error("stopping the run: %s", describe(exc))
            self.fatal = exc
        self.abort_event.set()
        self.stop_event.set()
        self._interrupt_if_aborting()

    def _fill(self, dataset_id: str) -> None:
        """Submit tasks up to the scheduler's width; claim units when out of tasks."""
        self._settle_jobs()
        capacity = self.scheduler.max_workers
        while len(self.in_flight) < capacity:
            if self._submit_next_task():
                continue
            if self._stopping() or not self.may_claim:
                return
            if len(self.jobs) >= capacity:
                return
            lease = self.store.claim(
                dataset_id,
                self.owner,
                self.config.lease_seconds,
                max_crashes=self.config.unit_crashes,
            )
            if lease is None:
                self.may_claim = False
                return
            attempt = lease.checkpoint.attempts + 1  # the one now being made
            done = lease.checkpoint.last_processed_offset
            logger.info(
                "unit %s: claimed (attempt %d, %s)",
                lease.unit.unit_id,
                attempt,
                f"resuming after file offset {done}"
                if done >= lease.unit.first_offset
                else "from its first file",
                extra=log_context(lease.unit),
            )
            self.hooks.unit_started(unit=lease.unit, attempt=attempt)
            job = UnitJob(lease=lease)
            self.jobs[job.unit_id] = job
            self._submit(job, "list", -1, self.tasks.list_files, lease.unit)

    def _submit_next_task(self) -> bool:
        for job in self.jobs.values():
            if job.active and job.todo and not self._stopping():
                offset = job.todo.popleft()
                recorded = offset <= job.lease.checkpoint.last_processed_offset
                self._submit(
                    job,
                    "file",
                    offset,
                    self.tasks.fetch,
                    job.lease.unit,
                    offset,
                    job.files[offset],
                    job.keys[offset],
                    recorded,
                )
                return True
        return False

    def _submit(
        self,
        job: UnitJob,
        kind: str,
        offset: int,
        fn: Callable[..., _Result],
        *args: Any,
    ) -> None:
        job.in_flight += 1
        self.in_flight[self.scheduler.submit(fn, *args)] = (job, kind, offset)

    def _await_others(self, dataset_id: str) -> bool:
        """Wait for units other workers hold; True when one may be claimable now."""
        held = self.store.list(dataset_id, UnitStatus.IN_PROGRESS)
        pending = self.store.list(dataset_id, UnitStatus.PENDING)
        if pending or not held:
            self.wait_notice.done()
        if pending:
            self.may_claim = True
            return True
        if not held:
            if self.rechecked or self.store.consistent_listing:
                return False
            # A store listing through an eventually consistent index (DynamoDB's
            # GSI) may not show units registered a moment ago: look once more.
            self.rechecked = True
            self.stop_event.wait(_RECHECK_SECONDS)
            self.may_claim = True
            return True
        now = self.store.clock()
        soonest = min(cp.lease_expires_at or now for cp in held)
        delay = min(max(soonest - now, 0.0), _IDLE_POLL_SECONDS)
        self.wait_notice.waiting(held, now)
        self.stop_event.wait(delay)
        self.may_claim = True
        return True

    # -- results ------------------------------------------------------------------

    def _collect(self, future: Future[_Result]) -> None:
        job, kind, offset = self.in_flight.pop(future)
        job.in_flight -= 1
        try:
            result = future.result()
        except CopyAborted:
            job.todo.clear()  # the unit is released once nothing is in flight
            return
        except _RUN_FATAL as exc:
            job.todo.clear()
            self._halt(exc)
            return
        except AepExtractError as exc:
            self._note_error(job, exc)
            return
        except Exception as exc:  # a bug or an unmapped error: record, do not crash
            logger.exception("unit %s: unexpected error", job.unit_id, extra=_ctx(job))
            self._note_error(job, exc)
            return
        if not job.active:
            return
        if kind == "list":
            assert isinstance(result, list)
            job.load(result)
            logger.info(
                "unit %s: %d files", job.unit_id, len(job.files), extra=_ctx(job)
            )
            self.hooks.unit_listed(
                unit=job.lease.unit,
                files=len(job.files),
                bytes=sum(f.length for f in job.files.values()),
            )
        elif kind == "manifest":
            self._finish(job)
        else:
            assert isinstance(result, tuple)
            copy, fresh = result
            job.copies[offset] = copy
            self.hooks.file_copied(
                unit=job.lease.unit,
                file=job.files[offset],
                key=copy.key,
                size=copy.size,
                fresh=fresh,
            )
            if fresh:
                job.fresh[offset] = copy.size
                self.counters.files_copied += 1
                self.counters.bytes_copied += copy.size
            else:
                self.counters.files_skipped += 1
            self._advance(job)

    def _note_error(self, job: UnitJob, exc: BaseException) -> None:
        if job.error is None and not job.lost:
            logger.warning("unit %s: %s", job.unit_id, describe(exc), extra=_ctx(job))
            job.error = describe(exc)
            # No retry changes a name from the API: such a unit fails at once.
            job.final = isinstance(exc, UnsafeKeyError)
        job.todo.clear()

    def _advance(self, job: UnitJob) -> None:
        old = job.lease.checkpoint.last_processed_offset
        new = job.committable()
        if new <= old:
            return
        files, size = job.fresh_between(old, new)
        lease = self._fenced(
            job,
            self.store.advance,
            job.lease,
            new,
            files=files,
            size=size,
            lease_seconds=self.config.lease_seconds,
        )
        if lease is not None:
            job.lease = lease

    def _settle_jobs(self) -> None:
        """Finish, fail or drop jobs that have nothing in flight."""
        for job in list(self.jobs.values()):
            if job.in_flight:
                continue
            if job.lost:
                del self.jobs[job.unit_id]
            elif job.error is not None:
                self._fail(job)
            elif job.manifest_started:
                continue
            elif job.finished_copying:
                job.manifest_started = True
                self._submit(
                    job,
                    "manifest",
                    -1,
                    self.tasks.write_manifest,
                    job.lease.unit,
                    [job.copies[offset] for offset in job.files],
                )
            elif self._stopping():
                self._release(job)

    def _finish(self, job: UnitJob) -> None:
        if self._fenced(job, self.store.complete, job.lease) is not None:
            self.counters.units_completed += 1
            logger.info(
                "unit %s: completed, %d files",
                job.unit_id,
                len(job.files),
                extra=_ctx(job),
            )
            self.hooks.unit_finished(
                unit=job.lease.unit,
                files=len(job.fresh),
                bytes=sum(job.fresh.values()),
            )
        self.jobs.pop(job.unit_id, None)

    def _fail(self, job: UnitJob) -> None:
        error = job.error or "unknown error"
        self.counters.failures.append((job.unit_id, error))
        try:
            attempts = 1 if job.final else self.config.unit_attempts
            state = self.store.fail(job.lease, error, max_attempts=attempts)
        except CheckpointConflict:
            logger.warning(
                "unit %s: lease lost before recording failure",
                job.unit_id,
                extra=_ctx(job),
            )
            self.hooks.unit_failed(unit=job.lease.unit, error=error, final=False)
        else:
            if state.status is UnitStatus.PENDING:
                self.may_claim = True  # it will be retried, by us or another worker
            logger.log(
                logging.ERROR if state.status is UnitStatus.FAILED else logging.WARNING,
                "unit %s: attempt %d failed (%s), now %s",
                job.unit_id,
                state.attempts,
                error,
                state.status.value,
                extra=_ctx(job),
            )
            self.hooks.unit_failed(
                unit=job.lease.unit,
                error=error,
                final=state.status is UnitStatus.FAILED,
            )
        del self.jobs[job.unit_id]

    def _release(self, job: UnitJob) -> None:
        with contextlib.suppress(CheckpointConflict):  # lost: nothing of ours to give
            self.store.release(job.lease)
        logger.info(
            "unit %s: released at offset %d",
            job.unit_id,
            job.lease.checkpoint.last_processed_offset,
            extra=_ctx(job),
        )
        del self.jobs[job.unit_id]

    def _abandon(self) -> None:
        """On an unexpected exit, cancel queued tasks and give leases back."""
        for future in self.in_flight:
            future.cancel()
        for job in list(self.jobs.values()):
            if job.active:
                try:
                    self.store.release(job.lease)
                except AepExtractError:
                    logger.warning("unit %s: could not release lease", job.unit_id)

    def _clean_leftovers(self, dataset_id: str) -> None:
        """Remove partial writes of killed workers under the dataset's prefix.

        Safe only now: every unit of the dataset is Completed, so no live worker
        writes there (a late write of a lost lease would repeat the same bytes).
        """
        prefix = self.layout.dataset_prefix(dataset_id)
        if prefix is None:
            return
        try:
            removed = self.sink.cleanup_incomplete(prefix, older_than=timedelta(0))
        except AepExtractError as exc:  # tidying up must not fail a finished run
            logger.warning("could not clean up under %s: %s", prefix, describe(exc))
            return
        if removed:
            logger.info("removed %d incomplete write(s) under %s", removed, prefix)

    def _renew_interval(self) -> float:
        return max(0.05, min(self.config.lease_seconds / 6, _IDLE_POLL_SECONDS))

    def _renew_due(self) -> None:
        threshold = self.store.clock() + self.config.lease_seconds * 2 / 3
        for job in list(self.jobs.values()):
            if job.active and job.lease.expires_at < threshold:
                lease = self._fenced(
                    job, self.store.renew, job.lease, self.config.lease_seconds
                )
                if lease is not None:
                    job.lease = lease

    def _fenced(
        self, job: UnitJob, write: Callable[..., T], *args: Any, **kwargs: Any
    ) -> Optional[T]:
        """Apply a fenced write; a lost lease makes this worker let go of the unit."""
        try:
            return write(*args, **kwargs)
        except CheckpointConflict:
            logger.warning(
                "unit %s: lease lost to another worker; letting go",
                job.unit_id,
                extra=_ctx(job),
            )
            job.lost = True
            job.todo.clear()
            return None


def _ctx(job: UnitJob) -> dict[str, Any]:
    """Log context of a job's unit (see :func:`~aep_extract._logging.log_context`)."""
    return log_context(job.lease.unit)
