"""The Extractor facade: plan a window, execute the units, report, restart safely."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional, Union

from ._engine import Engine
from ._liveness import OwnerId
from ._planning import Planner
from ._run import RunScope, within
from ._run import current as current_run
from .checkpoints.base import CheckpointStore
from .config import ExtractorConfig
from .errors import ConfigError, NothingNewToPlan
from .hooks import HookDispatcher, HooksLike
from .layout import KeyLayout
from .models import Batch, TimeWindow, WorkUnit, from_epoch_ms, to_moment
from .progress import make_progress
from .report import DatasetStatus, PlanResult, RunReport
from .schedulers.base import Scheduler
from .schedulers.threads import ThreadPoolScheduler
from .sinks.base import Sink
from .sources.base import AepSource
from .tables.base import TableCatalog
from .transforms.base import Transform
from .transforms.spec import open_transform
from .verify import VerifyReport, verify

logger = logging.getLogger(__name__)

Moment = Union[str, datetime]
"""A window bound: an aware datetime or an ISO 8601 string with an offset or ``Z``."""

Deadline = Union[float, datetime]
"""Seconds from now, or an aware datetime."""


def _monotonic_deadline(deadline: Optional[Deadline]) -> Optional[float]:
    if deadline is None:
        return None
    if isinstance(deadline, datetime):
        if deadline.tzinfo is None:
            raise ConfigError("deadline must be a timezone-aware datetime")
        seconds = (deadline - datetime.now(timezone.utc)).total_seconds()
    else:
        seconds = float(deadline)
    return time.monotonic() + seconds


def default_owner() -> str:
    """A new worker id, ``HOST:PID:RANDOM``, and on Linux ``:START:BOOT`` after it
    (the process start time and a fingerprint of the boot id), so that a rerun on
    this host can prove the process dead and take its leases over at once."""
    return str(OwnerId.of_process())


class Extractor:
    """Copies every file of a dataset's batches in a window from AEP to a sink.

    Args:
        source: where batches and bytes come from (e.g. ``AepSource.from_env()``).
        store: where progress is recorded; a durable one makes runs restartable.
        sink: where the files go.
        scheduler: how copies run at once (default: a
            :class:`~aep_extract.ThreadPoolScheduler` of
            ``config.concurrency.workers`` threads, 8 by default).
        config: leases, attempts, splitting, key layout and concurrency.
        owner: this worker's id in leases (default: host, pid and a random part,
            and on Linux what lets a rerun on this host prove the process dead:
            its start time and the boot).
        hooks: told of each unit, file, retry and 429 as the run goes (an
            :class:`~aep_extract.hooks.ExtractionHooks`, a mapping of event name to
            callable, or a list of either); a hook that raises is logged, ignored.
        progress: show a progress bar: None (default) when stderr is a terminal or
            in a notebook, True always, False never. :meth:`execute` and
            :meth:`run` can override it.
        transform: process each file on the way (:doc:`/transforms`): a
            :class:`~aep_extract.transforms.Transform`, or its spec(s) for
            :func:`~aep_extract.transforms.open_transform`
            (``["project:columns=_id,timestamp", "jsonl"]``); None copies files
            byte for byte. Files are then read as one stream each, not in parts.

    Example:
        >>> from aep_extract import Extractor, SQLiteCheckpointStore
        >>> from aep_extract.sinks import LocalSink
        >>> extractor = Extractor(
        ...     source, store=SQLiteCheckpointStore("state.db"), sink=LocalSink("out")
        ... )  # doctest: +SKIP
        >>> report = extractor.run("DATASET_ID", "2024-06-10T00:00:00Z",
        ...                        "2024-06-11T00:00:00Z")  # doctest: +SKIP
    """

    def __init__(
        self,
        source: AepSource,
        *,
        store: CheckpointStore,
        sink: Sink,
        scheduler: Optional[Scheduler] = None,
        config: Optional[ExtractorConfig] = None,
        owner: Optional[str] = None,
        hooks: Optional[HooksLike] = None,
        progress: Optional[bool] = None,
        transform: Union[Transform, str, Sequence[str], None] = None,
    ) -> None:
        if transform is not None and not isinstance(transform, Transform):
            transform = open_transform(transform)
        self.transform = transform
        self.source = source
        self.hooks = HookDispatcher(hooks)
        self.progress = progress
        self.store = store
        self.sink = sink
        self.config = config or ExtractorConfig()
        self.scheduler = scheduler or ThreadPoolScheduler(
            self.config.concurrency.workers
        )
        self._owns_scheduler = scheduler is None
        if self.scheduler.max_workers > self.config.concurrency.workers:
            logger.warning(
                "the scheduler runs %d workers but the concurrency is sized for %d: "
                "connection pools may be too small; pass the same "
                "ConcurrencyConfig(workers=%d) to the config, source and sink",
                self.scheduler.max_workers,
                self.config.concurrency.workers,
                self.scheduler.max_workers,
            )
        self.owner = owner or default_owner()
        self._stop = threading.Event()
        self._abort = threading.Event()

    def __repr__(self) -> str:
        return (
            f"Extractor(source={self.source!r}, store={self.store!r}, "
            f"sink={self.sink!r}, owner={self.owner!r})"
        )

    def plan(self, dataset_id: str, start: Moment, end: Moment) -> PlanResult:
        """Discover the dataset's batches created in ``[start, end)`` and register
        one Pending unit per exportable batch (or per offset range, see
        ``ExtractorConfig.files_per_unit``).

        Units already registered keep their state, and a batch already planned
        keeps its unit layout. A batch AEP has not promoted yet (loading,
        processing ...) is registered Waiting, and every later plan looks at it
        again, whatever its window, until it succeeds (then it becomes Pending)
        or ends otherwise (Skipped). A batch superseded by another
        (``tags.acp_successor``), or replaying batches already copied, is
        Skipped with the reason recorded. The dataset's watermark rises to
        ``end`` (see :meth:`plan_since_last`).

        Raises:
            ConfigError: a naive or reversed window, or an empty dataset id.
            NotFoundError: the dataset does not exist.
            SourceError: the Catalog could not be read.
        """
        window = TimeWindow.parse(start, end)
        if not dataset_id:
            raise ConfigError("dataset id must not be empty")
        with self._scope():
            self.source.get_dataset(dataset_id)
            planner = Planner(
                self.source,
                self.store,
                self._units_of,
                copy_replays=self.config.copy_replays,
            )
            return planner.plan(dataset_id, window)

    def plan_since_last(
        self,
        dataset_id: str,
        *,
        start: Optional[Moment] = None,
        end: Optional[Moment] = None,
    ) -> PlanResult:
        """:meth:`plan` the window from the end of the last window planned for
        the dataset (its watermark) to ``end``, by default now minus
        ``ExtractorConfig.safety_lag_seconds``: the call a daily job repeats.

        Args:
            dataset_id: the dataset.
            start: where the first incremental run starts, while the dataset has
                no watermark; ignored once it has one.
            end: the window end instead of now minus the safety lag.

        Raises:
            ConfigError: no watermark and no ``start``, or the store keeps no
                watermarks.
            NothingNewToPlan: the end is not after the watermark.
        """
        window = self.next_window(dataset_id, start=start, end=end)
        return self.plan(dataset_id, window.start, window.end)

    def next_window(
        self,
        dataset_id: str,
        *,
        start: Optional[Moment] = None,
        end: Optional[Moment] = None,
    ) -> TimeWindow:
        """The window :meth:`plan_since_last` would plan (see its arguments).

        Raises:
            ConfigError: see :meth:`plan_since_last`.
            NothingNewToPlan: the end is not after the watermark.
        """
        try:
            mark = self.store.watermark(dataset_id)
        except NotImplementedError as exc:
            raise ConfigError(str(exc)) from None
        if mark is not None:
            begin = from_epoch_ms(mark)
            if start is not None:
                logger.info(
                    "dataset %s: planned up to %s already; start ignored",
                    dataset_id,
                    begin.isoformat(),
                )
        elif start is not None:
            begin = to_moment(start)
        else:
            raise ConfigError(
                f"dataset {dataset_id} has no planned window yet: give a start "
                "for its first incremental run"
            )
        if end is None:
            lag = timedelta(seconds=self.config.safety_lag_seconds)
            finish = datetime.now(timezone.utc) - lag
        else:
            finish = to_moment(end)
        if finish <= begin:
            raise NothingNewToPlan(
                f"nothing new to plan for dataset {dataset_id}: planned up to "
                f"{begin.isoformat()}, and the end is {finish.isoformat()}"
            )
        return TimeWindow(begin, finish)

    def execute(
        self,
        dataset_id: str,
        *,
        deadline: Optional[Deadline] = None,
        progress: Optional[bool] = None,
    ) -> RunReport:
        """Work on the dataset's units until each is Completed or Failed.

        Units held by other live workers are waited for; units whose lease expired
        are taken over. :meth:`stop` or the ``deadline`` end the run early, leaving
        the work resumable by the next run.

        Args:
            dataset_id: the dataset whose planned units to work on.
            deadline: seconds from now, or an aware datetime, by which the run
                has stopped: no unit or file starts after it, files in flight are
                abandoned within seconds (nothing partial is kept) and leases are
                given back. Set it a minute before a Glue or Lambda timeout.
            progress: show a progress bar (None: the extractor's ``progress``).
        """
        limit = _monotonic_deadline(deadline)
        with self._scope() as scope:
            self.preflight(dataset_id)
            return self._execute(dataset_id, limit, scope, progress=progress)

    @contextlib.contextmanager
    def _scope(self) -> Iterator[RunScope]:
        """The scope of the run this call belongs to: a new one, unless this
        extractor's call is part of another of its calls (``run`` plans)."""
        scope = current_run()
        if scope is not None and scope.owner is self:
            yield scope
            return
        with within(RunScope(self.hooks, self._abort, owner=self)) as fresh:
            yield fresh

    def preflight(self, dataset_id: str) -> None:
        """Check, before anything is written, that the run can go where it would:
        the sink and the store are usable, and the store's progress of the dataset
        was made in this sink (see :attr:`destination`). :meth:`run` and
        :meth:`execute` call it first.

        Raises:
            MissingResourceError: the bucket or table does not exist.
            DestinationMismatch: the store recorded the dataset as copied to
                another sink or key layout.
            ConfigError, SinkError, CheckpointError: the sink or store is unusable.
        """
        self.sink.check()
        self.store.check()
        self.store.bind_destination(dataset_id, self.destination)

    @property
    def destination(self) -> str:
        """Where this extractor's files go: the sink's URL and the key templates.

        The store remembers it per dataset with the first run, and refuses a run
        into another destination (its progress would say files are copied that
        the other sink does not hold).
        """
        config = self.config
        return (
            f"{self.sink.url} keys={config.key_template} "
            f"manifests={config.manifest_template}"
        )

    def _execute(
        self,
        dataset_id: str,
        deadline: Optional[float],
        scope: RunScope,
        started: Optional[float] = None,
        progress: Optional[bool] = None,
    ) -> RunReport:
        """:meth:`execute` after :meth:`preflight`, in the run's ``scope``;
        ``started`` (time.monotonic) makes the report's duration cover what
        happened before, e.g. the planning of :meth:`run`."""
        bar = make_progress(dataset_id, self.progress if progress is None else progress)
        if bar is not None:
            scope.hooks = self.hooks.with_extra(bar)
        engine = Engine(
            scope=scope,
            source=self.source,
            store=self.store,
            sink=self.sink,
            scheduler=self.scheduler,
            config=self.config,
            owner=self.owner,
            stop_event=self._stop,
            deadline=deadline,
            transform=self.transform,
        )
        try:
            report = engine.run(dataset_id, started=started)
        finally:
            if bar is not None:
                bar.close()
                scope.hooks = self.hooks
            self._stop.clear()
            self._abort.clear()
        logger.info(
            "dataset %s: run finished, %d files (%d bytes) copied, %d failure(s)",
            dataset_id,
            report.files_copied,
            report.bytes_copied,
            len(report.failures),
        )
        return report

    def run(
        self,
        dataset_id: str,
        start: Moment,
        end: Moment,
        *,
        deadline: Optional[Deadline] = None,
        progress: Optional[bool] = None,
    ) -> RunReport:
        """:meth:`plan` then :meth:`execute`: the whole job, safe to rerun."""
        return self._plan_and_execute(
            dataset_id, lambda: self.plan(dataset_id, start, end), deadline, progress
        )

    def run_since_last(
        self,
        dataset_id: str,
        *,
        start: Optional[Moment] = None,
        end: Optional[Moment] = None,
        deadline: Optional[Deadline] = None,
        progress: Optional[bool] = None,
    ) -> RunReport:
        """:meth:`plan_since_last` then :meth:`execute`: the daily job.

        Raises:
            ConfigError: see :meth:`plan_since_last`.
        """
        return self._plan_and_execute(
            dataset_id,
            lambda: self.plan_since_last(dataset_id, start=start, end=end),
            deadline,
            progress,
        )

    def _plan_and_execute(
        self,
        dataset_id: str,
        plan: Callable[[], PlanResult],
        deadline: Optional[Deadline],
        progress: Optional[bool],
    ) -> RunReport:
        """Run ``plan``, then execute; the report covers both."""
        limit = _monotonic_deadline(deadline)
        started = time.monotonic()
        with self._scope() as scope:
            self.preflight(dataset_id)
            plan()
            return self._execute(dataset_id, limit, scope, started, progress)

    def status(
        self,
        dataset_id: str,
        start: Optional[Moment] = None,
        end: Optional[Moment] = None,
    ) -> DatasetStatus:
        """The dataset's units as the store records them, with counts by status,
        files and bytes done, the oldest lease and the last errors. Reads only the
        store, never the source.

        Args:
            dataset_id: the dataset.
            start: with ``end``, only units whose batch was created in
                ``[start, end)``; without both, every unit of the dataset.
            end: see ``start``.

        Raises:
            ConfigError: only one of ``start`` and ``end``, or a naive or reversed
                window.
        """
        if (start is None) != (end is None):
            raise ConfigError("give both start and end, or neither")
        window = None
        if start is not None and end is not None:
            window = TimeWindow.parse(start, end)
        return DatasetStatus.from_store(self.store, dataset_id, window)

    def retry_failed(
        self, dataset_id: str, unit_ids: Optional[Collection[str]] = None
    ) -> int:
        """Put Failed units back to Pending (all, or only ``unit_ids``).

        Returns:
            How many units were reset.
        """
        return self.store.retry_failed(dataset_id, unit_ids)

    def verify(
        self,
        dataset_id: str,
        start: Moment,
        end: Moment,
        *,
        checksums: bool = True,
        table: Optional[TableCatalog] = None,
    ) -> VerifyReport:
        """Reconcile the sink, the store and the Catalog for the window: batches
        missing from the sink, objects missing or differing from their manifest
        (size, and SHA-256 unless ``checksums`` is False), manifests and Completed
        units that disagree, stray objects; given a ``table``, days copied but
        missing from its partitions. Reads only; see
        :func:`aep_extract.verify.verify`.

        Raises:
            ConfigError: a naive or reversed window.
        """
        window = TimeWindow.parse(start, end)
        with self._scope():
            return verify(
                source=self.source,
                store=self.store,
                sink=self.sink,
                dataset_id=dataset_id,
                window=window,
                layout=KeyLayout(
                    file_template=self.config.key_template,
                    manifest_template=self.config.manifest_template,
                ),
                checksums=checksums,
                table=table,
            )

    def stop(self, *, abort: bool = False) -> None:
        """Ask a running :meth:`execute` to stop: no new unit or file is started,
        in-flight files finish (or, with ``abort``, are dropped without leaving
        anything in the sink) and leases are given back. Safe to call from another
        thread or a signal handler."""
        if abort:
            self._abort.set()
        self._stop.set()

    def close(self) -> None:
        """Shut down the scheduler if the extractor created it."""
        if self._owns_scheduler:
            self.scheduler.shutdown()

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _units_of(self, batch: Batch) -> list[WorkUnit]:
        whole = WorkUnit(
            dataset_id=batch.dataset_id,
            batch_id=batch.batch_id,
            batch_created_ms=batch.created_ms,
        )
        per_unit = self.config.files_per_unit
        if per_unit is None:
            return [whole]
        count = len(self.source.list_files(batch.batch_id))
        if count <= per_unit:
            return [whole]
        return [
            WorkUnit(
                dataset_id=batch.dataset_id,
                batch_id=batch.batch_id,
                batch_created_ms=batch.created_ms,
                first_offset=first,
                last_offset=min(first + per_unit, count) - 1,
            )
            for first in range(0, count, per_unit)
        ]
