"""Claims against leases of real processes of this host: a dead owner's unit is
taken over at once, a live or unknown owner's never before its lease expires."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aep_extract import MemoryCheckpointStore, SQLiteCheckpointStore
from aep_extract._liveness import OwnerId
from aep_extract.checkpoints import CheckpointStore
from aep_extract.extractor import default_owner
from aep_extract.models import WorkUnit

LEASE = 3600.0
DATASET = "ds"


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStore]:
    opened: CheckpointStore
    if request.param == "memory":
        opened = MemoryCheckpointStore()
    else:
        opened = SQLiteCheckpointStore(tmp_path / "state.db")
    with opened:
        yield opened


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    yield process
    process.kill()
    process.wait()


def held_by(store: CheckpointStore, owner: str) -> WorkUnit:
    """Register one unit and lease it to ``owner`` for an hour."""
    unit = WorkUnit(dataset_id=DATASET, batch_id="b1", batch_created_ms=0)
    store.register([unit])
    lease = store.claim(DATASET, owner, LEASE)
    assert lease is not None
    return unit


def test_a_dead_processs_lease_is_taken_over_at_once(store, child):
    dead = str(OwnerId.of_process(child.pid))
    unit = held_by(store, dead)
    expires = store.get(unit.batch_id).lease_expires_at
    assert store.claim(DATASET, "worker-b", LEASE) is None  # still alive
    assert child.stdin is not None
    child.stdin.close()
    child.wait()
    lease = store.claim(DATASET, "worker-b", LEASE)
    assert lease is not None
    taken = store.get(unit.batch_id)
    assert taken == lease.checkpoint
    assert (taken.owner, taken.crashes, taken.attempts) == ("worker-b", 1, 0)
    assert taken.updated_at < expires


@pytest.mark.parametrize("who", ["this process", "a live child", "a user's name"])
def test_a_live_or_unknown_owner_keeps_its_lease(store, child, who):
    owner = {
        "this process": default_owner(),
        "a live child": str(OwnerId.of_process(child.pid)),
        "a user's name": "etl-worker-1",
    }[who]
    unit = held_by(store, owner)
    assert store.claim(DATASET, "worker-b", LEASE) is None
    assert store.get(unit.batch_id).owner == owner
