"""Kill ``aep-extract run`` while it copies a large file in parts, at about 90 %,
then rerun: the rerun resumes the dead process's upload and fetches only what is
missing. Shared by the local/SQLite and the S3/DynamoDB tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

import attrs

from aep_extract import (
    AepSource,
    CheckpointStore,
    ConcurrencyConfig,
    Extractor,
    ExtractorConfig,
    FileRef,
    HttpAepSource,
    Sink,
    ThreadPoolScheduler,
)
from aep_extract.testing import FakeAepPlatform, FakeRequest

from .e2e.helpers import DATASET, expected_tree

PART_SIZE = 256 * 1024
LARGE_FILE = 32 * PART_SIZE
KNOBS = {"part_size": PART_SIZE, "max_parts_per_file": 1}
"""One part of a file in flight at a time, so the kill lands between two parts."""
CATALOG: dict[str, Any] = {
    "batches": 5,
    "files_per_batch": 2,
    "max_file_size": 16 * 1024,
    "large_file_size": LARGE_FILE,
}
"""Four batches of small files and one (the fifth) with the large file."""
BANDWIDTH = 2 * 1024 * 1024
"""Bytes per second each connection of the fake carries: a part takes 1/8 s, so
the kill lands at 90 %, most likely in the middle of a part's body."""
MULTISTREAM_CLI = [sys.executable, "-m", "tests.multistream_cli"]


def large_name(platform: FakeAepPlatform) -> str:
    """The name of the large file of the demo window."""
    window = (0, 2**62)
    (name,) = {
        fake.name
        for _, _, fake in platform.expected_files(DATASET, *window)
        if fake.length == LARGE_FILE
    }
    return name


def is_part_of(request: FakeRequest, name: str) -> bool:
    """A ranged GET of the named file."""
    return "/export/files/" in request.path and (
        request.query.get("path") == name or request.path.endswith(f"/{name}")
    )


def bytes_asked(platform: FakeAepPlatform, name: str) -> int:
    """File bytes of ``name`` the fake answered with a success: the sum of the
    answered ranges (a body cut by the kill counts whole: an upper bound)."""
    total = 0
    for request in platform.requests:
        if request.status in (200, 206) and is_part_of(request, name):
            first, _, last = (
                request.headers["Range"].removeprefix("bytes=").partition("-")
            )
            total += int(last) - int(first) + 1
    return total


def parts_recorded(progress: Optional[str]) -> int:
    """Parts a unit's progress record lists (0 for none)."""
    if not progress:
        return 0
    return sum(len(entry["d"]) for entry in json.loads(progress)["files"])


@attrs.define
class KillAt90:
    kill_at_parts: int = 0
    recorded_at_kill: int = 0
    asked_before: int = 0
    asked_after: int = 0
    served: int = 0
    """File bytes the fake served over both runs (``bytes_served``)."""
    total: int = 0
    """File bytes of the window: what one clean run serves."""
    final: Optional[subprocess.CompletedProcess[str]] = None

    @property
    def transferred_again(self) -> int:
        """File bytes served more than once over both runs."""
        return self.served - self.total

    @property
    def large_asked_again(self) -> int:
        """Bytes of the large file asked for more than once (answered ranges)."""
        return self.asked_before + self.asked_after - LARGE_FILE


def kill_at_90_then_rerun(
    platform: FakeAepPlatform,
    args: list[str],
    env: Mapping[str, str],
    progress: Callable[[], Optional[str]],
) -> KillAt90:
    """Run, SIGKILL once the store records 90 % of the large file's parts, run
    again to the end. ``progress`` reads the large file's unit's record; the
    platform should limit its bandwidth (:data:`BANDWIDTH`)."""
    name = large_name(platform)
    env = {**env, "AEP_TEST_CONCURRENCY": json.dumps(KNOBS)}
    result = KillAt90(
        kill_at_parts=int(0.9 * (LARGE_FILE // PART_SIZE)),
        total=sum(len(content) for content in expected_tree(platform).values()),
    )
    platform.reset_bytes_served()
    process = subprocess.Popen(
        [*MULTISTREAM_CLI, *args],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            recorded = parts_recorded(progress())
            if recorded >= result.kill_at_parts:
                process.send_signal(signal.SIGKILL)
                result.recorded_at_kill = recorded
                break
            time.sleep(0.01)
    finally:
        if process.poll() is None and not result.recorded_at_kill:
            process.kill()
        process.wait(timeout=30)
    result.asked_before = bytes_asked(platform, name)
    platform.clear_requests()
    result.final = subprocess.run(
        [*MULTISTREAM_CLI, "-v", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    result.asked_after = bytes_asked(platform, name)
    result.served = platform.bytes_served
    return result


class PartReads:
    """Wraps a source's ``read_file`` to see ranged reads (parts) as they run: the
    most at once, per file and in all, and the first byte of each."""

    def __init__(self, source: AepSource) -> None:
        self._read = source.read_file
        self._lock = threading.Lock()
        self._now: Counter[str] = Counter()
        self.peak_per_file = 0
        self.peak_total = 0
        self.starts: dict[str, list[int]] = defaultdict(list)
        self.on_part: Optional[Callable[[FileRef], None]] = None
        source.read_file = self  # type: ignore[method-assign]

    def __call__(
        self, file: FileRef, start: int = 0, end: Optional[int] = None
    ) -> Iterator[bytes]:
        if end is None:
            return self._read(file, start, end)
        return self._part(file, start, end)

    def _part(self, file: FileRef, start: int, end: int) -> Iterator[bytes]:
        with self._lock:
            self._now[file.name] += 1
            self.starts[file.name].append(start)
            self.peak_per_file = max(self.peak_per_file, self._now[file.name])
            self.peak_total = max(self.peak_total, sum(self._now.values()))
        try:
            if self.on_part is not None:
                self.on_part(file)
            yield from self._read(file, start, end)
        finally:
            with self._lock:
                self._now[file.name] -= 1


MANY_IN_PARTS: dict[str, Any] = {
    "batches": 6,
    "files_per_batch": 4,
    "max_file_size": 512 * 1024,
    "large_file_size": 2 * 1024 * 1024,
}
"""A catalog where parts of 64 KiB split most files (from 128 KiB on)."""


def extractor_in_parts(
    platform: FakeAepPlatform, store: CheckpointStore, sink: Sink, **knobs: int
) -> tuple[Extractor, PartReads]:
    """An extractor over real HTTP copying files in parts (PART_SIZE unless
    ``knobs`` say otherwise) with 6 workers, and its part reads."""
    knobs = {"part_size": PART_SIZE, **knobs}
    concurrency = ConcurrencyConfig(workers=6, **knobs)
    source = HttpAepSource.from_env(platform.env(), concurrency=concurrency)
    reads = PartReads(source)
    extractor = Extractor(
        source,
        store=store,
        sink=sink,
        scheduler=ThreadPoolScheduler(concurrency.workers),
        config=ExtractorConfig(concurrency=concurrency),
    )
    return extractor, reads
