"""A checkpoint store in one SQLite file, shared by threads and processes on one host.

The table ``units`` mirrors the DynamoDB item of DESIGN.md column for column, so the
two stores read alike; the table ``watermarks`` holds one row per dataset planned (the
end of its last planned window, where an incremental run starts), and the table
``destinations`` one row per dataset bound to a destination. Every write is a short
``BEGIN IMMEDIATE`` transaction and every fenced write an
``UPDATE ... WHERE Version = ?``; the WAL journal lets readers run while one process
writes, and the busy timeout makes writers queue instead of failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .._validators import path_arg
from ..errors import (
    CheckpointConflict,
    CheckpointError,
    ConfigError,
    MissingResourceError,
)
from ..models import Checkpoint, UnitStatus, WorkUnit
from ..registry import url_rest
from .base import CheckpointStore, group_by_batch

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; a file from a newer release is refused."""

DEFAULT_TIMEOUT = 30.0
"""Seconds a writer waits for another connection's lock before giving up."""

LOOKUP_SIZE = 500
"""Batch ids one query of :meth:`SQLiteCheckpointStore.get_many` asks for, within
SQLite's oldest limit of 999 parameters."""

MEMORY = ":memory:"
"""SQLite's name of a private in-memory database (one per store)."""

_COLUMNS = (
    "BatchID",
    "OffsetRange",
    "DatasetID",
    "BatchCreated",
    "Status",
    "LastProcessedOffset",
    "Owner",
    "LeaseExpiresAt",
    "Attempts",
    "Crashes",
    "Error",
    "FilesDone",
    "BytesDone",
    "CreatedAt",
    "UpdatedAt",
    "Version",
    "Progress",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM units"
_INSERT = (
    f"INSERT OR IGNORE INTO units ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_UPDATE = (
    "UPDATE units SET "
    + ", ".join(f"{name} = ?" for name in _COLUMNS[2:])
    + " WHERE BatchID = ? AND OffsetRange = ? AND Version = ?"
)
_SAVE_WATERMARK = (
    "INSERT OR REPLACE INTO watermarks (DatasetID, PlannedUntil, UpdatedAt) "
    "VALUES (?, ?, ?)"
)
_SAVE_DESTINATION = (
    "INSERT OR REPLACE INTO destinations (DatasetID, Destination) VALUES (?, ?)"
)
_TABLES = {
    "units": """(
        BatchID TEXT NOT NULL,
        OffsetRange TEXT NOT NULL,
        DatasetID TEXT NOT NULL,
        BatchCreated INTEGER NOT NULL,
        Status TEXT NOT NULL,
        LastProcessedOffset INTEGER NOT NULL,
        Owner TEXT,
        LeaseExpiresAt REAL,
        Attempts INTEGER NOT NULL,
        Crashes INTEGER NOT NULL DEFAULT 0,
        Error TEXT,
        FilesDone INTEGER NOT NULL,
        BytesDone INTEGER NOT NULL,
        CreatedAt REAL NOT NULL,
        UpdatedAt REAL NOT NULL,
        Version INTEGER NOT NULL,
        Progress TEXT,
        PRIMARY KEY (BatchID, OffsetRange)
    )""",
    "watermarks": """(
        DatasetID TEXT NOT NULL PRIMARY KEY,
        PlannedUntil INTEGER NOT NULL,
        UpdatedAt REAL NOT NULL
    )""",
    "destinations": """(
        DatasetID TEXT NOT NULL PRIMARY KEY,
        Destination TEXT NOT NULL
    )""",
}
"""Every table and its columns. Tables and columns added after the first release
(``watermarks``, ``destinations``, ``units.Crashes``, ``units.Progress``) came
without a new
SCHEMA_VERSION: creating what is missing is all an older file needs, and an older
release can still use a file that has them (its statements name their columns)."""
_ADDED_COLUMNS = (
    ("units", "Crashes", "INTEGER NOT NULL DEFAULT 0", "0"),
    ("units", "Progress", "TEXT", "NULL"),
)
"""(table, column, declaration, value for rows of older files) of added columns."""
_INDEX = (
    "CREATE INDEX IF NOT EXISTS units_by_dataset_status ON units (DatasetID, Status)"
)


class SQLiteCheckpointStore(CheckpointStore):
    """Checkpoints in a SQLite file: durable, embedded, safe across local processes.

    One connection serves all threads of a process, behind a lock: SQLite admits one
    writer at a time anyway, a Python lock queues threads faster than SQLite's busy
    sleeps, and there are no per-thread connections left open by dead pool threads.
    Processes share the file through WAL mode and the busy timeout. Do not put the file
    on a network filesystem: SQLite's locking is not reliable there.

    Args:
        path: the database file; parent directories are created. ``":memory:"`` gives
            a private in-memory database.
        clock: epoch-seconds clock; defaults to :func:`time.time`.
        timeout: seconds to wait for another connection's write lock.
        read_only: open an existing file for reading only: nothing is created or
            migrated (a file of an older release reads as if it had the newer
            tables and columns, empty), and every write raises CheckpointError.

    Raises:
        MissingResourceError: ``read_only`` and the file does not exist.
        CheckpointError: the file cannot be opened or was written by a newer schema.
    """

    @classmethod
    def check_url(cls, url: str) -> None:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite://``
        (a private in-memory database); SQLAlchemy's forms."""
        _path_of(url)

    @classmethod
    def from_url(
        cls, url: str, *, read_only: bool = False, **options: Any
    ) -> SQLiteCheckpointStore:
        """The store in the file a ``sqlite://`` URL names."""
        return cls(_path_of(url), read_only=read_only, **options)

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        clock: Optional[Callable[[], float]] = None,
        timeout: float = DEFAULT_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        if clock is not None:
            self.clock = clock
        self._path = path_arg(path, "SQLite database path", empty=True)
        self._read_only = read_only
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = None
        self._conn = self._open(timeout)

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def read_only(self) -> bool:
        """Whether the store was opened for reading only."""
        return self._read_only

    def check(self) -> None:
        """Fail now if the file cannot be written (a read-only store: read).

        Raises:
            ConfigError: the database cannot be written, e.g. the file or its
                directory is read-only.
        """
        if self._read_only:
            return  # opening read its schema already
        try:
            with self._transaction("check") as conn:
                # A write that changes nothing: SQLite refuses it on a read-only file.
                conn.execute("DELETE FROM destinations WHERE 0")
        except CheckpointError as exc:
            reason = exc.__cause__ or exc
            raise ConfigError(f"{self!r} cannot be written: {reason}") from exc

    # -- primitives ---------------------------------------------------------------

    def _insert(self, checkpoints: Sequence[Checkpoint]) -> int:
        with self._transaction("register units") as conn:
            before = conn.total_changes
            conn.executemany(_INSERT, [_row(cp) for cp in checkpoints])
            inserted = conn.total_changes - before
        logger.debug("registered %d of %d unit(s)", inserted, len(checkpoints))
        return inserted

    def _load(self, batch_id: str, offset_range: str) -> Optional[Checkpoint]:
        with self._locked("load a unit") as conn:
            row = conn.execute(
                f"{_SELECT} WHERE BatchID = ? AND OffsetRange = ?",
                (batch_id, offset_range),
            ).fetchone()
        return None if row is None else _checkpoint(row)

    def _replace(self, checkpoint: Checkpoint, expected_version: int) -> None:
        row = _row(checkpoint)
        with self._transaction("update a unit") as conn:
            cursor = conn.execute(_UPDATE, (*row[2:], *row[:2], expected_version))
            changed = cursor.rowcount
        if changed == 0:
            raise CheckpointConflict(
                f"unit {checkpoint.unit_id}: version {expected_version} is not current"
            )

    def _delete(self, batch_id: str, offset_range: str) -> None:
        with self._transaction("delete a unit") as conn:
            conn.execute(
                "DELETE FROM units WHERE BatchID = ? AND OffsetRange = ?",
                (batch_id, offset_range),
            )

    def _scan(
        self, dataset_id: str, statuses: Optional[Collection[UnitStatus]] = None
    ) -> Iterator[Checkpoint]:
        sql = f"{_SELECT} WHERE DatasetID = ?"
        params: list[Any] = [dataset_id]
        if statuses is not None:
            if not statuses:
                return iter(())
            sql += f" AND Status IN ({', '.join('?' for _ in statuses)})"
            params.extend(UnitStatus(status).value for status in statuses)
        # Fetched whole under the lock, so no cursor stays open between items.
        with self._locked("scan units") as conn:
            rows = conn.execute(sql, params).fetchall()
        return iter([_checkpoint(row) for row in rows])

    def get_many(
        self, dataset_id: str, batch_ids: Iterable[str]
    ) -> dict[str, list[Checkpoint]]:
        """The units of each of ``batch_ids`` that has some in the dataset: one
        query by primary key per :data:`LOOKUP_SIZE` ids."""
        wanted = sorted(set(batch_ids))
        rows: list[Any] = []
        for start in range(0, len(wanted), LOOKUP_SIZE):
            chunk = wanted[start : start + LOOKUP_SIZE]
            # By BatchID alone, so SQLite searches the primary key: with DatasetID
            # in the WHERE it may walk the dataset's whole history in its index.
            sql = f"{_SELECT} WHERE BatchID IN ({', '.join('?' for _ in chunk)})"
            with self._locked("look units up") as conn:
                rows += conn.execute(sql, chunk).fetchall()
        found = (_checkpoint(row) for row in rows)
        return group_by_batch(cp for cp in found if cp.unit.dataset_id == dataset_id)

    def _load_watermark(self, dataset_id: str) -> Optional[int]:
        with self._locked("load a watermark") as conn:
            row = conn.execute(
                "SELECT PlannedUntil FROM watermarks WHERE DatasetID = ?",
                (dataset_id,),
            ).fetchone()
        return None if row is None else int(row[0])

    def _save_watermark(self, dataset_id: str, end_ms: Optional[int]) -> None:
        with self._transaction("save a watermark") as conn:
            if end_ms is None:
                conn.execute(
                    "DELETE FROM watermarks WHERE DatasetID = ?", (dataset_id,)
                )
            else:
                conn.execute(_SAVE_WATERMARK, (dataset_id, end_ms, self.clock()))

    def raise_watermark(self, dataset_id: str, end_ms: int) -> None:
        # Read and write in one IMMEDIATE transaction: no other connection can write
        # between them, so racing planners never lose the later end.
        with self._transaction("raise a watermark") as conn:
            row = conn.execute(
                "SELECT PlannedUntil FROM watermarks WHERE DatasetID = ?",
                (dataset_id,),
            ).fetchone()
            if row is None or end_ms > row[0]:
                conn.execute(_SAVE_WATERMARK, (dataset_id, end_ms, self.clock()))

    def _load_destination(self, dataset_id: str) -> Optional[str]:
        with self._locked("load a destination") as conn:
            row = conn.execute(
                "SELECT Destination FROM destinations WHERE DatasetID = ?",
                (dataset_id,),
            ).fetchone()
        return None if row is None else str(row[0])

    def _save_destination(self, dataset_id: str, destination: Optional[str]) -> None:
        with self._transaction("save a destination") as conn:
            if destination is None:
                conn.execute(
                    "DELETE FROM destinations WHERE DatasetID = ?", (dataset_id,)
                )
            else:
                conn.execute(_SAVE_DESTINATION, (dataset_id, destination))

    def _bind_destination(self, dataset_id: str, destination: str) -> str:
        # Insert-if-absent and read back in one IMMEDIATE transaction: of racing
        # first bindings, in any process, exactly one is recorded.
        with self._transaction("bind a destination") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO destinations (DatasetID, Destination) "
                "VALUES (?, ?)",
                (dataset_id, destination),
            )
            row = conn.execute(
                "SELECT Destination FROM destinations WHERE DatasetID = ?",
                (dataset_id,),
            ).fetchone()
        return str(row[0])

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; later calls raise CheckpointError."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __repr__(self) -> str:
        mode = ", read_only=True" if self._read_only else ""
        return f"{type(self).__name__}({self._path!r}{mode})"

    # -- helpers ------------------------------------------------------------------

    def _open(self, timeout: float) -> sqlite3.Connection:
        target, read_only_file = self._path, False
        if self._path != MEMORY:
            if self._read_only:
                path = Path(self._path).absolute()
                if not path.exists():
                    raise MissingResourceError(f"no state database at {path}")
                # mode=ro: SQLite itself guarantees the file is never written.
                target, read_only_file = f"{path.as_uri()}?mode=ro", True
            else:
                try:
                    Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CheckpointError(
                        f"{self!r}: cannot create directory: {exc}"
                    ) from exc
        with self._errors("open"):
            # isolation_level=None: no implicit transactions; we issue BEGIN ourselves.
            # check_same_thread=False: one connection, shared under self._lock.
            conn = sqlite3.connect(
                target,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=read_only_file,
            )
        try:
            with self._errors("open"):
                if read_only_file:
                    self._prepare_read_only(conn)
                else:
                    self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        logger.debug("opened %r", self)
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode not in ("wal", "memory"):
            logger.warning("%r: journal mode is %s, not WAL", self, mode)
        # FULL: a checkpoint saying "done" must survive a power cut, not just a crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._check_version(conn)
            for name, columns in _TABLES.items():
                conn.execute(f"CREATE TABLE IF NOT EXISTS {name} {columns}")
            conn.execute(_INDEX)
            for table, column, declaration, _ in _ADDED_COLUMNS:
                if column not in _column_names(conn, table):
                    conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN {column} {declaration}"
                    )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def _prepare_read_only(self, conn: sqlite3.Connection) -> None:
        """Make a file of any release since the first read like a current one,
        writing nothing to it: what it lacks is stood in for by TEMP objects,
        which live in this connection only and shadow the file's (SQLite looks
        names up in ``temp`` first)."""
        self._check_version(conn)
        for name, columns in _TABLES.items():
            present = _column_names(conn, name)
            if not present:
                conn.execute(f"CREATE TEMP TABLE {name} {columns}")
                continue
            added = [
                f"{value} AS {column}"
                for table, column, _, value in _ADDED_COLUMNS
                if table == name and column not in present
            ]
            if added:
                conn.execute(
                    f"CREATE TEMP VIEW {name} AS "
                    f"SELECT *, {', '.join(added)} FROM main.{name}"
                )

    def _check_version(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CheckpointError(
                f"{self!r}: schema version {version} is newer than this "
                f"release supports ({SCHEMA_VERSION}); upgrade aep_extract"
            )

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate sqlite3 errors, in one place, into CheckpointError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise CheckpointError(f"{self!r}: {action} failed: {exc}") from exc

    @contextlib.contextmanager
    def _locked(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(action):
            if self._conn is None:
                raise CheckpointError(f"{self!r} is closed")
            yield self._conn

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so
        # a transaction never fails half-way on a lock upgrade.
        if self._read_only:
            # Refused here as well as by SQLite: TEMP stand-ins would take writes.
            raise CheckpointError(f"{self!r} is read-only: cannot {action}")
        with self._locked(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise


def _column_names(conn: sqlite3.Connection, table: str) -> set[str]:
    """The columns of a table of the file (``main``); empty if it has no such table."""
    return {row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")}


def _row(cp: Checkpoint) -> tuple[Any, ...]:
    """The column values of a checkpoint, in ``_COLUMNS`` order."""
    unit = cp.unit
    return (
        unit.batch_id,
        unit.offset_range,
        unit.dataset_id,
        unit.batch_created_ms,
        cp.status.value,
        cp.last_processed_offset,
        cp.owner,
        cp.lease_expires_at,
        cp.attempts,
        cp.crashes,
        cp.error,
        cp.files_done,
        cp.bytes_done,
        cp.created_at,
        cp.updated_at,
        cp.version,
        cp.progress,
    )


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    """Inverse of :func:`_row`."""
    (
        batch_id,
        offset_range,
        dataset_id,
        batch_created,
        status,
        last_offset,
        owner,
        lease_expires_at,
        attempts,
        crashes,
        error,
        files_done,
        bytes_done,
        created_at,
        updated_at,
        version,
        progress,
    ) = row
    try:
        first, last = WorkUnit.parse_offset_range(offset_range)
        return Checkpoint(
            unit=WorkUnit(
                dataset_id=dataset_id,
                batch_id=batch_id,
                batch_created_ms=batch_created,
                first_offset=first,
                last_offset=last,
            ),
            status=UnitStatus(status),
            last_processed_offset=last_offset,
            owner=owner,
            lease_expires_at=lease_expires_at,
            attempts=attempts,
            crashes=crashes,
            error=error,
            files_done=files_done,
            bytes_done=bytes_done,
            created_at=created_at,
            updated_at=updated_at,
            version=version,
            progress=progress,
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"unreadable row for batch {batch_id!r} range {offset_range!r}: {exc}"
        ) from exc


def _path_of(url: str) -> str:
    """The file a ``sqlite://`` URL names: what follows ``sqlite:///``, verbatim."""
    rest = url_rest(url)
    if rest == "":
        return MEMORY
    if not rest.startswith("/"):
        # sqlite://name would put the path where a URL's host goes: refuse to guess.
        raise ConfigError(
            f"store URL {url!r}: write sqlite:///{rest} for the relative path "
            f"{rest!r}, or sqlite:////{rest} for the absolute path /{rest}"
        )
    if rest == "/":
        raise ConfigError(f"store URL {url!r} names no file")
    return rest[1:]
