"""The writer of a cloud sink's object: bytes handed on in chunks (S3 parts, Azure
blocks), at most one chunk in memory, nothing visible before the subclass commits."""

from __future__ import annotations

import abc
import io
from typing import TYPE_CHECKING, Optional

from ..errors import SinkError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer  # exists only for type checkers


class ChunkedWriter(io.RawIOBase, abc.ABC):
    """Collects written bytes in a buffer of ``chunk_size`` and calls
    :meth:`_send_chunk` each time a full buffer is followed by more bytes, so the
    last chunk is never empty (and an object of one chunk can go in one request).

    The subclass sends ``self._buffer`` in :meth:`_send_chunk` and makes the object
    visible in its own commit; :meth:`close` only frees the buffer. Not
    thread-safe: one writer belongs to one ``with`` block.
    """

    def __init__(self, chunk_size: int, label: str) -> None:
        super().__init__()
        self._chunk_size = chunk_size
        self._label = label  # the sink-relative key, for messages
        self._buffer = io.BytesIO()
        self.written = 0

    @abc.abstractmethod
    def _send_chunk(self) -> None:
        """Send the buffer's bytes as the next chunk."""

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        if self.closed:
            raise ValueError(f"write to a finished writer of {self._label!r}")
        remaining = memoryview(data).cast("B")
        count = len(remaining)
        while remaining:
            if self._buffer.tell() >= self._chunk_size:
                self._send_chunk()
                self._buffer = io.BytesIO()  # the sent chunk's memory is released
            room = self._chunk_size - self._buffer.tell()
            self._buffer.write(remaining[:room])
            remaining = remaining[room:]
        self.written += count
        return count

    def tell(self) -> int:
        return self.written

    def close(self) -> None:
        # Frees the buffer; never commits: only the subclass's commit may make the
        # object visible.
        self._buffer = io.BytesIO()
        super().close()

    def _check_size(self, expected_size: Optional[int]) -> None:
        """Refuse to commit when the byte count differs from ``expected_size``.

        Raises:
            SinkError: it differs, or the file was closed inside its block.
        """
        if self.closed:
            raise SinkError(f"{self._label!r}: the file was closed inside the block")
        if expected_size is not None and self.written != expected_size:
            raise SinkError(
                f"{self._label!r}: wrote {self.written} bytes, expected {expected_size}"
            )
