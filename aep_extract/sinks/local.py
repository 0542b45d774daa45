"""A sink on the local filesystem: one file per key, renamed into place when whole."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import pathlib
import threading
import time
import unicodedata
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, BinaryIO, Optional, Union, cast

from .._validators import path_arg
from ..errors import ConfigError, SinkError, UnsafeKeyError
from ..layout import check_key
from ..models import ObjectInfo
from ..registry import scheme_of, url_rest
from ._parts import Part, check_complete, check_part, part_range, part_sha256
from .base import PartWriter, Sink

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer  # exists only for type checkers

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".part"
"""Temporary files are named ``.{name}.{random}.part`` beside their target."""

_TEMP_NAME_CHARS = 100
"""Characters of the target's name kept in a temporary name, to stay under NAME_MAX."""

XATTR_PREFIX = "user.aep."
"""Metadata ``name`` is kept in the extended attribute ``user.aep.{name}``."""

_NOT_SUPPORTED = {
    getattr(errno, name) for name in ("ENOTSUP", "EOPNOTSUPP") if hasattr(errno, name)
}
_UNSUPPORTED_DIR_FSYNC = {errno.EINVAL, errno.EBADF, errno.EISDIR, errno.EACCES}
_UNSUPPORTED_DIR_FSYNC |= _NOT_SUPPORTED
_PROBE_NAME = "Ae\u0301"
"""Mixed case and a decomposed é: a probe file's name, to find what the root folds."""


class LocalSink(Sink):
    """Stores each key as a file under ``root``; ``/`` in a key separates directories.

    A write goes to a hidden temporary file in the target's directory, is flushed and
    fsynced, then renamed over the target with :func:`os.replace` (atomic on POSIX and
    Windows), and the directory is fsynced so the rename survives a power cut. Until
    the rename nothing is visible under the key; on any error the temporary file is
    removed.

    Metadata is kept in extended attributes (``user.aep.{name}``), set on the
    temporary file before the rename, where the OS and filesystem have them (Linux
    ext4, XFS, btrfs, tmpfs since Linux 6.6 ...); elsewhere it is not stored and
    :meth:`stat` reports none.

    Args:
        root: the directory holding every object; created on the first write.
        fold_case: whether the filesystem takes names differing only in case for
            one name (macOS, Windows by default); None finds out once, on first
            need, by creating a probe file in the root (or assumes so if it cannot).
        fold_unicode: whether it takes names differing only in Unicode
            normalisation for one name (macOS); None finds out likewise.
    """

    @classmethod
    def check_url(cls, url: str) -> None:
        """A path, or ``file:///absolute/path`` (host empty or ``localhost``)."""
        _root_of(url)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LocalSink:
        """The sink rooted at a path or ``file://`` URL (percent-decoded)."""
        return cls(_root_of(url), **options)

    def __init__(
        self,
        root: Union[str, os.PathLike[str]],
        *,
        fold_case: Optional[bool] = None,
        fold_unicode: Optional[bool] = None,
    ) -> None:
        # Absolute now, so a later chdir cannot move the sink.
        self._root = os.path.abspath(path_arg(root, "LocalSink root"))
        self._folding = (fold_case, fold_unicode)
        self._folding_lock = threading.Lock()
        self._xattrs = hasattr(os, "setxattr")

    @property
    def root(self) -> str:
        """The absolute directory holding the objects."""
        return self._root

    @property
    def url(self) -> str:
        """``file:///root``."""
        return pathlib.Path(self._root).as_uri()

    def open_write(
        self,
        key: str,
        *,
        size: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open ``key`` for writing; the file appears only when the block succeeds.

        ``metadata`` goes to extended attributes where the filesystem has them.

        Raises:
            UnsafeKeyError: the key would escape the root.
            SinkError: the file cannot be written, or ``size`` was given and a
                different number of bytes was written.
        """
        return self._write(self._path(key), key, size, metadata or {})

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

    def open_parts(
        self,
        key: str,
        *,
        size: int,
        part_size: int,
        metadata: Optional[Mapping[str, str]] = None,
        resume: Optional[str] = None,
    ) -> Optional[PartWriter]:
        """Write ``key`` in parts at their offsets (``os.pwrite``) into a temporary
        file beside it, renamed into place on :meth:`PartWriter.complete`; each
        part is fsynced before :meth:`PartWriter.write_part` returns. The token is
        the temporary file's name: ``resume`` reopens it if it is still there.
        None where the OS has no ``pwrite`` (Windows).

        Raises:
            UnsafeKeyError: the key would escape the root.
            SinkError: the temporary file cannot be created or opened.
        """
        path = self._path(key)
        if not hasattr(os, "pwrite"):
            return None
        directory, name = os.path.split(path)
        flags = os.O_RDWR | getattr(os, "O_BINARY", 0)
        try:
            if resume is not None and _is_temp_of(resume, name):
                with contextlib.suppress(FileNotFoundError):
                    temp = os.path.join(directory, resume)
                    fd = os.open(temp, flags)
                    return _LocalParts(self, key, path, temp, fd, size, part_size)
            os.makedirs(directory, exist_ok=True)
            temp, fd = _create_temp(directory, name, os.O_RDWR)
        except OSError as exc:
            raise SinkError(f"{self!r}: cannot write {key!r}: {exc}") from exc
        try:
            self._write_metadata(fd, key, metadata or {})
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return _LocalParts(self, key, path, temp, fd, size, part_size)

    def stat(self, key: str) -> Optional[ObjectInfo]:
        """Size and metadata of a stored object, or None (also for a directory at
        that path). Metadata is None where the filesystem has no extended attributes.

        Raises:
            UnsafeKeyError: the key would escape the root.
            SinkError: the filesystem refused to answer.
        """
        path = self._path(key)
        try:
            info = os.stat(path)
            if not S_ISREG(info.st_mode):
                return None
            metadata = self._read_metadata(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SinkError(f"{self!r}: cannot stat {key!r}: {exc}") from exc
        return ObjectInfo(key=key, size=info.st_size, metadata=metadata)

    def key_identity(self, key: str) -> str:
        """The key as this filesystem compares names: case-folded and/or NFC
        normalised where it folds them (see ``fold_case`` and ``fold_unicode``).

        Raises:
            UnsafeKeyError: the key would escape the root, or is reserved for
                temporary files.
        """
        self._path(key)
        fold_case, fold_unicode = self._folds()
        if fold_unicode:
            key = unicodedata.normalize("NFC", key)
        if fold_case:
            key = key.casefold()
            if fold_unicode:  # casefold may undo the normalisation
                key = unicodedata.normalize("NFC", key)
        return key

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

    def _folds(self) -> tuple[bool, bool]:
        """Whether the root folds case, and Unicode normalisation: as configured,
        else probed once."""
        with self._folding_lock:
            case, unicode = self._folding
            if case is None or unicode is None:
                probed_case, probed_unicode = self._probe_folding()
                case = probed_case if case is None else case
                unicode = probed_unicode if unicode is None else unicode
                self._folding = (case, unicode)
            return case, unicode

    def _probe_folding(self) -> tuple[bool, bool]:
        """Create a probe file (a temporary-file name, so never listed) and look it
        up by its other-case and NFC spellings; (True, True) if that cannot run."""
        name = f".probe-{uuid.uuid4().hex}-{_PROBE_NAME}{TEMP_SUFFIX}"
        path = os.path.join(self._root, name)
        try:
            os.makedirs(self._root, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            logger.warning(
                "cannot probe %s (%s): taking names that differ only in case or "
                "Unicode normalisation for one",
                self._root,
                exc,
            )
            return True, True
        try:
            found = [
                os.path.lexists(os.path.join(self._root, variant))
                for variant in (name.swapcase(), unicodedata.normalize("NFC", name))
            ]
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        logger.debug("%s folds case: %s, Unicode: %s", self._root, *found)
        return found[0], found[1]

    def _read_metadata(self, path: str) -> Optional[dict[str, str]]:
        """The ``user.aep.*`` attributes of a file; None without xattrs."""
        if not self._xattrs:
            return None
        try:
            names = os.listxattr(path)
            return {
                name[len(XATTR_PREFIX) :]: os.getxattr(path, name).decode(
                    "utf-8", "replace"
                )
                for name in names
                if name.startswith(XATTR_PREFIX)
            }
        except OSError as exc:
            if exc.errno not in _NOT_SUPPORTED:
                raise
            return None

    def _write_metadata(self, fd: int, key: str, metadata: Mapping[str, str]) -> None:
        """Set ``metadata`` as attributes of the open temporary file, where the
        filesystem takes them (else the sink stops trying and keeps none)."""
        if not (metadata and self._xattrs):
            return
        try:
            for name, value in metadata.items():
                os.setxattr(fd, XATTR_PREFIX + name, value.encode())
        except OSError as exc:
            if exc.errno not in _NOT_SUPPORTED:
                raise SinkError(f"{self!r}: cannot write {key!r}: {exc}") from exc
            logger.info(
                "%r: no extended attributes here (%s); no metadata kept", self, exc
            )
            self._xattrs = False

    def _path(self, key: str) -> str:
        check_key(key)
        if _is_temp(key):
            raise UnsafeKeyError(
                f"unsafe key {key!r}: names like '.*{TEMP_SUFFIX}' are reserved "
                "for temporary files"
            )
        return os.path.join(self._root, *key.split("/"))

    @contextlib.contextmanager
    def _write(
        self, path: str, key: str, size: Optional[int], metadata: Mapping[str, str]
    ) -> Iterator[BinaryIO]:
        directory, name = os.path.split(path)
        try:
            os.makedirs(directory, exist_ok=True)
            temp, fd = _create_temp(directory, name, os.O_WRONLY)
        except OSError as exc:
            raise SinkError(f"{self!r}: cannot write {key!r}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as raw:
                # Before the rename, so that bytes and metadata appear together.
                self._write_metadata(fd, key, metadata)
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


class _LocalParts(PartWriter):
    """Parts written at their offsets into a temporary file beside the target."""

    def __init__(
        self,
        sink: LocalSink,
        key: str,
        path: str,
        temp: str,
        fd: int,
        size: int,
        part_size: int,
    ) -> None:
        self._sink = sink
        self._key = key
        self._path = path
        self._temp = temp
        self._fd = fd
        self._size = size
        self._part_size = part_size

    @property
    def token(self) -> str:
        """The temporary file's name (in the target's directory)."""
        return os.path.basename(self._temp)

    def write_part(self, number: int, data: Part) -> str:
        check_part(self._key, number, data, self._size, self._part_size)
        start, _ = part_range(number, self._size, self._part_size)
        view = memoryview(data)
        with self._errors():
            while view:  # pwrite may write less than asked
                written = os.pwrite(self._fd, view, start)
                view, start = view[written:], start + written
            # Durable before the engine records the part as written.
            getattr(os, "fdatasync", os.fsync)(self._fd)
        return part_sha256(data)

    def resumable_parts(self, recorded: Mapping[int, str]) -> set[int]:
        """Reads every recorded part back from the temporary file and checks its
        checksum: the cost of a resume is one local read of what was written."""
        kept = set()
        with self._errors():
            for number, checksum in recorded.items():
                try:
                    start, end = part_range(number, self._size, self._part_size)
                except SinkError:
                    continue
                data = os.pread(self._fd, end - start, start)
                if len(data) == end - start and part_sha256(data) == checksum:
                    kept.add(number)
        return kept

    def complete(self, checksums: Mapping[int, str]) -> None:
        check_complete(self._key, checksums, self._size, self._part_size)
        with self._errors():
            found = os.fstat(self._fd).st_size
            if found != self._size:
                raise SinkError(
                    f"{self._sink!r}: {self._key!r}: parts hold {found} bytes, "
                    f"expected {self._size}"
                )
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._temp, self._path)
        _fsync_directory(os.path.dirname(self._path))
        logger.debug("wrote %s (%d bytes) in parts", self._path, self._size)

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def abort(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            os.unlink(self._temp)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise SinkError(
                f"{self._sink!r}: cannot write {self._key!r}: {exc}"
            ) from exc


def _root_of(url: str) -> str:
    """The directory a path or ``file://`` URL names."""
    if scheme_of("sink", url) != "file":
        raise ConfigError(f"sink URL {url!r} is not a path or file:// URL")
    if url_rest(url) == url:
        return url  # a path
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            f"sink URL {url!r}: host {parts.netloc!r} is not local; "
            "write file:///absolute/path"
        )
    if not parts.path or parts.query or parts.fragment:
        raise ConfigError(f"sink URL {url!r}: expected file:///absolute/path")
    if os.name == "nt":
        # url2pathname turns /C:/data into C:\data; imported here, it is heavy.
        from urllib.request import url2pathname

        return url2pathname(parts.path)
    return urllib.parse.unquote(parts.path)


def _is_temp(key: str) -> bool:
    name = key.rpartition("/")[2]
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _is_temp_of(token: str, name: str) -> bool:
    """Whether ``token`` names a temporary file of the target ``name`` beside it."""
    return (
        _is_temp(token)
        and "/" not in token
        and os.sep not in token
        and token.startswith(f".{name[:_TEMP_NAME_CHARS]}.")
    )


def _create_temp(directory: str, name: str, mode: int) -> tuple[str, int]:
    """Create a fresh temporary file beside the target, opened with ``mode``
    (``os.O_WRONLY`` or ``os.O_RDWR``).

    :func:`tempfile.mkstemp` would create it with mode 0600; ``os.open`` with 0666
    honours the umask, so the renamed file gets the permissions of any new file.
    """
    flags = mode | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
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
