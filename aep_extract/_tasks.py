"""The work of the scheduler's threads: list a batch, copy one file, or write one
manifest.

These read the source and write the sink only; every checkpoint write stays on the
engine's loop thread. Each task runs within the run's scope
(:func:`~aep_extract._run.within`): the source reports its retries and counts to that
run, and once the run aborts, a task's failure is reported as :class:`CopyAborted`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional, TypeVar, Union
from urllib.parse import quote

from ._jobs import OrderedHasher, PartedFile, RecordedFile
from ._logging import log_context
from ._run import RunScope, within
from .errors import IncompleteDownload
from .layout import KeyLayout
from .models import FileCopy, FileRef, TransformOutput, WorkUnit
from .sinks._parts import part_range
from .sinks.base import Sink
from .sources.base import AepSource
from .transforms.base import Transform, TransformContext, output_keys
from .transforms.reader import run_transform

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


_MAX_METADATA_VALUE = 512
"""Longer values are stored as their digest: S3 allows 2 KB of metadata in all."""


def source_metadata(
    unit: WorkUnit, file: FileRef, transform: Optional[str] = None
) -> dict[str, str]:
    """The metadata a copied file carries to prove which source file it is (and,
    for a transform's output, which transform made it).

    Values are the UTF-8 ids and name, percent-encoded (S3 metadata is ASCII);
    a value longer than 512 characters so encoded is ``sha256:`` and its digest.
    """
    values = {
        "aep-dataset-id": unit.dataset_id,
        "aep-batch-id": unit.batch_id,
        "aep-dataset-file-id": file.dataset_file_id,
        "aep-file-name": file.name,
    }
    if transform is not None:
        values["aep-transform"] = transform
    encoded = {name: quote(value, safe="") for name, value in values.items()}
    return {
        name: value
        if len(value) <= _MAX_METADATA_VALUE
        else "sha256:" + hashlib.sha256(value.encode()).hexdigest()
        for name, value in encoded.items()
    }


def proves(metadata: Optional[Mapping[str, str]], expected: Mapping[str, str]) -> bool:
    """Whether an object's metadata names the source ``expected`` describes."""
    return metadata is not None and all(
        metadata.get(name) == value for name, value in expected.items()
    )


class CopyAborted(Exception):
    """A copy was interrupted by ``Extractor.stop(abort=True)``; nothing is kept."""


def describe(exc: BaseException) -> str:
    """One line naming an error's type and message, for the store and the report."""
    return f"{type(exc).__name__}: {exc}"


def _task(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a :class:`FileTasks` method within the run's scope."""

    @functools.wraps(method)
    def run(self: FileTasks, *args: Any) -> _T:
        with self.running():
            return method(self, *args)

    return run


class FileTasks:
    """Lists batches, copies files from a source to a sink, writes manifests."""

    def __init__(
        self,
        source: AepSource,
        sink: Sink,
        layout: KeyLayout,
        scope: RunScope,
        *,
        transform: Optional[Transform] = None,
        spool_dir: Optional[str] = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.layout = layout
        self.scope = scope
        self.transform = transform
        self.spool_dir = spool_dir

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Run the block within the run's scope; once the run aborts, any failure
        is :class:`CopyAborted`."""
        try:
            with within(self.scope):
                yield
        except CopyAborted:
            raise
        except Exception as exc:
            if self.scope.abort.is_set():
                raise CopyAborted(f"aborted: {describe(exc)}") from exc
            raise

    @_task
    def list_files(self, unit: WorkUnit) -> list[tuple[FileRef, str]]:
        """The unit's batch listing with each file's key, checked for collisions.

        Raises:
            UnsafeKeyError: a name would escape its prefix or the sink refuses a key.
            KeyCollisionError: two files, or a file and a manifest, share an object.
        """
        files = self.source.list_files(unit.batch_id)
        outputs = None
        if self.transform is not None:
            outputs = functools.partial(output_keys, self.transform)
        keys = self.layout.file_keys(unit, files, self.sink.key_identity, outputs)
        return list(zip(files, keys))

    @_task
    def fetch(
        self, unit: WorkUnit, offset: int, file: FileRef, key: str, recorded: bool
    ) -> tuple[FileCopy, bool]:
        """Make sure one file is in the sink; True when this call copied it.

        An object already at the key with the listed size was written whole by an
        earlier run (objects appear only when complete) if its metadata names this
        source file, or, in a sink that cannot store metadata, if the store records
        the file as copied (``recorded``). It is then checksummed from the sink for
        the manifest instead of being downloaded again; anything else is replaced.
        With a transform, the same holds of each of its outputs (:meth:`transformed`).
        """
        if self.transform is not None:
            return self.transformed(self.transform, unit, offset, file, key, recorded)
        found = self.found(unit, offset, file, key, recorded)
        if found is not None:
            return found, False
        return self.copy(unit, offset, file, key), True

    @_task
    def start_parts(
        self,
        unit: WorkUnit,
        offset: int,
        file: FileRef,
        key: str,
        recorded: bool,
        part_size: int,
        resume: Optional[RecordedFile],
    ) -> Union[tuple[FileCopy, bool], PartedFile]:
        """Begin (or resume) a copy of one file in parts; the copy itself when the
        file is in the sink already or the sink cannot write parts.

        A resumed upload keeps the recorded parts that the sink still holds with
        their size and checksum (:meth:`PartWriter.resumable_parts`); the others
        are fetched again.
        """
        found = self.found(unit, offset, file, key, recorded)
        if found is not None:
            return found, False
        if resume is not None and (resume.key, resume.size) == (key, file.length):
            part_size = resume.part_size
        else:
            resume = None
        writer = self.sink.open_parts(
            key,
            size=file.length,
            part_size=part_size,
            metadata=source_metadata(unit, file),
            resume=None if resume is None else resume.token,
        )
        if writer is None:
            return self.copy(unit, offset, file, key), True
        done: dict[int, str] = {}
        if resume is not None and writer.token == resume.token:
            kept = writer.resumable_parts(resume.parts)
            done = {number: resume.parts[number] for number in kept}
            logger.info(
                "%s: resuming upload, %d of %d recorded part(s) intact",
                key,
                len(done),
                len(resume.parts),
                extra=log_context(unit, file, key),
            )
        return PartedFile(
            offset=offset,
            file=file,
            key=key,
            writer=writer,
            part_size=part_size,
            done=done,
            hasher=None if done else OrderedHasher(),
        )

    @_task
    def fetch_part(self, parted: PartedFile, number: int) -> str:
        """Read one part with one ranged read and write it; its checksum.

        Raises:
            IncompleteDownload: the source gave a different number of bytes.
        """
        start, end = part_range(number, parted.file.length, parted.part_size)
        data = bytearray(end - start)  # filled in place: one part's memory, no more
        filled = 0
        download = self.download(parted.file, parted.key, start, end)
        with download as chunks, memoryview(data) as view:
            for chunk in chunks:
                if filled + len(chunk) > len(data):
                    filled = -1  # more bytes than the range
                    break
                view[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
        if filled != end - start:
            raise IncompleteDownload(
                f"{parted.file.dataset_file_id}/{parted.file.name}: part {number} "
                f"got {'more than' if filled < 0 else filled} of {end - start} bytes"
            )
        checksum = parted.writer.write_part(number, data)
        if parted.hasher is not None:
            parted.hasher.add(number, data)
        return checksum

    @_task
    def finish_parts(self, unit: WorkUnit, parted: PartedFile) -> tuple[FileCopy, bool]:
        """Make a file written in parts visible; its manifest entry.

        A file resumed from an earlier run is checksummed by reading it back from
        the sink: the parts that run wrote were never in this process.
        """
        if self.scope.abort.is_set():
            raise CopyAborted(f"{parted.key}: copy aborted by a stop")
        parted.writer.complete(parted.done)
        if parted.hasher is not None:
            sha256 = parted.hasher.hexdigest()
        else:
            sha256 = self.sink.sha256(parted.key)
        logger.debug(
            "copied %s (%d bytes, %d parts) to %s",
            parted.file.name,
            parted.file.length,
            len(parted.done),
            parted.key,
            extra=log_context(unit, parted.file, parted.key),
        )
        return _file_copy(parted.offset, parted.file, parted.key, sha256), True

    @_task
    def drop_upload(self, recorded: RecordedFile) -> None:
        """Abort the upload of a recorded file the batch no longer lists."""
        writer = self.sink.open_parts(
            recorded.key,
            size=recorded.size,
            part_size=recorded.part_size,
            resume=recorded.token,
        )
        if writer is not None:
            writer.abort()
            logger.info("aborted the upload of %s: no longer listed", recorded.key)

    @contextlib.contextmanager
    def download(
        self, file: FileRef, key: str, start: int = 0, end: Optional[int] = None
    ) -> Iterator[Iterator[bytes]]:
        """The file's bytes (``[start, end)`` of them), ending in
        :class:`CopyAborted` once the run aborts; the download is closed on the
        way out, giving back its connection and rate-limit slot."""
        if end is None:
            chunks = self.source.read_file(file)
        else:
            chunks = self.source.read_file(file, start, end)

        def until_abort() -> Iterator[bytes]:
            for chunk in chunks:
                if self.scope.abort.is_set():
                    raise CopyAborted(f"{key}: copy aborted by a stop")
                yield chunk

        try:
            yield until_abort()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def transformed(
        self,
        transform: Transform,
        unit: WorkUnit,
        offset: int,
        file: FileRef,
        key: str,
        recorded: bool,
    ) -> tuple[FileCopy, bool]:
        """Make sure a file's transform outputs are in the sink; True when this
        call wrote them.

        The outputs of an earlier run are kept when every one is there and proves
        (by its metadata, or in a sink without metadata by the store's record)
        that this transform made it from this file; otherwise the file is read
        again and every output rewritten, with the same bytes.

        Raises:
            IncompleteDownload: the source was shorter or longer than listed.
            TransformError: the file cannot be transformed.
        """
        metadata = source_metadata(unit, file, transform.spec)
        outputs = self.found_outputs(
            unit, file, output_keys(transform, key), metadata, recorded
        )
        fresh = outputs is None
        if outputs is None:
            context = TransformContext(
                unit=unit, file=file, key=key, spool_dir=self.spool_dir
            )
            with self.download(file, key) as chunks:
                outputs = run_transform(
                    transform, chunks, context, self.sink, metadata=metadata
                )
            logger.debug(
                "transformed %s (%d bytes) to %s",
                file.name,
                file.length,
                ", ".join(f"{o.key} ({o.size} bytes)" for o in outputs),
                extra=log_context(unit, file, key),
            )
        copy = _file_copy(
            offset, file, key, None, transform=transform.spec, outputs=tuple(outputs)
        )
        return copy, fresh

    def found_outputs(
        self,
        unit: WorkUnit,
        file: FileRef,
        keys: list[str],
        metadata: Mapping[str, str],
        recorded: bool,
    ) -> Optional[list[TransformOutput]]:
        """The outputs at ``keys`` if an earlier run wrote them all (see
        :meth:`transformed`), checksummed from the sink; else None."""
        if not keys:  # a transform that declares no output is refused when run
            return None
        infos = [self.sink.stat(key) for key in keys]
        for key, info in zip(keys, infos):
            if info is None:
                return None
            if info.metadata is None and not recorded:
                return None
            if info.metadata is not None and not proves(info.metadata, metadata):
                logger.info(
                    "%s was not made by this transform from this file; "
                    "transforming again",
                    key,
                    extra=log_context(unit, file, key),
                )
                return None
        logger.debug("outputs of %s already in the sink", file.name)
        return [
            TransformOutput(key=key, size=info.size, sha256=self.sink.sha256(key))
            for key, info in zip(keys, infos)
            if info is not None
        ]

    def found(
        self, unit: WorkUnit, offset: int, file: FileRef, key: str, recorded: bool
    ) -> Optional[FileCopy]:
        """The file's manifest entry if the sink holds it whole already (see
        :meth:`fetch`), else None."""
        info = self.sink.stat(key)
        context = log_context(unit, file)
        if info is not None and info.size == file.length:
            if proves(info.metadata, source_metadata(unit, file)) or (
                info.metadata is None and recorded
            ):
                logger.debug("%s already in the sink", key, extra=context)
                return _file_copy(offset, file, key, self.sink.sha256(key))
            if info.metadata is None:
                logger.info(
                    "%s: an object of the listed size is there, but this sink keeps "
                    "no proof of its source and the store does not record it; "
                    "copying again",
                    key,
                    extra=context,
                )
            else:
                logger.warning(
                    "%s holds an object of the listed size from another source "
                    "(metadata %s); replacing it",
                    key,
                    dict(info.metadata),
                    extra=context,
                )
        elif recorded:
            logger.warning(
                "%s is recorded as copied but %s; copying again",
                key,
                "missing" if info is None else f"has {info.size} bytes",
                extra=context,
            )
        return None

    def copy(self, unit: WorkUnit, offset: int, file: FileRef, key: str) -> FileCopy:
        """Stream one file from the source into the sink, checksumming it."""
        digest = hashlib.sha256()
        size = 0
        metadata = source_metadata(unit, file)
        with (
            self.download(file, key) as chunks,
            self.sink.open_write(key, size=file.length, metadata=metadata) as out,
        ):
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            if size != file.length:
                raise IncompleteDownload(
                    f"{file.dataset_file_id}/{file.name}: got {size} of "
                    f"{file.length} bytes"
                )
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


def _file_copy(
    offset: int,
    file: FileRef,
    key: str,
    sha256: Optional[str],
    *,
    transform: Optional[str] = None,
    outputs: tuple[TransformOutput, ...] = (),
) -> FileCopy:
    return FileCopy(
        offset=offset,
        dataset_file_id=file.dataset_file_id,
        name=file.name,
        key=key,
        size=file.length,
        sha256=sha256,
        transform=transform,
        outputs=outputs,
    )
