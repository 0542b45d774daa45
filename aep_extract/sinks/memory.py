"""An in-process sink: a dict of bytes behind a lock, for tests and pipelines' tests."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, BinaryIO, Optional

from ..errors import SinkError
from ..layout import check_key
from ..models import ObjectInfo
from ..registry import require_bare
from ._parts import (
    Part,
    check_complete,
    check_part,
    part_count,
    part_range,
    part_sha256,
)
from .base import PartWriter, Sink

logger = logging.getLogger(__name__)


class MemorySink(Sink):
    """Keeps objects in memory with the same atomic semantics as the real sinks.

    A write is buffered and stored when its block exits cleanly, so readers never see
    a partial object; on an error the buffer is dropped. Thread-safe.
    """

    @classmethod
    def check_url(cls, url: str) -> None:
        """``memory://``, with nothing after it."""
        require_bare("sink", url)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemorySink:
        """A new, empty sink for ``memory://``."""
        cls.check_url(url)
        return cls(**options)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, bytes] = {}
        self._metadata: dict[str, dict[str, str]] = {}
        self._uploads: dict[str, _MemoryParts] = {}

    @property
    def url(self) -> str:
        """``memory://``: every memory sink is one destination to a store (both
        live only as long as the process)."""
        return "memory://"

    def open_write(
        self,
        key: str,
        *,
        size: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open ``key`` for writing; the object appears only when the block succeeds.

        Raises:
            UnsafeKeyError: the key would escape its prefix.
            SinkError: ``size`` was given and a different number of bytes was written.
        """
        check_key(key)
        return self._write(key, size, dict(metadata or {}))

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open a stored object for reading.

        Raises:
            UnsafeKeyError: the key would escape its prefix.
            SinkError: no such object.
        """
        return io.BytesIO(self._get(key))

    def stat(self, key: str) -> Optional[ObjectInfo]:
        """Size and metadata of a stored object, or None."""
        check_key(key)
        with self._lock:
            data = self._objects.get(key)
            metadata = dict(self._metadata.get(key, {}))
        if data is None:
            return None
        return ObjectInfo(key=key, size=len(data), metadata=metadata)

    def open_parts(
        self,
        key: str,
        *,
        size: int,
        part_size: int,
        metadata: Optional[Mapping[str, str]] = None,
        resume: Optional[str] = None,
    ) -> PartWriter:
        """Write ``key`` in parts kept in memory until complete; ``resume`` reopens
        an upload of the same key, size and part size that this sink still holds.

        Raises:
            UnsafeKeyError: the key would escape its prefix.
        """
        check_key(key)
        with self._lock:
            upload = self._uploads.get(resume or "")
            if upload is None or (upload.key, upload.size, upload.part_size) != (
                key,
                size,
                part_size,
            ):
                upload = _MemoryParts(self, key, size, part_size, dict(metadata or {}))
                self._uploads[upload.token] = upload
            return upload

    def incomplete_uploads(self) -> list[str]:
        """Keys of the part uploads neither completed nor aborted (for tests)."""
        with self._lock:
            return sorted(upload.key for upload in self._uploads.values())

    def cleanup_incomplete(
        self, prefix: str = "", older_than: timedelta = timedelta(days=1)
    ) -> int:
        """Drop part uploads under ``prefix`` (all of them: the memory sink does
        not date them). Returns how many."""
        with self._lock:
            doomed = [t for t, u in self._uploads.items() if u.key.startswith(prefix)]
            for token in doomed:
                del self._uploads[token]
        return len(doomed)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key starting with ``prefix``, sorted."""
        with self._lock:
            keys = [key for key in self._objects if key.startswith(prefix)]
        return iter(sorted(keys))

    def metadata(self, key: str) -> dict[str, str]:
        """The metadata an object was written with.

        Raises:
            SinkError: no such object.
        """
        self._get(key)
        with self._lock:
            return dict(self._metadata.get(key, {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(objects={len(self._objects)})"

    def _get(self, key: str) -> bytes:
        check_key(key)
        with self._lock:
            data = self._objects.get(key)
        if data is None:
            raise SinkError(f"{self!r}: no object {key!r}")
        return data

    @contextlib.contextmanager
    def _write(
        self, key: str, size: Optional[int], metadata: dict[str, str]
    ) -> Iterator[BinaryIO]:
        buffer = io.BytesIO()
        yield buffer
        if buffer.closed:
            raise SinkError(f"{self!r}: {key!r}: the file was closed inside the block")
        data = buffer.getvalue()
        if size is not None and len(data) != size:
            raise SinkError(
                f"{self!r}: {key!r}: wrote {len(data)} bytes, expected {size}"
            )
        with self._lock:
            self._objects[key] = data
            self._metadata[key] = metadata
        logger.debug("wrote %s (%d bytes)", key, len(data))


class _MemoryParts(PartWriter):
    """Parts of one object in memory; visible in the sink once complete."""

    def __init__(
        self,
        sink: MemorySink,
        key: str,
        size: int,
        part_size: int,
        metadata: dict[str, str],
    ) -> None:
        self._sink = sink
        self.key = key
        self.size = size
        self.part_size = part_size
        self._metadata = metadata
        self._token = uuid.uuid4().hex
        self.parts: dict[int, bytes] = {}
        """The parts written, by number (tests may damage them)."""

    @property
    def token(self) -> str:
        """The upload's random id."""
        return self._token

    def write_part(self, number: int, data: Part) -> str:
        check_part(self.key, number, data, self.size, self.part_size)
        with self._sink._lock:
            self.parts[number] = bytes(data)
        return part_sha256(data)

    def resumable_parts(self, recorded: Mapping[int, str]) -> set[int]:
        with self._sink._lock:
            held = dict(self.parts)
        kept = set()
        for number, checksum in recorded.items():
            data = held.get(number)
            if data is None or not 1 <= number <= part_count(self.size, self.part_size):
                continue
            start, end = part_range(number, self.size, self.part_size)
            if len(data) == end - start and part_sha256(data) == checksum:
                kept.add(number)
        return kept

    def complete(self, checksums: Mapping[int, str]) -> None:
        check_complete(self.key, checksums, self.size, self.part_size)
        with self._sink._lock:
            if self._sink._uploads.get(self._token) is not self:
                raise SinkError(f"{self._sink!r}: the upload of {self.key!r} is gone")
            check_complete(self.key, self.parts, self.size, self.part_size)
            data = b"".join(self.parts[number] for number in sorted(self.parts))
            if len(data) != self.size:
                raise SinkError(
                    f"{self._sink!r}: {self.key!r}: parts hold {len(data)} bytes, "
                    f"expected {self.size}"
                )
            self._sink._objects[self.key] = data
            self._sink._metadata[self.key] = self._metadata
            del self._sink._uploads[self._token]

    def abort(self) -> None:
        with self._sink._lock:
            self._sink._uploads.pop(self._token, None)
