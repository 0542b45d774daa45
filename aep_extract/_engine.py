"""The execution loop: claims units, runs file copies on the scheduler, checkpoints.

A large file is copied as parts, each a task of its own (a ranged read, a part
written), within the bounds of :class:`~aep_extract.ConcurrencyConfig`; the loop
records their progress so that another run resumes the upload.

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

from ._jobs import PROGRESS_SECONDS, PartedFile, UnitJob, parse_progress
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
    TransformError,
    UnsafeKeyError,
)
from .layout import KeyLayout
from .models import FileCopy, FileRef, UnitStatus
from .report import RunReport
from .schedulers.base import Scheduler
from .sinks.base import Sink
from .sources.base import AepSource
from .transforms.base import Transform

logger = logging.getLogger(__name__)

_Result = Union[list[tuple[FileRef, str]], tuple[FileCopy, bool], PartedFile, str, None]
_RUN_FATAL = (AuthError, TokenUnavailable)
"""Errors that end the run, not a unit: without a token no unit can go on."""
_IDLE_POLL_SECONDS = 5.0
_RECHECK_SECONDS = 1.0
_POLL_SECONDS = 0.25
"""The longest the loop waits for a task before it looks again: an abort (which
nothing else wakes it for), the deadline and leases due for renewal are acted on
within this."""
T = TypeVar("T")


@attrs.define
class _Counters:
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    units_completed: int = 0
    progress_writes: int = 0
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
        transform: Optional[Transform] = None,
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
        self.tasks = FileTasks(
            source,
            sink,
            self.layout,
            scope,
            transform=transform,
            spool_dir=config.spool_dir,
        )
        self.concurrency = config.concurrency
        self.jobs: dict[str, UnitJob] = {}
        self.in_flight: dict[Future[_Result], tuple[UnitJob, str, int, int]] = {}
        """Each task's job, kind, file offset and part number (0: not a part)."""
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
                self._interrupt_if_aborting()  # the deadline may have just passed
                if not self.in_flight:
                    if self.jobs:
                        continue  # jobs became ready to finish: loop once more
                    if self._stopping() or not self._await_others(dataset_id):
                        break
                    continue
                done, _ = wait(
                    list(self.in_flight),
                    timeout=_POLL_SECONDS,
                    return_when=FIRST_COMPLETED,
                )
                for future in done:
                    self._collect(future)
                self._interrupt_if_aborting()
                self._renew_due()
                self._save_progress_due()
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
        if c.progress_writes:
            logger.info("%d progress record write(s)", c.progress_writes)
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
        """While aborting, cut the source's requests in flight: a read blocked on a
        slow server would otherwise hold its thread until the request deadline.
        Repeated each pass (every :data:`_POLL_SECONDS`): a task that was waiting
        for a rate-limit permit at the first cut sends its request after it."""
        if self.abort_event.is_set() and self.in_flight:
            cut = self.source.interrupt()
            if not self.interrupted:
                self.interrupted = True
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
            job = UnitJob(lease=lease, progress_saved_at=self.store.clock())
            self.jobs[job.unit_id] = job
            self._submit(job, "list", -1, self.tasks.list_files, lease.unit)

    def _submit_next_task(self) -> bool:
        if self._stopping():
            return False
        for job in self.jobs.values():
            if not job.active:
                continue
            for parted in job.parted.values():  # finish big files first
                if parted.todo and self._room_for_part(parted):
                    number = parted.todo.popleft()
                    parted.in_flight.add(number)
                    self._submit(
                        job,
                        "part",
                        parted.offset,
                        self.tasks.fetch_part,
                        parted,
                        number,
                        number=number,
                    )
                    return True
            if job.todo:
                offset = job.todo[0]
                recorded = offset <= job.lease.checkpoint.last_processed_offset
                file = job.files[offset]
                part_size = self.concurrency.part_size_for(
                    file.length, self.sink.min_part_size
                )
                if (
                    self.tasks.transform is None  # a transform reads one stream
                    and file.length >= self.concurrency.threshold
                    and part_size < file.length
                ):
                    if self._parts_in_memory() >= self.concurrency.parts_in_flight:
                        continue  # no room for its parts: open no upload yet
                    job.todo.popleft()
                    self._submit(
                        job,
                        "start",
                        offset,
                        self.tasks.start_parts,
                        job.lease.unit,
                        offset,
                        file,
                        job.keys[offset],
                        recorded,
                        part_size,
                        job.resume.get(offset),
                    )
                    return True
                job.todo.popleft()
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

    def _room_for_part(self, parted: PartedFile) -> bool:
        """Whether one more part may be read into memory, for this file and in
        all (:attr:`ConcurrencyConfig.parts_per_file` and ``parts_in_flight``)."""
        return (
            parted.in_memory < self.concurrency.parts_per_file
            and self._parts_in_memory() < self.concurrency.parts_in_flight
        )

    def _parts_in_memory(self) -> int:
        return sum(
            parted.in_memory
            for job in self.jobs.values()
            for parted in job.parted.values()
        )

    def _submit(
        self,
        job: UnitJob,
        kind: str,
        offset: int,
        fn: Callable[..., _Result],
        *args: Any,
        number: int = 0,
    ) -> None:
        job.in_flight += 1
        future = self.scheduler.submit(fn, *args)
        self.in_flight[future] = (job, kind, offset, number)

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
        self.stop_event.wait(self._not_past_deadline(delay))
        self.may_claim = True
        return True

    # -- results ------------------------------------------------------------------

    def _collect(self, future: Future[_Result]) -> None:
        job, kind, offset, number = self.in_flight.pop(future)
        job.in_flight -= 1
        parted = job.parted.get(offset)
        if kind == "part" and parted is not None:
            parted.in_flight.discard(number)
        try:
            result = future.result()
        except CopyAborted:
            job.todo.clear()  # the unit is released once nothing is in flight
            job.stop_parts()
            return
        except _RUN_FATAL as exc:
            job.todo.clear()
            job.stop_parts()
            self._halt(exc)
            return
        except AepExtractError as exc:
            self._note_error(job, exc)
            return
        except Exception as exc:  # a bug or an unmapped error: record, do not crash
            logger.exception("unit %s: unexpected error", job.unit_id, extra=_ctx(job))
            self._note_error(job, exc)
            return
        if isinstance(result, PartedFile) or kind == "part":
            self._note_part(job, offset, number, result)
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
            self._load_resume(job)
        elif kind == "manifest":
            self._finish(job)
        elif kind == "part" or isinstance(result, PartedFile):
            self._complete_if_written(job, job.parted[offset])
        elif kind == "drop":
            return
        else:
            assert isinstance(result, tuple)
            if job.parted.pop(offset, None) or job.resume.pop(offset, None):
                job.progress_dirty = True  # no longer in progress
            self._file_done(job, offset, *result)

    def _note_part(
        self, job: UnitJob, offset: int, number: int, result: _Result
    ) -> None:
        """Take a file's upload or one of its parts in, even for a unit that
        failed meanwhile: its progress record keeps them for the next attempt
        (a lost unit's record is no longer this worker's to write)."""
        if job.lost:
            if isinstance(result, PartedFile):
                result.writer.close()
            return
        if isinstance(result, PartedFile):
            job.parted[offset] = result
            job.resume.pop(offset, None)
        else:
            assert isinstance(result, str)
            job.parted[offset].done[number] = result
            job.parts_unsaved += 1
        job.progress_dirty = True

    def _complete_if_written(self, job: UnitJob, parted: PartedFile) -> None:
        if parted.all_written and not parted.completing:
            parted.completing = True
            self._submit(
                job,
                "complete",
                parted.offset,
                self.tasks.finish_parts,
                job.lease.unit,
                parted,
            )

    def _load_resume(self, job: UnitJob) -> None:
        """Take the progress record of the unit's files in parts: a listed file
        resumes its upload when its turn comes; the upload of a file no longer
        listed at that offset and key is aborted."""
        job.resume = parse_progress(job.lease.checkpoint.progress)
        for offset, recorded in list(job.resume.items()):
            file = job.files.get(offset)
            if file is None or (job.keys[offset], file.length) != (
                recorded.key,
                recorded.size,
            ):
                del job.resume[offset]
                job.progress_dirty = True
                self._submit(job, "drop", offset, self.tasks.drop_upload, recorded)

    def _file_done(
        self, job: UnitJob, offset: int, copy: FileCopy, fresh: bool
    ) -> None:
        job.copies[offset] = copy
        self.hooks.file_copied(
            unit=job.lease.unit,
            file=job.files[offset],
            key=copy.objects[0].key,
            size=copy.size,
            fresh=fresh,
            outputs=copy.outputs,
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
            # No retry changes a name from the API, or a file a transform cannot
            # read: such a unit fails at once.
            job.final = isinstance(exc, (UnsafeKeyError, TransformError))
        job.todo.clear()
        job.stop_parts()

    def _advance(self, job: UnitJob) -> None:
        old = job.lease.checkpoint.last_processed_offset
        new = job.committable()
        if new <= old:
            return
        files, size = job.done_between(old, new)
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
                self._let_go(job)
                del self.jobs[job.unit_id]
            elif job.error is not None:
                self._let_go(job)
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
                self._let_go(job)
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

    def _let_go(self, job: UnitJob) -> None:
        """Before a unit is given back (failed, stopped or lost): its uploads in
        parts stay in the sink, their progress recorded for the next owner."""
        if job.progress_dirty and not job.lost:
            self._save_progress(job)
        for parted in job.parted.values():
            parted.writer.close()
        job.parted.clear()

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

    def _not_past_deadline(self, seconds: float) -> float:
        """``seconds`` to wait, cut to end just past the deadline: the loop notices
        it then, not a poll later."""
        if self.deadline is None:
            return seconds
        return min(seconds, max(self.deadline - time.monotonic(), 0.0) + 0.01)

    def _renew_due(self) -> None:
        threshold = self.store.clock() + self.config.lease_seconds * 2 / 3
        for job in list(self.jobs.values()):
            if job.active and job.lease.expires_at < threshold:
                if job.progress_dirty:
                    self._save_progress(job)  # renews the lease too
                    continue
                lease = self._fenced(
                    job, self.store.renew, job.lease, self.config.lease_seconds
                )
                if lease is not None:
                    job.lease = lease

    def _save_progress_due(self) -> None:
        """Write the progress records that are due: at most one per unit per
        :data:`PROGRESS_SECONDS`, or sooner once a file's window of parts has
        been written since the last."""
        now = self.store.clock()
        for job in list(self.jobs.values()):
            if (
                job.active
                and job.progress_dirty
                and (
                    now - job.progress_saved_at >= PROGRESS_SECONDS
                    or job.parts_unsaved >= self.concurrency.parts_per_file
                )
            ):
                self._save_progress(job)

    def _save_progress(self, job: UnitJob) -> None:
        lease = self._fenced(
            job,
            self.store.save_progress,
            job.lease,
            job.progress(),
            self.config.lease_seconds,
        )
        self.counters.progress_writes += 1
        if lease is not None:
            job.lease = lease
            job.progress_dirty = False
            job.parts_unsaved = 0
            job.progress_saved_at = self.store.clock()

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
            job.stop_parts()
            return None


def _ctx(job: UnitJob) -> dict[str, Any]:
    """Log context of a job's unit (see :func:`~aep_extract._logging.log_context`)."""
    return log_context(job.lease.unit)
