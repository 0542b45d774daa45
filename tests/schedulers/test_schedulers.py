"""SerialScheduler and ThreadPoolScheduler."""

from __future__ import annotations

import threading
from concurrent.futures import wait

import pytest

from aep_extract.errors import ConfigError
from aep_extract.schedulers import Scheduler, SerialScheduler, ThreadPoolScheduler
from aep_extract.testing.contracts import SchedulerContract

TIMEOUT = 30


class Boom(Exception):
    pass


def boom():
    raise Boom("task failed")


# -- serial ---------------------------------------------------------------------------


def test_serial_runs_the_task_inside_submit():
    calls = []

    def add(x, *, y):
        calls.append((x, y))
        return x + y

    scheduler = SerialScheduler()
    future = scheduler.submit(add, 1, y=2)
    assert calls == [(1, 2)]
    assert future.done()
    assert future.result(timeout=0) == 3
    assert scheduler.max_workers == 1
    assert isinstance(scheduler, Scheduler)


def test_serial_runs_in_the_callers_thread():
    future = SerialScheduler().submit(threading.current_thread)
    assert future.result(timeout=0) is threading.current_thread()


def test_serial_captures_exceptions_on_the_future():
    future = SerialScheduler().submit(boom)
    assert future.done()
    assert isinstance(future.exception(timeout=0), Boom)
    with pytest.raises(Boom, match="task failed"):
        future.result(timeout=0)


def test_serial_lets_keyboard_interrupt_through():
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SerialScheduler().submit(interrupted)


def test_serial_refuses_tasks_after_shutdown():
    with SerialScheduler() as scheduler:
        scheduler.submit(int)
    with pytest.raises(RuntimeError):
        scheduler.submit(int)


# -- thread pool ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4", None])
def test_thread_pool_validates_max_workers(bad):
    with pytest.raises(ConfigError, match="max_workers"):
        ThreadPoolScheduler(bad)


def test_thread_pool_runs_tasks_concurrently_on_named_threads():
    with ThreadPoolScheduler(4, thread_name_prefix="copier") as scheduler:
        assert scheduler.max_workers == 4
        barrier = threading.Barrier(4, timeout=TIMEOUT)

        def meet():
            barrier.wait()  # breaks (and fails the test) unless 4 run at once
            return threading.current_thread().name

        futures = [scheduler.submit(meet) for _ in range(4)]
        names = {future.result(timeout=TIMEOUT) for future in futures}
    assert len(names) == 4
    assert all(name.startswith("copier") for name in names)


def test_thread_pool_is_bounded_by_max_workers():
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()
    three_running = threading.Event()

    def task():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 3:
                three_running.set()
        release.wait(TIMEOUT)
        with lock:
            running -= 1

    with ThreadPoolScheduler(3) as scheduler:
        futures = [scheduler.submit(task) for _ in range(10)]
        assert three_running.wait(TIMEOUT)
        assert sum(f.running() for f in futures) == 3
        assert sum(not f.done() and not f.running() for f in futures) == 7
        release.set()
        wait(futures, timeout=TIMEOUT)
    assert peak == 3
    assert all(f.done() and f.exception() is None for f in futures)


def test_thread_pool_captures_exceptions_on_the_future():
    with ThreadPoolScheduler(2) as scheduler:
        future = scheduler.submit(boom)
        with pytest.raises(Boom):
            future.result(timeout=TIMEOUT)


def _block_and_queue(scheduler, queued_count):
    started, release = threading.Event(), threading.Event()

    def blocker():
        started.set()
        release.wait(TIMEOUT)
        return "ran"

    running = scheduler.submit(blocker)
    assert started.wait(TIMEOUT)
    queued = [scheduler.submit(int, "1") for _ in range(queued_count)]
    return running, queued, release


def all_done(futures):
    """An event set once every future is done, cancelled ones included.

    ``concurrent.futures.wait`` is not woken by ``Future.cancel()``; done callbacks are.
    """
    done = threading.Event()
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(_future):
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    for future in futures:
        future.add_done_callback(one_done)
    return done


def test_thread_pool_shutdown_with_cancel_drops_queued_tasks():
    scheduler = ThreadPoolScheduler(1)
    running, queued, release = _block_and_queue(scheduler, 5)
    dropped = all_done(queued)
    stopper = threading.Thread(target=scheduler.shutdown, kwargs={"cancel": True})
    stopper.start()
    assert dropped.wait(TIMEOUT)
    assert all(f.cancelled() for f in queued)
    assert not running.done()  # a started task is not interrupted
    release.set()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    assert running.result(timeout=0) == "ran"
    with pytest.raises(RuntimeError):
        scheduler.submit(int)


def test_thread_pool_shutdown_without_cancel_runs_queued_tasks():
    scheduler = ThreadPoolScheduler(1)
    running, queued, release = _block_and_queue(scheduler, 3)
    release.set()
    scheduler.shutdown()
    assert running.result(timeout=0) == "ran"
    assert [f.result(timeout=0) for f in queued] == [1, 1, 1]


def test_thread_pool_context_exit_on_error_cancels_queued_tasks():
    scheduler = ThreadPoolScheduler(1)
    running, queued, release = _block_and_queue(scheduler, 3)
    # __exit__ returns only when the running task ends: release it once the queued
    # futures were cancelled.
    dropped = all_done(queued)
    watcher = threading.Thread(target=lambda: (dropped.wait(TIMEOUT), release.set()))
    watcher.start()
    with pytest.raises(Boom), scheduler:
        raise Boom
    watcher.join(TIMEOUT)
    assert all(f.cancelled() for f in queued)
    assert running.result(timeout=0) == "ran"


def test_repr_shows_workers():
    scheduler = ThreadPoolScheduler(3)
    try:
        assert "max_workers=3" in repr(scheduler)
    finally:
        scheduler.shutdown()


class TestSerialSchedulerContract(SchedulerContract):
    @pytest.fixture
    def scheduler(self):
        return SerialScheduler()


class TestThreadPoolSchedulerContract(SchedulerContract):
    @pytest.fixture(params=[1, 4])
    def scheduler(self, request):
        return ThreadPoolScheduler(request.param)
