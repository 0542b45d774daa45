"""Start-up: ``import aep_extract`` and ``aep-extract --help``, best of N fresh runs.

Run by hand, never in CI, with the interpreter to measure (the package installed):

    python benchmarks/bench_startup.py            # 20 runs of each
    python benchmarks/bench_startup.py --runs 50

Each run is a new process, timed from outside with ``time.perf_counter`` around
``subprocess.run``; the best run is the figure (the others measure a busy machine),
the median is printed beside it. ``import`` is also measured from inside, with
``python -X importtime``: the cumulative microseconds of ``aep_extract``, best of
the runs, and the modules it pulls in that a plain ``import`` should not need.
Figures go into docs/performance.rst.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("aep-extract")
"""The console script installed beside the interpreter."""
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import aep_extract": [sys.executable, "-c", "import aep_extract"],
    "aep-extract --help": [str(SCRIPT), "--help"],
}
HEAVY = ("requests", "urllib3", "boto3", "botocore", "tenacity", "tqdm")
"""Modules a bare ``import aep_extract`` must not import."""


def wall(command: list[str], runs: int) -> list[float]:
    """Seconds of each of ``runs`` fresh runs of ``command``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def import_time_us(runs: int) -> int:
    """Best cumulative ``-X importtime`` microseconds of ``aep_extract``."""
    best = None
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import aep_extract"],
            check=True,
            capture_output=True,
            text=True,
        )
        for line in result.stderr.splitlines():
            fields = [field.strip() for field in line.split("|")]
            if len(fields) == 3 and fields[2] == "aep_extract":
                cumulative = int(fields[1])
                best = cumulative if best is None else min(best, cumulative)
    assert best is not None, "no importtime line for aep_extract"
    return best


def heavy_imports() -> list[str]:
    """The :data:`HEAVY` modules that ``import aep_extract`` imports."""
    code = (
        "import sys, aep_extract; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    return result.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} ({sys.executable}), {args.runs} runs")
    if not SCRIPT.exists():
        sys.exit(f"{SCRIPT} not found: install the package into this interpreter")
    for name, command in COMMANDS.items():
        times = wall(command, args.runs)
        print(
            f"{name:20} best {min(times) * 1000:6.1f} ms"
            f"   median {statistics.median(times) * 1000:6.1f} ms"
        )
    best_us = import_time_us(args.runs)
    print(f"-X importtime aep_extract: {best_us / 1000:.1f} ms (best)")
    print(f"heavy modules imported: {' '.join(heavy_imports()) or 'none'}")


if __name__ == "__main__":
    main()
