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
    liveness,
    provably_dead,
)
from aep_extract.extractor import default_owner


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
