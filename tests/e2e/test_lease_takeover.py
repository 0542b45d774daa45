"""A rerun on the same host after ``kill -9`` takes the dead run's units over at
once; a live owner's units are waited for, and the wait is told on stderr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from typing import Any, Optional

from aep_extract import (
    Checkpoint,
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    LocalSink,
    SQLiteCheckpointStore,
    UnitStatus,
)
from aep_extract._liveness import OwnerId
from aep_extract.extractor import default_owner
from aep_extract.testing import FakeAepPlatform, FakeRequest

from .helpers import (
    DATASET,
    END,
    START,
    expected_statuses,
    expected_tree,
    run_args,
    sink_tree,
    unit_statuses,
)

HOUR = 3600
"""Leases no test waits out: a rerun that waited for one would hit its deadline."""

CLI = [sys.executable, "-m", "aep_extract.cli"]


def is_download(request: FakeRequest) -> bool:
    return request.path.startswith("/data/foundation/export/files/") and (
        "path" in request.query
    )


def test_a_rerun_after_kill_9_takes_the_dead_runs_units_over_at_once(tmp_path):
    held = threading.Event()
    release = threading.Event()

    def hold_downloads(request: FakeRequest) -> Optional[Any]:
        """Downloads wait until released, so the killed run dies mid-unit."""
        if is_download(request):
            held.set()
            release.wait(60)
        return None

    db, out = tmp_path / "state.db", tmp_path / "out"
    catalog: dict[str, Any] = {"batches": 4, "files_per_batch": 2, "large_file_size": 0}
    with FakeAepPlatform.generate(**catalog) as platform:
        platform.add_fault(hold_downloads)
        args = run_args(str(out), f"sqlite:///{db}", "--lease-seconds", f"{HOUR}")
        with (tmp_path / "killed.log").open("w") as log:
            run = subprocess.Popen(
                [*CLI, *args],
                env={**os.environ, **platform.env()},
                stdout=log,
                stderr=log,
            )
            try:
                started = held.wait(60)
            finally:
                run.kill()
                run.wait()
                release.set()
        assert started, (tmp_path / "killed.log").read_text()

        store = SQLiteCheckpointStore(db)
        killed = {cp.unit_id: cp for cp in store.list(DATASET, UnitStatus.IN_PROGRESS)}
        assert killed
        for cp in killed.values():
            assert cp.owner is not None
            owner = OwnerId.parse(cp.owner)
            assert owner is not None
            assert (owner.host, owner.pid) == (socket.gethostname(), run.pid)

        at_claim: dict[str, Optional[Checkpoint]] = {}

        def claimed(*, unit: Any, **_: Any) -> None:
            at_claim[unit.unit_id] = store.get(unit.batch_id, unit.offset_range)

        with Extractor(
            HttpAepSource.from_env(platform.env()),
            store=store,
            sink=LocalSink(out),
            config=ExtractorConfig(lease_seconds=HOUR),
            hooks={"unit_started": claimed},
        ) as rerun:
            report = rerun.run(DATASET, START, END, deadline=60)
        expected = expected_tree(platform)

    assert report.ok, str(report)
    assert not report.stopped
    for unit_id, before in killed.items():
        taken = at_claim[unit_id]
        assert taken is not None
        assert (taken.owner, taken.crashes, taken.attempts) == (rerun.owner, 1, 0)
        assert before.lease_expires_at is not None
        assert taken.updated_at < before.lease_expires_at
        done = store.get(before.unit.batch_id, before.unit.offset_range)
        assert done is not None
        assert (done.status, done.crashes) == (UnitStatus.COMPLETED, 1)
    assert sink_tree(LocalSink(out)) == expected


def test_a_rerun_tells_on_stderr_which_live_leases_it_waits_for(fake_aep, tmp_path):
    db, out = tmp_path / "state.db", tmp_path / "out"
    store = SQLiteCheckpointStore(db)
    source = HttpAepSource.from_env(fake_aep.env())
    with Extractor(source, store=store, sink=LocalSink(out)) as planner:
        planner.plan(DATASET, START, END)
    owner = default_owner()  # this test's process: alive, on this host
    leases = []
    while (lease := store.claim(DATASET, owner, HOUR)) is not None:
        leases.append(lease)
    assert leases
    until = max(lease.expires_at for lease in leases)
    at = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S UTC")

    args = run_args(str(out), f"sqlite:///{db}", "--deadline", "60")
    run = subprocess.Popen(
        [*CLI, *args],
        env={**os.environ, **fake_aep.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stderr is not None
    told = run.stderr.readline()  # the first line it logs, at the default level
    for lease in leases:  # the wait was told: let the run have the units
        store.release(lease)
    _, rest = run.communicate(timeout=120)

    host, pid = socket.gethostname(), os.getpid()
    said = f"waiting for {len(leases)} unit(s) leased by {host} pid {pid} (alive) "
    assert f"{said}until {at} (in " in told, told
    assert told.rstrip().endswith("a lease not renewed by then is taken over"), told
    assert run.returncode == 0, told + rest
    assert "waiting for" not in rest  # said once: the wait was short
    assert unit_statuses(store) == expected_statuses(fake_aep)
    assert all(cp.crashes == 0 for cp in store.list(DATASET))  # none taken over
    assert sink_tree(LocalSink(out)) == expected_tree(fake_aep)
