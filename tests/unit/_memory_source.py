"""An in-memory AepSource for engine tests: batches and bytes from a dict."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

from aep_extract import AepSource, Batch, FileRef, NotFoundError, TimeWindow


class MemorySource(AepSource):
    """Serves ``batches``: batch -> {(dataSetFileId, name): content}.

    ``on_read(file)`` is called before each file is streamed, to inject failures.
    """

    def __init__(
        self,
        dataset_id: str,
        batches: Mapping[Batch, Mapping[tuple[str, str], bytes]],
        *,
        chunk: int = 7,
        on_read: Optional[Callable[[FileRef], None]] = None,
    ) -> None:
        self.dataset_id = dataset_id
        self.batches = dict(batches)
        self.chunk = chunk
        self.on_read = on_read
        self.reads: list[str] = []
        self._lock = threading.Lock()

    def get_dataset(self, dataset_id: str) -> Mapping[str, Any]:
        if dataset_id != self.dataset_id:
            raise NotFoundError(f"dataset {dataset_id} not found", status=404)
        return {"name": dataset_id}

    def list_batches(
        self, dataset_id: str, window: TimeWindow, *, status: Optional[str] = None
    ) -> Iterator[Batch]:
        for batch in sorted(self.batches, key=lambda b: b.created_ms):
            if batch.dataset_id == dataset_id and window.contains_ms(batch.created_ms):
                yield batch

    def list_files(self, batch_id: str) -> list[FileRef]:
        for batch, files in self.batches.items():
            if batch.batch_id == batch_id:
                refs = [
                    FileRef(dataset_file_id=fid, name=name, length=len(content))
                    for (fid, name), content in files.items()
                ]
                return sorted(refs, key=lambda f: f.sort_key)
        raise NotFoundError(f"batch {batch_id} not found", status=404)

    def read_file(self, file: FileRef, start: int = 0) -> Iterator[bytes]:
        if self.on_read is not None:
            self.on_read(file)
        with self._lock:
            self.reads.append(file.name)
        content = self.content(file)
        for pos in range(start, len(content), self.chunk):
            yield content[pos : pos + self.chunk]

    def content(self, file: FileRef) -> bytes:
        for files in self.batches.values():
            if (file.dataset_file_id, file.name) in files:
                return files[(file.dataset_file_id, file.name)]
        raise NotFoundError(f"file {file.name} not found", status=404)
