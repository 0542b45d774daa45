"""The Sink interface: where bytes go, one object per key, visible when whole."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import BinaryIO, Optional

from .._closeable import Closeable
from ..models import ObjectInfo
from ..registry import FromUrl
from ._parts import Part

READ_CHUNK = 1024 * 1024


class PartWriter(abc.ABC):
    """One object written as numbered parts, from several threads at once, and
    resumable: the sink keeps the parts written so far, invisible, until
    :meth:`complete` or :meth:`abort`. :meth:`~aep_extract.Sink.open_parts` opens
    one.

    Contract: :meth:`write_part` is thread-safe and returns the part's checksum,
    with the part durable in the sink once it returns; :meth:`resumable_parts`
    tells which recorded parts the sink still holds intact; :meth:`complete` makes
    the object visible at its key, with its metadata, all at once; :meth:`abort`
    drops every part. Nothing is visible at the key before :meth:`complete`.
    """

    @property
    @abc.abstractmethod
    def token(self) -> str:
        """What :meth:`~aep_extract.Sink.open_parts` takes as ``resume`` to reopen
        this write (an S3 upload id, a temporary file's name): persist it with the
        parts' checksums."""

    @abc.abstractmethod
    def write_part(self, number: int, data: Part) -> str:
        """Store part ``number`` (from 1); returns its checksum. A part written
        again replaces the earlier one. Thread-safe.

        Raises:
            SinkError: the sink refused, or ``data`` is not the part's size.
        """

    @abc.abstractmethod
    def resumable_parts(self, recorded: Mapping[int, str]) -> set[int]:
        """The part numbers of ``recorded`` (number to the checksum
        :meth:`write_part` returned) that the sink holds with the part's size and
        that checksum; the others must be written again.

        Raises:
            SinkError: the sink refused.
        """

    @abc.abstractmethod
    def complete(self, checksums: Mapping[int, str]) -> None:
        """Make the object visible at its key from every part (``checksums`` has
        each part's number and checksum).

        Raises:
            SinkError: a part is missing, the parts do not add up to the object's
                size, or the sink refused; nothing is visible then.
        """

    def close(self) -> None:
        """Let go of the write without ending it (a stop, a lost lease): local
        resources are freed, the parts stay for a later
        :meth:`~aep_extract.Sink.open_parts` with ``resume``. Optional override;
        the default does nothing."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop every part written; the object does not appear. Never raises
        :class:`~aep_extract.errors.SinkError` (a failure is logged: leftovers
        are what :meth:`~aep_extract.Sink.cleanup_incomplete` removes)."""


class Sink(Closeable, FromUrl, abc.ABC):
    """Stores objects under keys relative to the sink's root.

    A sink registered in :mod:`aep_extract.registry` is opened by URL
    (:func:`~aep_extract.open_sink`) with :meth:`from_url`, after
    :meth:`check_url`.

    Contract for implementations:

    - :meth:`open_write` returns a context manager yielding a writable binary file. The
      object becomes visible under ``key`` only when the block exits without an error
      (atomic rename, completed multipart upload, ...); on an error nothing is left
      behind, not even an empty object. Writing the same key again replaces it whole.
    - :meth:`open_read` streams a stored object; :meth:`stat` tells its size and
      metadata, or None.
    - :meth:`list_keys` (optional) lists stored keys under a prefix.
    - :meth:`key_identity` (optional) tells when two keys name one object.
    - :meth:`open_parts` (optional) writes one object as numbered parts sent in
      parallel, resumable by another process; a sink that cannot returns None and
      large files take :meth:`open_write` like the rest.
    """

    min_part_size: int = 1
    """The smallest part :meth:`open_parts` accepts (but for the last part); the
    engine raises the configured part size to it. S3: 5 MiB."""

    @property
    def url(self) -> str:
        """A URL naming where the objects go (``s3://bucket/prefix``,
        ``file:///dir``).

        A checkpoint store remembers it per dataset and refuses to run the dataset
        into another one. The default, the class's dotted name, tells no two
        instances apart: override it so that a second destination is refused.
        """
        return f"{type(self).__module__}.{type(self).__qualname__}"

    @abc.abstractmethod
    def open_write(
        self,
        key: str,
        *,
        size: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> AbstractContextManager[BinaryIO]:
        """Open ``key`` for writing; ``size`` is the expected length when known.

        ``metadata`` (names of lower-case HTTP token characters, values of printable
        ASCII) is stored with the object, visible together with its bytes, where
        the sink can store metadata; :meth:`stat` gives it back.
        """

    @abc.abstractmethod
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Open a stored object for reading.

        Raises:
            SinkError: no such object.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> Optional[ObjectInfo]:
        """Size and metadata of a stored object, or None when it does not exist.

        The :class:`~aep_extract.ObjectInfo`'s ``metadata`` is None when the sink
        cannot store metadata; the engine then trusts an object it finds only
        when the checkpoint store records the file as copied.
        """

    def open_parts(
        self,
        key: str,
        *,
        size: int,
        part_size: int,
        metadata: Optional[Mapping[str, str]] = None,
        resume: Optional[str] = None,
    ) -> Optional[PartWriter]:
        """Open ``key`` for a write in parts, or None when the sink cannot (the
        default): the caller then uses :meth:`open_write`.

        Part ``n`` (from 1) holds bytes ``[(n - 1) * part_size, n * part_size)`` of
        the object's ``size`` bytes (:func:`~aep_extract.sinks.part_range`).
        ``resume`` is the :attr:`~aep_extract.sinks.PartWriter.token` of an earlier
        writer of the same key, size and part size, perhaps of a killed process:
        its upload is reopened when the sink still has it; otherwise a fresh one is
        begun (its token differs from ``resume``).

        Raises:
            UnsafeKeyError: the key would escape the sink's root.
            SinkError: the sink refused, or ``part_size`` is below
                :attr:`min_part_size` for an object of more than one part.
        """
        return None

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key that starts with ``prefix`` (optional override)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    def key_identity(self, key: str) -> str:
        """What decides whether two keys name one object: equal identities do.

        The default is the key itself, right for stores that compare keys exactly
        (S3, memory). A sink whose store folds names (a case-insensitive or
        Unicode-normalising filesystem) returns the folded form, so that the engine
        refuses a batch whose files would overwrite each other.

        Raises:
            UnsafeKeyError: the sink refuses the key.
        """
        return key

    def check(self) -> None:
        """Fail early, before any copy, when the sink cannot be used (optional
        override; the S3 sink checks that its bucket exists).

        Raises:
            MissingResourceError: the bucket (or equivalent) does not exist.
            SinkError: it cannot be reached.
        """

    def cleanup_incomplete(
        self, prefix: str = "", older_than: timedelta = timedelta(days=1)
    ) -> int:
        """Remove what writers killed mid-write left under ``prefix`` (temporary
        files, incomplete multipart uploads) begun more than ``older_than`` ago.

        Optional override; the default has nothing to clean. Returns how many
        leftovers were removed.
        """
        return 0

    def write_bytes(
        self, key: str, data: bytes, *, metadata: Optional[Mapping[str, str]] = None
    ) -> None:
        """Store a small object in one go."""
        with self.open_write(key, size=len(data), metadata=metadata) as out:
            out.write(data)

    def read_bytes(self, key: str) -> bytes:
        """Read a whole (small) object."""
        with self.open_read(key) as src:
            return src.read()

    def sha256(self, key: str) -> str:
        """Hex SHA-256 of a stored object, read back in bounded chunks."""
        digest = hashlib.sha256()
        with self.open_read(key) as src:
            for chunk in iter(lambda: src.read(READ_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()
