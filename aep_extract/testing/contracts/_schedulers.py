"""The scheduler contract."""

from __future__ import annotations

import threading
from concurrent.futures import Future, wait

import pytest

from ...schedulers.base import Scheduler

__all__ = ["SchedulerContract"]

TIMEOUT = 30.0
"""Seconds any one wait of the suite may take before the test fails."""


class _Boom(Exception):
    """Raised by a task."""


def _fail() -> None:
    raise _Boom("task failed")


class SchedulerContract:
    """What every :class:`~aep_extract.Scheduler` must do.

    Supply a function-scoped ``scheduler`` fixture returning a fresh scheduler;
    the suite shuts it down itself where a test needs that.
    """

    def test_max_workers_is_a_positive_int(self, scheduler: Scheduler) -> None:
        assert isinstance(scheduler.max_workers, int)
        assert scheduler.max_workers >= 1

    def test_submit_runs_the_call_with_its_arguments(
        self, scheduler: Scheduler
    ) -> None:
        def add(x: int, *, y: int) -> int:
            return x + y

        with scheduler:
            future = scheduler.submit(add, 1, y=2)
            assert isinstance(future, Future)
            assert future.result(timeout=TIMEOUT) == 3

    def test_a_failing_task_fails_its_future_only(self, scheduler: Scheduler) -> None:
        with scheduler:
            failed = scheduler.submit(_fail)
            with pytest.raises(_Boom, match="task failed"):
                failed.result(timeout=TIMEOUT)
            assert scheduler.submit(str, 7).result(timeout=TIMEOUT) == "7"

    def test_max_workers_tasks_run_at_once(self, scheduler: Scheduler) -> None:
        """The extractor keeps ``max_workers`` tasks submitted and waits for one
        to finish: they must all make progress together."""
        workers = scheduler.max_workers
        barrier = threading.Barrier(workers, timeout=TIMEOUT)
        with scheduler:
            futures = [scheduler.submit(barrier.wait) for _ in range(workers)]
            done, _ = wait(futures, timeout=TIMEOUT * 2)
            assert len(done) == workers
            assert all(f.exception() is None for f in futures)

    def test_every_task_runs_once(self, scheduler: Scheduler) -> None:
        ran: list[int] = []
        lock = threading.Lock()

        def record(n: int) -> int:
            with lock:
                ran.append(n)
            return n * n

        with scheduler:
            futures = [scheduler.submit(record, n) for n in range(50)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == [
                n * n for n in range(50)
            ]
        assert sorted(ran) == list(range(50))

    def test_shutdown_finishes_what_runs_and_refuses_more(
        self, scheduler: Scheduler
    ) -> None:
        future = scheduler.submit(str, "done")
        scheduler.shutdown()
        assert future.result(timeout=TIMEOUT) == "done"
        with pytest.raises(RuntimeError):
            scheduler.submit(str, "late")

    def test_leaving_the_with_block_on_an_error_shuts_down(
        self, scheduler: Scheduler
    ) -> None:
        def fail_inside() -> None:
            with scheduler:
                scheduler.submit(str, 1).result(timeout=TIMEOUT)
                _fail()

        with pytest.raises(_Boom):
            fail_inside()
        with pytest.raises(RuntimeError):
            scheduler.submit(str, "late")
