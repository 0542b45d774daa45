"""The work of the scheduler's threads: list a batch, copy one file, or write one
manifest.

These read the source and write the sink only; every checkpoint write stays on the
engine's loop thread. Each task runs as work the run's abort event aborts
(:func:`~aep_extract._cancel.abortable`): once the run aborts, a task's failure is
reported as :class:`CopyAborted`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any, Callable, TypeVar

from ._cancel import abortable
from ._logging import log_context
from .errors import IncompleteDownload
from .layout import KeyLayout
from .models import FileCopy, FileRef, WorkUnit
from .sinks.base import Sink
from .sources.base import AepSource

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class CopyAborted(Exception):
    """A copy was interrupted by ``Extractor.stop(abort=True)``; nothing is kept."""


def describe(exc: BaseException) -> str:
    """One line naming an error's type and message, for the store and the report."""
    return f"{type(exc).__name__}: {exc}"


def _task(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a :class:`FileTasks` method as abortable work of the run."""

    @functools.wraps(method)
    def run(self: FileTasks, *args: Any) -> _T:
        with self.aborting():
            return method(self, *args)

    return run


class FileTasks:
    """Lists batches, copies files from a source to a sink, writes manifests."""

    def __init__(
        self,
        source: AepSource,
        sink: Sink,
        layout: KeyLayout,
        abort_event: threading.Event,
    ) -> None:
        self.source = source
        self.sink = sink
        self.layout = layout
        self.abort_event = abort_event

    @contextlib.contextmanager
    def aborting(self) -> Iterator[None]:
        """Run the block as abortable work; once aborted, any failure is
        :class:`CopyAborted`."""
        try:
            with abortable(self.abort_event):
                yield
        except CopyAborted:
            raise
        except Exception as exc:
            if self.abort_event.is_set():
                raise CopyAborted(f"aborted: {describe(exc)}") from exc
            raise

    @_task
    def list_files(self, unit: WorkUnit) -> list[FileRef]:
        """The listing of the unit's batch."""
        return self.source.list_files(unit.batch_id)

    @_task
    def fetch(
        self, unit: WorkUnit, offset: int, file: FileRef, key: str, recorded: bool
    ) -> tuple[FileCopy, bool]:
        """Make sure one file is in the sink; True when this call copied it.

        An object already at its key with the listed size was written whole by an
        earlier run (objects appear only when complete): it is checksummed from the
        sink for the manifest instead of being downloaded again.
        """
        info = self.sink.stat(key)
        if info is not None and info.size == file.length:
            logger.debug("%s already in the sink", key, extra=log_context(unit, file))
            return _file_copy(offset, file, key, self.sink.sha256(key)), False
        if recorded:
            logger.warning(
                "%s is recorded as copied but missing; copying again",
                key,
                extra=log_context(unit, file),
            )
        return self.copy(unit, offset, file, key), True

    def copy(self, unit: WorkUnit, offset: int, file: FileRef, key: str) -> FileCopy:
        """Stream one file from the source into the sink, checksumming it."""
        digest = hashlib.sha256()
        size = 0
        metadata = {
            "aep-dataset-id": unit.dataset_id,
            "aep-batch-id": unit.batch_id,
            "aep-dataset-file-id": file.dataset_file_id,
        }
        chunks = self.source.read_file(file)
        try:
            with self.sink.open_write(key, size=file.length, metadata=metadata) as out:
                for chunk in chunks:
                    if self.abort_event.is_set():
                        raise CopyAborted(f"{key}: copy aborted by a stop")
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                if size != file.length:
                    raise IncompleteDownload(
                        f"{file.dataset_file_id}/{file.name}: got {size} of "
                        f"{file.length} bytes"
                    )
        finally:
            # An abandoned download gives back its connection and rate-limit slot.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        logger.debug(
            "copied %s (%d bytes) to %s",
            file.name,
            size,
            key,
            extra=log_context(unit, file, key),
        )
        return _file_copy(offset, file, key, digest.hexdigest())

    @_task
    def write_manifest(self, unit: WorkUnit, copies: list[FileCopy]) -> None:
        """Write the manifest of a unit whose files are all in, in offset order."""
        manifest: dict[str, Any] = {
            "datasetId": unit.dataset_id,
            "batchId": unit.batch_id,
            "offsetRange": unit.offset_range,
            "batchCreated": unit.batch_created_ms,
            "fileCount": len(copies),
            "totalBytes": sum(c.size for c in copies),
            "files": [c.to_json() for c in copies],
        }
        data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
        self.sink.write_bytes(self.layout.manifest_key(unit), data)


def _file_copy(offset: int, file: FileRef, key: str, sha256: str) -> FileCopy:
    return FileCopy(
        offset=offset,
        dataset_file_id=file.dataset_file_id,
        name=file.name,
        key=key,
        size=file.length,
        sha256=sha256,
    )
