"""An in-process sink: a dict of bytes behind a lock, for tests and pipelines' tests."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, Optional

from ..errors import SinkError
from ..layout import check_key
from ..models import ObjectInfo
from ..registry import require_bare
from .base import Sink

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
