"""Owner ids and proofs of death: real processes of this host, never a guess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from aep_extract import _liveness
from aep_extract._liveness import (
    Liveness,
    OwnerId,
    WaitNotice,
    liveness,
    provably_dead,
    waiting_message,
)
from aep_extract.extractor import default_owner
from aep_extract.models import Checkpoint, UnitStatus, WorkUnit

EXPIRES = 1_765_000_000.0  # 2025-12-06 05:46:40 UTC


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of this host, ended (and reaped) after the test."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    yield process
    process.kill()
    process.wait()


def ended(process: subprocess.Popen[bytes]) -> None:
    """Let ``process`` exit, and reap it."""
    assert process.stdin is not None
    process.stdin.close()
    process.wait()


def test_default_owner_names_this_process_and_proves_it_alive():
    owner = default_owner()
    found = OwnerId.parse(owner)
    assert found is not None
    stat = Path("/proc/self/stat").read_text()
    assert (found.host, found.pid) == (socket.gethostname(), os.getpid())
    assert found.start == int(stat[stat.rindex(")") + 2 :].split()[19])
    assert found.boot == _liveness.boot_fingerprint()
    assert str(found) == owner
    assert default_owner() != owner  # the random part differs per extractor
    assert liveness(owner) is Liveness.ALIVE
    assert not provably_dead(owner)


def test_another_live_process_is_alive_then_dead_once_ended(child):
    owner = str(OwnerId.of_process(child.pid))
    assert liveness(owner) is Liveness.ALIVE
    ended(child)
    assert liveness(owner) is Liveness.DEAD
    assert provably_dead(owner)


def test_a_zombie_is_dead(child):
    owner = str(OwnerId.of_process(child.pid))
    assert child.stdin is not None
    child.stdin.close()
    # Wait for the exit without reaping: the process stays a zombie.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert Path(f"/proc/{child.pid}/stat").exists()
    assert liveness(owner) is Liveness.DEAD


def test_a_reused_pid_with_another_start_time_is_dead():
    this = OwnerId.parse(default_owner())
    assert this is not None
    assert this.start is not None
    reused = attrs.evolve(this, start=this.start + 1)
    assert liveness(str(reused)) is Liveness.DEAD


def test_another_boot_or_host_is_not_provable_even_if_the_pid_is_free(child):
    dead = OwnerId.of_process(child.pid)
    ended(child)
    assert provably_dead(str(dead))
    elsewhere = [
        attrs.evolve(dead, boot="0123456789abcdef"),
        attrs.evolve(dead, host=f"not-{dead.host}"),
    ]
    for owner in elsewhere:
        assert liveness(str(owner)) is Liveness.UNKNOWN


def test_an_owner_without_start_time_or_chosen_by_a_user_is_opaque(child):
    dead = OwnerId.of_process(child.pid)
    ended(child)
    short = f"{dead.host}:{dead.pid}:{dead.nonce}"  # no start time: no proof
    assert OwnerId.parse(short) == attrs.evolve(dead, start=None, boot=None)
    for owner in (short, "worker-a", "", f"{dead.host}:{dead.pid}", f"{dead}:x"):
        assert liveness(owner) is Liveness.UNKNOWN
        assert not provably_dead(owner)


def test_without_a_boot_id_an_owner_carries_no_proof(child, monkeypatch, tmp_path):
    monkeypatch.setattr(_liveness, "BOOT_ID", tmp_path / "absent")
    owner = OwnerId.of_process(child.pid)
    assert (owner.start, owner.boot) == (None, None)
    assert str(owner).count(":") == 2
    ended(child)
    assert liveness(str(owner)) is Liveness.UNKNOWN


def test_owner_ids_round_trip_and_hosts_may_hold_colons():
    owner = OwnerId(host="a:b", pid=12, nonce="0a1b2c3d", start=99, boot="f" * 16)
    assert str(owner) == "a:b:12:0a1b2c3d:99:ffffffffffffffff"
    assert OwnerId.parse(str(owner)) == owner
    assert OwnerId.parse("h:0:0a1b2c3d") is None  # pid 0 names no process


def held(owner: str, expires: float) -> Checkpoint:
    unit = WorkUnit(dataset_id="ds", batch_id=f"b{expires}", batch_created_ms=0)
    return Checkpoint(
        unit=unit,
        status=UnitStatus.IN_PROGRESS,
        owner=owner,
        lease_expires_at=expires,
    )


def test_the_wait_message_names_owners_and_when_their_leases_end(child):
    alive = str(OwnerId.of_process(child.pid))
    host = socket.gethostname()
    units = [
        held("worker-b", EXPIRES + 600),
        held(alive, EXPIRES + 5),
        held(alive, EXPIRES + 25),
        held(f"elsewhere:7:0a1b2c3d:5:{'f' * 16}", EXPIRES + 60),
    ]
    assert waiting_message(units, EXPIRES) == (
        f"waiting for 2 unit(s) leased by {host} pid {child.pid} (alive) until "
        "05:47:05 UTC (in 25 s), 1 unit(s) leased by elsewhere pid 7 (another host) "
        "until 05:47:40 UTC (in 60 s), 1 unit(s) leased by worker-b until "
        "05:56:40 UTC (in 600 s); a lease not renewed by then is taken over"
    )
    many = [held(f"w{n}", EXPIRES + n) for n in range(5)]
    assert waiting_message(many, EXPIRES).endswith(
        "1 unit(s) leased by w2 until 05:46:42 UTC (in 2 s), 2 unit(s) of 2 other "
        "owner(s); a lease not renewed by then is taken over"
    )


def test_the_wait_notice_speaks_once_then_every_interval(caplog):
    now = [100.0]
    notice = WaitNotice(interval=60, monotonic=lambda: now[0])
    units = [held("worker-b", EXPIRES + 30)]
    caplog.set_level("INFO", logger=_liveness.__name__)

    def said() -> int:
        return sum(r.name == _liveness.__name__ for r in caplog.records)

    notice.waiting(units, EXPIRES)
    assert said() == 1
    assert caplog.records[-1].levelname == "INFO"
    now[0] += 59
    notice.waiting(units, EXPIRES + 59)
    assert said() == 1
    now[0] += 1
    notice.waiting(units, EXPIRES + 60)
    assert said() == 2
    notice.done()  # the wait ended: the next one is told at once
    notice.waiting(units, EXPIRES + 61)
    assert said() == 3
