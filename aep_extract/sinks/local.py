"""A sink on the local filesystem: one file per key, renamed into place when whole."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from stat import S_ISREG
from typing import TYPE_CHECKING, BinaryIO, Optional, Union, cast

from ..errors import SinkError, UnsafeKeyError
from ..layout import check_key
from ..models import ObjectInfo
from .base import Sink

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer  # exists only for type checkers

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".part"
"""Temporary files are named ``.{name}.{random}.part`` beside their target."""

_TEMP_NAME_CHARS = 100
"""Characters of the target's name kept in a temporary name, to stay under NAME_MAX."""

_UNSUPPORTED_DIR_FSYNC = {errno.EINVAL, errno.EBADF, errno.EISDIR, errno.EACCES}
if hasattr(errno, "ENOTSUP"):
    _UNSUPPORTED_DIR_FSYNC.add(errno.ENOTSUP)
if hasattr(errno, "EOPNOTSUPP"):
    _UNSUPPORTED_DIR_FSYNC.add(errno.EOPNOTSUPP)


class LocalSink(Sink):
    """Stores each key as a file under ``root``; ``/`` in a key separates directories.

    A write goes to a hidden temporary file in the target's directory, is flushed and
    fsynced, then renamed over the target with :func:`os.replace` (atomic on POSIX and
    Windows), and the directory is fsynced so the rename survives a power cut. Until
    the rename nothing is visible under the key; on any error the temporary file is
    removed.

    Args:
        root: the directory holding every object; created on the first write.
    """

    def __init__(self, root: Union[str, os.PathLike[str]]) -> None:
        # Absolute now, so a later chdir cannot move the sink.
        self._root = os.path.abspath(os.fspath(root))

    @property
    def root(self) -> str:
        """The absolute directory holding the objects."""
        return self._root

    def open_write(
        self,
        key: str,
        *,
        size: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open ``key`` for writing; the file appears only when the block succeeds.

        ``metadata`` is accepted for interface compatibility and not stored.

        Raises:
            UnsafeKeyError: the key would escape the root.
            SinkError: the file cannot be written, or ``size`` was given and a
                different number of bytes was written.
        """
        return self._write(self._path(key), key, size)

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open a stored object for reading.

        Raises:
            UnsafeKeyError: the key would escape the root.
            SinkError: no such object, or it cannot be opened.
        """
        path = self._path(key)
        try:
            return open(path, "rb")
        except FileNotFoundError as exc:
            raise SinkError(f"{self!r}: no object {key!r}") from exc
        except OSError as exc:
            raise SinkError(f"{self!r}: cannot read {key!r}: {exc}") from exc

    def stat(self, key: str) -> Optional[ObjectInfo]:
        """Size of a stored object, or None (also for a directory at that path).

        Raises:
            UnsafeKeyError: the key would escape the root.
            SinkError: the filesystem refused to answer.
        """
        path = self._path(key)
        try:
            info = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SinkError(f"{self!r}: cannot stat {key!r}: {exc}") from exc
        if not S_ISREG(info.st_mode):
            return None
        return ObjectInfo(key=key, size=info.st_size)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key starting with ``prefix``, sorted; temporary files skipped.

        Raises:
            UnsafeKeyError: the directory part of ``prefix`` would escape the root.
            SinkError: a directory cannot be listed.
        """
        keys = [key for key, _ in self._walk(prefix) if not _is_temp(key)]
        return iter(sorted(keys))

    def cleanup_incomplete(
        self, prefix: str = "", older_than: timedelta = timedelta(days=1)
    ) -> int:
        """Delete temporary files under ``prefix`` older than ``older_than``: what
        a writer killed mid-write (``kill -9``, power loss) left behind.

        Returns:
            How many were deleted.
        """
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for key, path in self._walk(prefix):
            if not _is_temp(key):
                continue
            with contextlib.suppress(FileNotFoundError):  # its writer finished
                if os.stat(path).st_mtime <= cutoff:
                    os.unlink(path)
                    removed += 1
                    logger.info("removed incomplete write %s", path)
        return removed

    def _walk(self, prefix: str) -> Iterator[tuple[str, str]]:
        """``(key, path)`` of every file whose key starts with ``prefix``."""
        directory = prefix.rpartition("/")[0]
        if directory:
            check_key(directory)
        top = os.path.join(self._root, *directory.split("/")) if directory else ""
        top = top or self._root

        def fail(exc: OSError) -> None:
            raise SinkError(f"{self!r}: cannot list {prefix!r}: {exc}") from exc

        if not os.path.isdir(top):
            return
        for dirpath, _dirnames, filenames in os.walk(top, onerror=fail):
            relative = os.path.relpath(dirpath, self._root)
            parts = [] if relative == os.curdir else relative.split(os.sep)
            for name in filenames:
                key = "/".join([*parts, name])
                if key.startswith(prefix):
                    yield key, os.path.join(dirpath, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._root!r})"

    # -- helpers ------------------------------------------------------------------

    def _path(self, key: str) -> str:
        check_key(key)
        if _is_temp(key):
            raise UnsafeKeyError(
                f"unsafe key {key!r}: names like '.*{TEMP_SUFFIX}' are reserved "
                "for temporary files"
            )
        return os.path.join(self._root, *key.split("/"))

    @contextlib.contextmanager
    def _write(self, path: str, key: str, size: Optional[int]) -> Iterator[BinaryIO]:
        directory, name = os.path.split(path)
        try:
            os.makedirs(directory, exist_ok=True)
            temp, fd = _create_temp(directory, name)
        except OSError as exc:
            raise SinkError(f"{self!r}: cannot write {key!r}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as raw:
                writer = _GuardedWriter(raw, self, key)
                yield cast("BinaryIO", writer)
                try:
                    raw.flush()
                    os.fsync(raw.fileno())
                except OSError as exc:
                    raise SinkError(f"{self!r}: cannot write {key!r}: {exc}") from exc
            if size is not None and writer.written != size:
                raise SinkError(
                    f"{self!r}: {key!r}: wrote {writer.written} bytes, expected {size}"
                )
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise SinkError(f"{self!r}: cannot write {key!r}: {exc}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_directory(directory)
        logger.debug("wrote %s (%d bytes)", path, writer.written)


class _GuardedWriter(io.RawIOBase):
    """Passes writes to the temporary file, turning OSError into SinkError.

    Only the sink's own I/O errors become SinkError; other errors raised inside the
    caller's ``with`` block pass through unchanged.
    """

    def __init__(self, raw: BinaryIO, sink: LocalSink, key: str) -> None:
        super().__init__()
        self._raw = raw
        self._sink = sink
        self._key = key
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            count = self._raw.write(data)
        except OSError as exc:
            raise SinkError(
                f"{self._sink!r}: cannot write {self._key!r}: {exc}"
            ) from exc
        self.written += count
        return count

    def tell(self) -> int:
        return self.written


def _is_temp(key: str) -> bool:
    name = key.rpartition("/")[2]
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _create_temp(directory: str, name: str) -> tuple[str, int]:
    """Create a fresh temporary file beside the target.

    :func:`tempfile.mkstemp` would create it with mode 0600; ``os.open`` with 0666
    honours the umask, so the renamed file gets the permissions of any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = os.path.join(
            directory, f".{name[:_TEMP_NAME_CHARS]}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        )
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 122 random bits collided
            continue


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable, where the platform allows it.

    Windows cannot open a directory and some filesystems refuse to fsync one; the
    file itself is already fsynced, so those cases are logged and skipped.
    """
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        logger.debug("cannot open %s to fsync it: %s", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED_DIR_FSYNC:
            raise SinkError(f"cannot fsync directory {directory!r}: {exc}") from exc
        logger.debug("directory fsync unsupported on %s: %s", directory, exc)
    finally:
        os.close(fd)
