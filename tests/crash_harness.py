"""Kill ``aep-extract run`` with SIGKILL at random moments, then let a run finish.

Used by the crash tests; also runnable by hand for a long soak::

    AEP_CRASH_KILLS=200 pytest tests/e2e/test_crash.py tests/aws/test_crash_aws.py -s
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

DEFAULT_KILLS = 6
"""Kills per crash test in CI; ``AEP_CRASH_KILLS`` makes the test longer."""

FAULTS = "seed=11,429=0.04,503=0.03,reset=0.03@download,truncate=0.02@download"
"""Faults the fake platform serves during the crash tests."""


CRASH_CATALOG: dict[str, Any] = {
    "batches": 30,
    "files_per_batch": 4,
    "max_file_size": 256 * 1024,
    "large_file_size": 12 * 1024 * 1024,
}
"""Enough work that most kills land mid-run, small enough for CI."""


@attrs.define
class CrashResult:
    kills: int = 0
    exited_early: int = 0
    crash_failed: int = 0
    final_exit: int = -1
    final_output: str = ""


def kills_wanted() -> int:
    return int(os.environ.get("AEP_CRASH_KILLS", DEFAULT_KILLS))


MULTISTREAM = {"part_size": 64 * 1024}
"""Knobs of the crash runs (``tests.multistream_cli``): parts of 64 KiB, so every
file from 128 KiB on is copied in parts, and kills land mid-upload."""


def run_with_kills(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    kills: int,
    seed: int,
    module: str = "aep_extract.cli",
) -> CrashResult:
    """Start the CLI (``python -m module``) ``kills`` times, SIGKILL each at a
    random moment, then once more to the end; returns what happened."""
    rng = random.Random(seed)
    cli = [sys.executable, "-m", module]
    command = [*cli, *args]
    result = CrashResult()
    for _ in range(kills):
        process = subprocess.Popen(
            command,
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.5))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            result.kills += 1
        else:
            result.exited_early += 1
        process.wait(timeout=30)
    # A unit in flight at every kill is taken over at once each time (the killed
    # runs are provably dead) and counts a crash each time: after unit_crashes
    # kills it is Failed, as a unit that kills its workers should be. These kills
    # are the test's, so put such units back, as an operator would.
    retry = subprocess.run(
        [*cli, "retry-failed", "--json", *_options(args, "--dataset", "--store")],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result.crash_failed = json.loads(retry.stdout)["unitsMoved"]
    final = subprocess.run(
        command, env=dict(env), capture_output=True, text=True, timeout=600
    )
    result.final_exit = final.returncode
    result.final_output = final.stdout + final.stderr
    return result


def _options(args: Sequence[str], *names: str) -> list[str]:
    """The options ``names`` of a command line, each with its value."""
    return [
        part
        for flag, value in zip(args, args[1:])
        if flag in names
        for part in (flag, value)
    ]
