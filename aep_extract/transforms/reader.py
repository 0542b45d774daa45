"""The source side of a transform: a length-checked stream, and the call that runs a
transform on one file."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, Optional, cast

from ..errors import IncompleteDownload, TransformError
from ..models import TransformOutput
from ..sinks.base import Sink
from .base import Outputs, Transform, TransformContext


class CountingReader(io.RawIOBase):
    """A readable binary stream over a download's chunks, checked against the
    listed length.

    Reading past the end of a stream shorter than ``length`` raises, and so does
    the first byte beyond ``length``: a transform never sees more or fewer bytes
    than the file is listed with. :meth:`check_complete` tells whether the whole
    stream was read and matched.

    Args:
        chunks: the file's bytes, in order (``AepSource.read_file``'s iterator).
        length: the listed length.
        name: how errors name the file.
    """

    def __init__(self, chunks: Iterable[bytes], length: int, name: str) -> None:
        super().__init__()
        self._chunks: Iterator[bytes] = iter(chunks)
        self._source = chunks
        self._length = length
        self._name = name
        self._pending = memoryview(b"")
        self._digest = hashlib.sha256()
        self._ended = False
        self.size = 0
        """Bytes read so far."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the stream; 0 at its end.

        Raises:
            IncompleteDownload: the stream ended short of, or ran past, its length.
        """
        while not self._pending and not self._ended:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._ended = True
                if self.size < self._length:
                    raise IncompleteDownload(
                        f"{self._name}: got {self.size} of {self._length} bytes"
                    )
            elif chunk:
                if self.size + len(chunk) > self._length:
                    raise IncompleteDownload(
                        f"{self._name}: more than the listed {self._length} bytes"
                    )
                self._pending = memoryview(chunk)
                self._digest.update(chunk)
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self.size += count
        return count

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes read so far (of the whole file once complete)."""
        return self._digest.hexdigest()

    def check_complete(self) -> None:
        """Confirm the whole stream was read and had the listed length.

        Raises:
            TransformError: the reader stopped before the listed length.
            IncompleteDownload: the stream holds more than the listed length.
        """
        if self.size < self._length:
            raise TransformError(
                f"{self._name}: the transform read {self.size} of {self._length} "
                "bytes before committing an output; read the source to its end first"
            )
        if not self._ended:
            self.read(1)  # the end, or IncompleteDownload for a byte past it

    def close(self) -> None:
        """Close the stream and the download (giving back its connection)."""
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        super().close()


def run_transform(
    transform: Transform,
    chunks: Iterable[bytes],
    context: TransformContext,
    sink: Sink,
    *,
    metadata: Optional[Mapping[str, str]] = None,
) -> list[TransformOutput]:
    """Run ``transform`` on one file's bytes and put its outputs in ``sink``.

    Every output is committed only once the source was read whole and matched
    ``context.file.length``; on any error, no output of this call is left
    half-written (an output committed before the error stays, whole, and is
    rewritten by a rerun).

    Args:
        transform: the transform.
        chunks: the file's bytes (``AepSource.read_file(context.file)``); closed at
            the end if it has ``close``.
        context: the file, its unit and the key it would have had.
        sink: where the outputs go.
        metadata: stored with every output.

    Returns:
        The outputs, ordered as the transform's suffixes.

    Raises:
        IncompleteDownload: the source was shorter or longer than listed.
        TransformError: the file could not be transformed, or the transform broke
            its contract.
    """
    file = context.file
    with CountingReader(
        chunks, file.length, f"{file.dataset_file_id}/{file.name}"
    ) as reader:
        out = Outputs(
            sink,
            context.key,
            transform.suffixes,
            check_source=reader.check_complete,
            metadata=metadata,
        )
        transform.apply(cast("BinaryIO", reader), context, out)
        return out.finish()
