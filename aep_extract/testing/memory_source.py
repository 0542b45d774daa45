"""An AepSource serving batches and bytes from memory: for tests without HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

from ..errors import ConfigError, IncompleteDownload, InvalidResponse, NotFoundError
from ..models import Batch, FileRef, TimeWindow
from ..sources.base import AepSource, check_range

__all__ = ["MemoryAepSource"]

Files = Mapping[tuple[str, str], bytes]
"""The files of a batch: ``(dataSetFileId, name) -> content``."""

DEFAULT_CHUNK_SIZE = 64 * 1024
"""Largest bytes object :meth:`MemoryAepSource.read_file` yields by default."""


class MemoryAepSource(AepSource):
    """Serves a dataset's batches and their files from a dict; thread-safe.

    It keeps the :class:`~aep_extract.AepSource` contract
    (:class:`~aep_extract.testing.contracts.AepSourceContract`), so an extractor
    runs on it exactly as on the platform, minus the network::

        batch = Batch(batch_id="b1", dataset_id="ds", status="success",
                      created_ms=1718000000000)
        source = MemoryAepSource("ds", {batch: {("b1-1", "part-0.parquet"): b"..."}})

    Args:
        dataset_id: the dataset :meth:`get_dataset` knows.
        batches: each batch and its files, ``(dataSetFileId, name) -> content``.
            A batch of another dataset is listed only for that dataset.
        chunk_size: largest bytes object :meth:`read_file` yields.
        on_read: called with the file before each :meth:`read_file` streams
            (raise from it to inject a failure).

    Raises:
        ConfigError: ``chunk_size`` is not a positive integer.

    Attributes:
        batches: the served batches; change them between calls (add, remove,
            replace a batch with an ``attrs.evolve``-d one) as days pass on a
            real Catalog.
        reads: names of the files read so far, in order.
    """

    def __init__(
        self,
        dataset_id: str,
        batches: Optional[Mapping[Batch, Files]] = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_read: Optional[Callable[[FileRef], None]] = None,
    ) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise ConfigError(f"chunk_size must be an integer, not {chunk_size!r}")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be 1 or more, not {chunk_size}")
        self.dataset_id = dataset_id
        self.batches: dict[Batch, Files] = dict(batches or {})
        self.chunk_size = chunk_size
        self.on_read = on_read
        self.reads: list[str] = []
        self._lock = threading.Lock()

    def get_dataset(self, dataset_id: str) -> Mapping[str, Any]:
        """``{"name": dataset_id}`` for the dataset.

        Raises:
            NotFoundError: another dataset.
        """
        if dataset_id != self.dataset_id:
            raise NotFoundError(f"dataset {dataset_id} not found", status=404)
        return {"name": dataset_id}

    def list_batches(
        self, dataset_id: str, window: TimeWindow, *, status: Optional[str] = None
    ) -> Iterator[Batch]:
        """The dataset's batches created in ``window`` (with ``status``, if given),
        oldest first, then by id."""
        batches = sorted(self.batches, key=lambda b: (b.created_ms, b.batch_id))
        for batch in batches:
            if (
                batch.dataset_id == dataset_id
                and window.contains_ms(batch.created_ms)
                and (status is None or batch.status == status)
            ):
                yield batch

    def list_files(self, batch_id: str) -> list[FileRef]:
        """The batch's files, sorted by :attr:`FileRef.sort_key
        <aep_extract.FileRef.sort_key>`.

        Raises:
            NotFoundError: no such batch.
        """
        refs = [
            FileRef(dataset_file_id=file_id, name=name, length=len(content))
            for (file_id, name), content in self._files(batch_id).items()
        ]
        return sorted(refs, key=lambda ref: ref.sort_key)

    def read_file(
        self, file: FileRef, start: int = 0, end: Optional[int] = None
    ) -> Iterator[bytes]:
        """Stream the file from byte ``start`` to ``end`` (exclusive; None: its end)
        in pieces of ``chunk_size`` bytes.

        Raises:
            ConfigError: ``start`` outside ``[0, file.length]``, or ``end`` outside
                ``[start, file.length]``.
            NotFoundError: no such file.
            IncompleteDownload: the file holds fewer bytes than ``file.length``.
            InvalidResponse: it holds more.
        """
        return self._stream(file, start, check_range(file, start, end))

    def _stream(self, file: FileRef, start: int, stop: int) -> Iterator[bytes]:
        content = self.content(file)
        if len(content) > file.length:
            raise InvalidResponse(
                f"{file.name}: {len(content)} bytes, {file.length} announced"
            )
        if self.on_read is not None:
            self.on_read(file)
        with self._lock:
            self.reads.append(file.name)
        available = min(stop, len(content))
        for pos in range(start, available, self.chunk_size):
            yield content[pos : min(pos + self.chunk_size, available)]
        if available < stop:
            raise IncompleteDownload(
                f"{file.name}: read {len(content)} of {file.length} bytes"
            )

    def content(self, file: FileRef) -> bytes:
        """The whole content of a file of any batch.

        Raises:
            NotFoundError: no such file.
        """
        key = (file.dataset_file_id, file.name)
        for files in list(self.batches.values()):
            if key in files:
                return files[key]
        raise NotFoundError(
            f"file {file.name!r} of {file.dataset_file_id} not found", status=404
        )

    def _files(self, batch_id: str) -> Files:
        for batch, files in list(self.batches.items()):
            if batch.batch_id == batch_id:
                return files
        raise NotFoundError(f"batch {batch_id} not found", status=404)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.dataset_id!r}, batches={len(self.batches)})"
        )
