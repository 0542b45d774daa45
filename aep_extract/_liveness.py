"""Who holds a lease, and whether that process is provably dead.

The default owner id of a worker (:func:`aep_extract.extractor.default_owner`) is
``HOST:PID:RANDOM:START:BOOT``: the host name, the process id, a random part, and on
Linux the process start time (clock ticks after boot, field 22 of ``/proc/PID/stat``)
and a fingerprint of the kernel's boot id and the PID and time namespaces. Elsewhere
the last two are left out (``HOST:PID:RANDOM``) and no proof is possible.

A process on this host, in this boot and these namespaces, is provably dead when no
process has its pid, or the process that has it started at another time (the pid was
reused), or it is a zombie. Anything else is not proof: another host, another boot, an
owner id of another form (one a user chose is opaque), a process this one may not
inspect. Such a lease is waited for until it expires, as before.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import re
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import attrs

from .models import Checkpoint

logger = logging.getLogger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
"""The kernel's random id of the current boot (Linux)."""

_OWNER = re.compile(
    r"(?P<host>.+):(?P<pid>[1-9][0-9]{0,9}):(?P<nonce>[0-9a-f]{8})"
    r"(?::(?P<start>[0-9]{1,20}):(?P<boot>[0-9a-f]{16}))?"
)
_OWNERS_NAMED = 3
"""How many owners a wait message names; it counts the others."""
_DEAD_STATES = frozenset(b"ZX")
"""``/proc/PID/stat`` states of a process that will never run again."""


class Liveness(enum.Enum):
    """What this host can tell about a lease's owner."""

    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class OwnerId:
    """The parts of a default owner id (see the module's docstring)."""

    host: str
    pid: int
    nonce: str
    start: Optional[int] = None
    boot: Optional[str] = None

    def __str__(self) -> str:
        owner = f"{self.host}:{self.pid}:{self.nonce}"
        if self.start is None or self.boot is None:
            return owner
        return f"{owner}:{self.start}:{self.boot}"

    @classmethod
    def parse(cls, owner: str) -> Optional[OwnerId]:
        """The parts of ``owner``, or None for an id of another form (opaque)."""
        match = _OWNER.fullmatch(owner)
        if match is None:
            return None
        start = match["start"]
        return cls(
            host=match["host"],
            pid=int(match["pid"]),
            nonce=match["nonce"],
            start=None if start is None else int(start),
            boot=match["boot"],
        )

    @classmethod
    def of_process(cls, pid: Optional[int] = None) -> OwnerId:
        """A fresh owner id for process ``pid`` (default: this one) on this host;
        without its start time or a boot id it cannot be proven dead later."""
        pid = os.getpid() if pid is None else pid
        boot = boot_fingerprint()
        found = _process_state(pid) if boot is not None else None
        return cls(
            host=socket.gethostname(),
            pid=pid,
            nonce=uuid.uuid4().hex[:8],
            start=None if found is None else found[1],
            boot=None if found is None else boot,
        )


def boot_fingerprint() -> Optional[str]:
    """16 hex digits naming this boot of this host and this process's PID and time
    namespaces, within which pids and start times compare; None without a boot id.
    """
    try:
        parts = [BOOT_ID.read_text().strip(), os.readlink("/proc/self/ns/pid")]
    except OSError:
        return None
    with contextlib.suppress(OSError):  # a kernel before 5.6 has no time namespaces
        parts.append(os.readlink("/proc/self/ns/time"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def liveness(owner: str) -> Liveness:
    """Whether the process named by ``owner`` is alive, provably dead, or unknown
    to this host."""
    found = OwnerId.parse(owner)
    if found is None or found.start is None or found.host != socket.gethostname():
        return Liveness.UNKNOWN
    # Only Linux has a boot id, so signal 0 below is only ever sent on Linux (on
    # Windows os.kill would terminate the process).
    if found.boot != boot_fingerprint():
        return Liveness.UNKNOWN
    try:
        os.kill(found.pid, 0)
    except ProcessLookupError:
        return Liveness.DEAD
    except PermissionError:
        pass  # it exists, under another user
    except (OSError, OverflowError):
        return Liveness.UNKNOWN
    state = _process_state(found.pid)
    if state is None:
        return Liveness.UNKNOWN  # gone a moment ago, or hidden (hidepid): no proof
    if state[1] != found.start or state[0] in _DEAD_STATES:
        return Liveness.DEAD
    return Liveness.ALIVE


def provably_dead(owner: str) -> bool:
    """True only if ``owner`` names a process of this host, boot and namespaces that
    has ended (see the module's docstring); anything uncertain is False."""
    return liveness(owner) is Liveness.DEAD


def describe(owner: str, verdict: Liveness) -> str:
    """``owner`` for a person: ``HOST pid PID (alive)`` and the like, or the id
    itself when it has no parts to show."""
    found = OwnerId.parse(owner)
    if found is None:
        return owner
    if verdict is not Liveness.UNKNOWN:
        note = verdict.value
    elif found.host != socket.gethostname():
        note = "another host"
    else:
        note = "not provably dead"
    return f"{found.host} pid {found.pid} ({note})"


def _process_state(pid: int) -> Optional[tuple[int, int]]:
    """The state letter (as a byte) and start time of a process, or None if its
    ``/proc/PID/stat`` cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return fields[0][0], int(fields[19])  # fields 3 and 22
    except (OSError, ValueError, IndexError):
        return None


class WaitNotice:
    """Says which leases a run waits for and until when: once, then every
    ``interval`` seconds while the wait lasts.

    Logged at INFO by this module's logger, which the CLI shows by default.
    """

    def __init__(
        self,
        interval: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._monotonic = monotonic
        self._said_at: Optional[float] = None

    def waiting(self, held: Sequence[Checkpoint], now: float) -> None:
        """The run waits for ``held`` (InProgress units); ``now`` is the store's
        clock (epoch seconds)."""
        said = self._said_at
        if said is not None and self._monotonic() - said < self.interval:
            return
        self._said_at = self._monotonic()
        logger.info("%s", waiting_message(held, now))

    def done(self) -> None:
        """Nothing is waited for any more: the next wait is told at once."""
        self._said_at = None


def waiting_message(held: Sequence[Checkpoint], now: float) -> str:
    """``waiting for 3 unit(s) leased by HOST pid PID (alive) until 12:04:05 UTC
    (in 290 s); ...``: the units grouped by owner, with the latest expiry of each,
    soonest first (the first few owners by name)."""
    expiries: dict[str, list[float]] = defaultdict(list)
    for cp in held:
        expiries[cp.owner or "?"].append(cp.lease_expires_at or now)
    owners = sorted(expiries.items(), key=lambda item: max(item[1]))
    groups = []
    for owner, ends in owners[:_OWNERS_NAMED]:
        until = max(ends)
        at = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S UTC")
        who = describe(owner, liveness(owner))
        groups.append(
            f"{len(ends)} unit(s) leased by {who} until {at} "
            f"(in {max(until - now, 0.0):.0f} s)"
        )
    if len(owners) > _OWNERS_NAMED:
        rest = owners[_OWNERS_NAMED:]
        units = sum(len(ends) for _, ends in rest)
        groups.append(f"{units} unit(s) of {len(rest)} other owner(s)")
    return f"waiting for {', '.join(groups)}; a lease not renewed by then is taken over"
