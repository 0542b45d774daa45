"""A custom Sink: wrap any sink to count and log what it stores.

Shows the three methods a :class:`aep_extract.Sink` must implement (``open_write``,
``open_read``, ``stat``) plus the optional ones, by delegation: atomicity (an object is
visible only when whole, a failed write leaves nothing) comes from the wrapped sink.
Only completed writes are counted, because the count happens after the wrapped
sink's ``with`` block exits cleanly. Put your metrics call (CloudWatch, StatsD) there.

The script extracts the fake platform's sample dataset through the wrapper, checks
that it stored one object per file plus one manifest per batch, and that a rerun
stores nothing. Exits 0 on success.

Run: ``python examples/custom_sink.py``
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import BinaryIO, Optional

from aep_extract import (
    Extractor,
    HttpAepSource,
    LocalSink,
    MemoryCheckpointStore,
    ObjectInfo,
    Sink,
    TimeWindow,
)
from aep_extract.testing import FakeAepPlatform

logger = logging.getLogger("custom_sink")


class CountingSink(Sink):
    """Delegates to ``inner`` and counts the objects and bytes it stored."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.objects = 0
        self.bytes = 0
        self._lock = threading.Lock()  # writes complete on many worker threads

    def open_write(
        self,
        key: str,
        *,
        size: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._write(key, size, metadata)

    @contextlib.contextmanager
    def _write(
        self, key: str, size: Optional[int], metadata: Optional[Mapping[str, str]]
    ) -> Iterator[BinaryIO]:
        with self.inner.open_write(key, size=size, metadata=metadata) as out:
            yield out
        # Reached only when the inner sink has made the object visible.
        stored = self.inner.stat(key)
        with self._lock:
            self.objects += 1
            self.bytes += stored.size if stored else 0
        logger.info("stored %s", key)

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.inner.open_read(key)

    def stat(self, key: str) -> Optional[ObjectInfo]:
        return self.inner.stat(key)

    # Optional methods: delegate them too, so the inner sink's versions (S3Sink's
    # stored-checksum sha256, LocalSink's case folding on macOS) keep working.
    def list_keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list_keys(prefix)

    def key_identity(self, key: str) -> str:
        return self.inner.key_identity(key)

    def sha256(self, key: str) -> str:
        return self.inner.sha256(key)

    def close(self) -> None:
        self.inner.close()


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    dataset = FakeAepPlatform.DEMO_DATASET_ID
    start, end = FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END
    with FakeAepPlatform.generate() as platform, tempfile.TemporaryDirectory() as tmp:
        sink = CountingSink(LocalSink(tmp))
        source = HttpAepSource.from_env(platform.env())
        store = MemoryCheckpointStore()
        with source, Extractor(source, store=store, sink=sink) as extractor:
            report = extractor.run(dataset, start, end)
            first = sink.objects
            extractor.run(dataset, start, end)  # a rerun stores nothing new
        window = TimeWindow.parse(start, end)
        files = platform.expected_files(dataset, window.start_ms, window.end_ms)
        batches = {batch.batch_id for batch, _, _ in files}
        print(report)
        print(
            f"{sink.objects} objects ({len(files)} files + {len(batches)} manifests), "
            f"{sink.bytes} bytes; the rerun stored {sink.objects - first}"
        )
        ok = sink.objects == first == len(files) + len(batches)
        return 0 if report.ok and ok else 1


if __name__ == "__main__":
    sys.exit(main())
