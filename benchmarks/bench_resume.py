"""Kill -9 at about 90 % of one huge file, then rerun: how much is served again.

Run by hand, never in CI:

    python benchmarks/bench_resume.py                 # 4 GiB, 25 MB/s a connection
    python benchmarks/bench_resume.py --gib 1 --workers 4

The fake platform (in this process) serves one file of ``--gib`` GiB, generated as
it is served, each connection held to ``--bandwidth`` bytes/s. ``aep-extract run``
(default settings: 8 MiB parts, in parts from 16 MiB) copies it into a local
directory with a SQLite store; this script watches the unit's progress record and
kills the run with SIGKILL once it lists 90 % of the parts, then runs the same
command to the end. It prints the bytes the fake served beyond one clean copy, in
parts' worth, the time of each run and the peak RSS of the runs. Figures go into
docs/performance.rst.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
PART = 8 * MIB  # ConcurrencyConfig's default part size


def parts_recorded(db: Path) -> int:
    """Parts the store's progress records list (0 before there are any)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT Progress FROM units WHERE Progress IS NOT NULL"
            ).fetchall()
    except sqlite3.Error:  # not created yet
        return 0
    return sum(
        len(entry["d"]) for (text,) in rows for entry in json.loads(text)["files"]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--bandwidth", type=float, default=25e6, help="bytes/s")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--at", type=float, default=0.9, help="fraction of parts")
    options = parser.parse_args()

    from aep_extract.testing import FakeAepPlatform

    size = int(options.gib * GIB)
    platform = FakeAepPlatform.generate(
        batches=5,  # the fifth holds the large file
        files_per_batch=2,
        max_file_size=16 * 1024,
        large_file_size=size,
        bandwidth=options.bandwidth,
    )
    work = Path(tempfile.mkdtemp(prefix="aep-resume-"))
    db = work / "state.db"
    command = [
        sys.executable,
        "-m",
        "aep_extract",
        "run",
        "--dataset",
        FakeAepPlatform.DEMO_DATASET_ID,
        "--start",
        FakeAepPlatform.DEMO_START,
        "--end",
        FakeAepPlatform.DEMO_END,
        "--store",
        f"sqlite:///{db}",
        "--sink",
        str(work / "out"),
        "--workers",
        str(options.workers),
    ]
    with platform:
        env = {**os.environ, **platform.env()}
        parts = -(-size // PART)
        kill_at = int(options.at * parts)
        started = time.monotonic()
        first = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        recorded = 0
        while first.poll() is None:
            recorded = parts_recorded(db)
            if recorded >= kill_at:
                first.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        first.wait()
        killed_after = time.monotonic() - started
        served_first = platform.bytes_served
        started = time.monotonic()
        second = subprocess.run(command, env=env, capture_output=True, text=True)
        rerun_seconds = time.monotonic() - started
        served = platform.bytes_served
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    total = sum(  # what one clean run serves: every copied file once
        path.stat().st_size
        for path in (work / "out").rglob("*")
        if path.is_file() and path.name != "_manifest.json"
    )
    again = served - total
    print(f"file: {size / GIB:g} GiB in {parts} parts of 8 MiB; {total} bytes in all")
    print(
        f"killed after {killed_after:.1f} s with {recorded} parts recorded "
        f"({served_first / 1e6:.0f} MB served: {served_first / killed_after / 1e6:.0f}"
        " MB/s)"
    )
    print(f"rerun: exit {second.returncode} in {rerun_seconds:.1f} s")
    print(
        f"served again: {again} bytes = {again / PART:.1f} parts' worth "
        f"({again / total:.2%} of the file)"
    )
    print(f"peak RSS of the runs: {rss:.0f} MiB")
    large = max(
        platform.expected_files(FakeAepPlatform.DEMO_DATASET_ID, 0, 2**62),
        key=lambda item: item[2].length,
    )[2]
    out = next((work / "out").rglob(large.name), None)
    exact = out is not None and _sha256(out) == large.sha256()
    print(f"the copied file is {'exact' if exact else 'WRONG'}")
    if second.returncode != 0:
        print(second.stderr[-2000:])
    return 0 if second.returncode == 0 and exact else 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
