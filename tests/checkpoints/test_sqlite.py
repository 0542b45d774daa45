"""SQLiteCheckpointStore: the store contract, durability, schema and processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading

import pytest

from aep_extract.checkpoints import SQLiteCheckpointStore
from aep_extract.checkpoints import sqlite as sqlite_module
from aep_extract.checkpoints.sqlite import SCHEMA_VERSION
from aep_extract.errors import CheckpointError, ConfigError, MissingResourceError
from aep_extract.models import UnitStatus, WorkUnit
from aep_extract.testing.contracts import AtomicWatermarksContract

DYNAMODB_ATTRIBUTES = {
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
}


class TestSQLiteCheckpointStore(AtomicWatermarksContract):
    @pytest.fixture
    def store(self, tmp_path):
        with SQLiteCheckpointStore(tmp_path / "state.db") as store:
            yield store


class TestInMemorySQLiteCheckpointStore(AtomicWatermarksContract):
    @pytest.fixture
    def store(self):
        with SQLiteCheckpointStore(":memory:") as store:
            yield store


def units(count, dataset="ds"):
    return [
        WorkUnit(dataset_id=dataset, batch_id=f"b{n:03d}", batch_created_ms=n)
        for n in range(count)
    ]


def fixed_clock():
    return 1_000.0


def test_state_survives_reopening(tmp_path):
    path = tmp_path / "nested" / "dirs" / "state.db"
    with SQLiteCheckpointStore(path, clock=fixed_clock) as store:
        store.register(units(2))
        lease = store.claim("ds", "worker-a", 60)
        assert lease is not None
        lease = store.advance(lease, 7, files=8, size=9)
    with SQLiteCheckpointStore(path, clock=fixed_clock) as reopened:
        assert reopened.get(lease.unit.batch_id) == lease.checkpoint
        assert reopened.register(units(2)) == 0
        assert reopened.summary("ds")[UnitStatus.IN_PROGRESS] == 1
        reopened.complete(lease)
        assert reopened.summary("ds")[UnitStatus.COMPLETED] == 1


def test_schema_mirrors_the_dynamodb_item(tmp_path):
    path = tmp_path / "state.db"
    SQLiteCheckpointStore(path).close()
    conn = sqlite3.connect(path)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(units)")}
        primary = [
            row[1]
            for row in sorted(
                conn.execute("PRAGMA table_info(units)"), key=lambda r: r[5]
            )
            if row[5]
        ]
        index = [
            row[2] for row in conn.execute("PRAGMA index_info(units_by_dataset_status)")
        ]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert columns == DYNAMODB_ATTRIBUTES
    assert primary == ["BatchID", "OffsetRange"]
    assert index == ["DatasetID", "Status"]


FIRST_RELEASE_SCHEMA = (
    """
    CREATE TABLE units (
        BatchID TEXT NOT NULL,
        OffsetRange TEXT NOT NULL,
        DatasetID TEXT NOT NULL,
        BatchCreated INTEGER NOT NULL,
        Status TEXT NOT NULL,
        LastProcessedOffset INTEGER NOT NULL,
        Owner TEXT,
        LeaseExpiresAt REAL,
        Attempts INTEGER NOT NULL,
        Error TEXT,
        FilesDone INTEGER NOT NULL,
        BytesDone INTEGER NOT NULL,
        CreatedAt REAL NOT NULL,
        UpdatedAt REAL NOT NULL,
        Version INTEGER NOT NULL,
        PRIMARY KEY (BatchID, OffsetRange)
    )
    """,
    "CREATE INDEX units_by_dataset_status ON units (DatasetID, Status)",
    "PRAGMA user_version = 1",
    "INSERT INTO units VALUES "
    "('b000', '0-*', 'ds', 0, 'Completed', 4, NULL, NULL, 1, NULL, 5, 50, 1.5, 2.5, 3)",
    "INSERT INTO units VALUES "
    "('b001', '0-*', 'ds', 1, 'Pending', -1, NULL, NULL, 0, NULL, 0, 0, 1.5, 1.5, 0)",
)


def tables(path):
    conn = sqlite3.connect(path)
    try:
        return {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
    finally:
        conn.close()


def first_release_file(path):
    conn = sqlite3.connect(path)
    for statement in FIRST_RELEASE_SCHEMA:
        conn.execute(statement)
    conn.commit()
    conn.close()
    assert tables(path) == {"units"}
    assert "Crashes" not in columns(path)


def columns(path, table="units"):
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


def test_a_file_of_the_first_release_gains_the_new_tables_and_columns(tmp_path):
    path = tmp_path / "state.db"
    first_release_file(path)
    with SQLiteCheckpointStore(path, clock=fixed_clock) as store:
        assert tables(path) == {"units", "watermarks", "destinations"}
        assert columns(path) == DYNAMODB_ATTRIBUTES
        assert store.summary("ds")[UnitStatus.COMPLETED] == 1
        done = store.get("b000")
        assert done is not None
        assert (done.last_processed_offset, done.files_done, done.version) == (4, 5, 3)
        assert (done.attempts, done.crashes) == (1, 0)
        assert store.watermark("ds") is None
        assert store.destination("ds") is None
        store.raise_watermark("ds", 1_718_000_000_000)
        store.bind_destination("ds", "s3://bucket/aep")
        assert store.register(units(3)) == 1
        lease = store.claim("ds", "worker-a", 60)
        assert lease is not None
        store.complete(lease)
    with SQLiteCheckpointStore(path) as reopened:
        assert reopened.watermark("ds") == 1_718_000_000_000
        assert reopened.destination("ds") == "s3://bucket/aep"
        assert reopened.summary("ds")[UnitStatus.COMPLETED] == 2
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT * FROM watermarks").fetchall() == [
            ("ds", 1_718_000_000_000, fixed_clock())
        ]
        assert conn.execute("SELECT * FROM destinations").fetchall() == [
            ("ds", "s3://bucket/aep")
        ]
        # A write of the first release (its columns named) still works.
        conn.execute(
            "INSERT INTO units (BatchID, OffsetRange, DatasetID, BatchCreated, "
            "Status, LastProcessedOffset, Attempts, FilesDone, BytesDone, CreatedAt, "
            "UpdatedAt, Version) "
            "VALUES ('b009', '0-*', 'ds', 9, 'Pending', -1, 0, 0, 0, 1.5, 1.5, 0)"
        )
        conn.commit()
    finally:
        conn.close()
    with SQLiteCheckpointStore(path) as reopened:
        written_by_old_release = reopened.get("b009")
        assert written_by_old_release is not None
        assert written_by_old_release.crashes == 0


def test_crashes_survive_reopening(tmp_path):
    path = tmp_path / "state.db"
    clock = [1_000.0]
    with SQLiteCheckpointStore(path, clock=lambda: clock[0]) as store:
        store.register(units(1))
        assert store.claim("ds", "worker-a", 60) is not None
        clock[0] += 60
        lease = store.claim("ds", "worker-b", 60)
        assert lease is not None
        assert lease.checkpoint.crashes == 1
    with SQLiteCheckpointStore(path) as reopened:
        assert reopened.get("b000") == lease.checkpoint


def test_watermarks_survive_reopening_and_forget_removes_them(tmp_path):
    path = tmp_path / "state.db"
    with SQLiteCheckpointStore(path) as store:
        store.raise_watermark("ds", 2_000)
        store.raise_watermark("other", 3_000)
    with SQLiteCheckpointStore(path) as store:
        assert (store.watermark("ds"), store.watermark("other")) == (2_000, 3_000)
        store.raise_watermark("ds", 1_000)
        store.forget("other")
    with SQLiteCheckpointStore(path) as store:
        assert (store.watermark("ds"), store.watermark("other")) == (2_000, None)


def test_opening_is_idempotent(tmp_path):
    path = tmp_path / "state.db"
    with SQLiteCheckpointStore(path) as first, SQLiteCheckpointStore(path) as second:
        first.register(units(3))
        assert second.register(units(3)) == 0
        assert len(second.list("ds")) == 3


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(CheckpointError, match="newer"):
        SQLiteCheckpointStore(path)


def test_a_file_that_is_not_a_database_raises_checkpoint_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CheckpointError) as caught:
        SQLiteCheckpointStore(path)
    assert isinstance(caught.value.__cause__, sqlite3.Error)


def test_a_directory_path_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        SQLiteCheckpointStore(tmp_path)


def test_unwritable_parent_raises_checkpoint_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError) as caught:
        SQLiteCheckpointStore(blocker / "state.db")
    assert isinstance(caught.value.__cause__, OSError)


def test_closed_store_raises_checkpoint_error(tmp_path):
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(CheckpointError, match="closed"):
        store.register(units(1))
    with pytest.raises(CheckpointError, match="closed"):
        store.list("ds")


def test_lock_timeout_raises_checkpoint_error(tmp_path):
    path = tmp_path / "state.db"
    with SQLiteCheckpointStore(path, timeout=0.05) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(CheckpointError, match="locked") as caught:
                store.register(units(1))
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            # Reads still work while another connection writes (WAL).
            assert store.list("ds") == []
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert store.register(units(1)) == 1


def test_corrupt_row_raises_checkpoint_error(tmp_path):
    path = tmp_path / "state.db"
    with SQLiteCheckpointStore(path) as store:
        store.register(units(1))
        conn = sqlite3.connect(path)
        conn.execute("UPDATE units SET Status = 'Bogus'")
        conn.commit()
        conn.close()
        with pytest.raises(CheckpointError, match="b000"):
            store.get("b000")


def test_repr_shows_the_path(tmp_path):
    path = tmp_path / "state.db"
    store = SQLiteCheckpointStore(path)
    try:
        assert str(path) in repr(store)
        assert store.path == str(path)
    finally:
        store.close()


def test_threads_share_one_store(tmp_path):
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        store.register(units(30))
        claimed = []
        lock = threading.Lock()

        def work(owner):
            while (lease := store.claim("ds", owner, 600)) is not None:
                with lock:
                    claimed.append(lease.unit.unit_id)
                store.complete(store.advance(lease, 0, files=1))

        threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(claimed) == [u.unit_id for u in units(30)]


def _claim_all(path, start, results, threads_per_process):
    """Child process: claim and complete units from several threads."""
    store = SQLiteCheckpointStore(path, clock=fixed_clock)
    claimed = []
    lock = threading.Lock()
    failures = []

    def work(owner):
        try:
            while True:
                lease = store.claim("ds", owner, 3_600)
                if lease is None:
                    return
                with lock:
                    claimed.append(lease.unit.unit_id)
                store.complete(lease)
        except BaseException as exc:
            failures.append(repr(exc))

    start.wait(timeout=60)  # both processes begin claiming together
    name = multiprocessing.current_process().name
    threads = [
        threading.Thread(target=work, args=(f"{name}-t{n}",))
        for n in range(threads_per_process)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    results.put((claimed, failures))


def test_processes_and_threads_claim_every_unit_exactly_once(tmp_path):
    path = str(tmp_path / "state.db")
    with SQLiteCheckpointStore(path, clock=fixed_clock) as store:
        store.register(units(40))
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_claim_all, args=(path, start, results, 4), name=f"p{n}")
        for n in range(2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    claimed = [unit_id for ids, _ in outcomes for unit_id in ids]
    assert [failures for _, failures in outcomes] == [[], []]
    assert sorted(claimed) == [u.unit_id for u in units(40)]
    with SQLiteCheckpointStore(path) as store:
        assert store.summary("ds")[UnitStatus.COMPLETED] == 40
        # Registered (0), claimed once (1), completed (2); nothing counted.
        assert {(cp.version, cp.attempts, cp.crashes) for cp in store.list("ds")} == {
            (2, 0, 0)
        }


# -- read-only --------------------------------------------------------------------


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_read_only_of_a_missing_file_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingResourceError) as caught:
        SQLiteCheckpointStore("typo/state.db", read_only=True)
    assert str(caught.value) == f"no state database at {tmp_path}/typo/state.db"
    assert listing(tmp_path) == []


def test_read_only_reads_and_refuses_every_write(tmp_path):
    path = tmp_path / "state.db"
    with SQLiteCheckpointStore(path, clock=fixed_clock) as store:
        store.register(units(3))
        failed = store.claim("ds", "worker-a", 60)
        assert failed is not None
        store.fail(failed, "boom", max_attempts=1)
        lease = store.claim("ds", "worker-a", 60)
        assert lease is not None
        store.raise_watermark("ds", 5_000)
        store.bind_destination("ds", "s3://bucket/aep")
        before = store.list("ds")
    with SQLiteCheckpointStore(path, read_only=True) as reader:
        assert reader.read_only
        assert "read_only=True" in repr(reader)
        assert reader.list("ds") == before
        assert reader.get(lease.unit.batch_id) == lease.checkpoint
        assert (reader.watermark("ds"), reader.destination("ds")) == (
            5_000,
            "s3://bucket/aep",
        )
        writes = [
            lambda: reader.register(units(4)),
            lambda: reader.claim("ds", "worker-b", 60),
            lambda: reader.complete(lease),
            lambda: reader.release(lease),
            lambda: reader.retry_failed("ds"),
            lambda: reader.raise_watermark("ds", 9_000),
            lambda: reader.bind_destination("other", "s3://bucket/aep"),
            lambda: reader.forget("ds"),
        ]
        for write in writes:
            with pytest.raises(CheckpointError, match="read-only"):
                write()
        reader.check()  # readable: nothing more is asked of a read-only store
    with SQLiteCheckpointStore(path) as store:
        assert store.list("ds") == before
        assert store.destination("other") is None
        assert store.watermark("ds") == 5_000


def test_read_only_reads_a_first_release_file_without_changing_it(tmp_path):
    path = tmp_path / "state.db"
    first_release_file(path)
    content = path.read_bytes()
    with SQLiteCheckpointStore(path, read_only=True) as reader:
        done = reader.get("b000")
        assert done is not None
        assert (done.status, done.attempts, done.crashes) == (
            UnitStatus.COMPLETED,
            1,
            0,
        )
        assert reader.summary("ds")[UnitStatus.PENDING] == 1
        assert reader.watermark("ds") is None
        assert reader.destination("ds") is None
        with pytest.raises(CheckpointError, match="read-only"):
            reader.raise_watermark("ds", 1)
    assert path.read_bytes() == content
    assert tables(path) == {"units"}
    assert "Crashes" not in columns(path)


def test_read_only_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(CheckpointError, match="newer"):
        SQLiteCheckpointStore(path, read_only=True)


def test_check_passes_on_a_writable_file(tmp_path):
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        store.bind_destination("ds", "s3://bucket/aep")
        store.check()
        assert store.destination("ds") == "s3://bucket/aep"


def test_check_of_a_database_that_cannot_be_written_is_a_config_error(tmp_path):
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        # What SQLite answers for a write-protected file (chmod binds no root).
        conn = store._conn
        assert conn is not None
        conn.execute("PRAGMA query_only = ON")
        with pytest.raises(ConfigError, match="cannot be written") as caught:
            store.check()
        assert "readonly database" in str(caught.value)
        assert store.list("ds") == []


def test_get_many_asks_in_chunks_by_key(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_module, "LOOKUP_SIZE", 3)
    store = SQLiteCheckpointStore(tmp_path / "s.db")
    units = [
        WorkUnit(dataset_id="ds", batch_id=f"b{n}", batch_created_ms=n)
        for n in range(8)
    ]
    store.register(units)
    statements: list[str] = []
    assert store._conn is not None
    store._conn.set_trace_callback(statements.append)
    found = store.get_many("ds", [f"b{n}" for n in range(10)])
    assert sorted(found) == [f"b{n}" for n in range(8)]
    lookups = [s for s in statements if s.startswith("SELECT")]
    assert len(lookups) == 4  # 10 ids, 3 a query
    assert all("WHERE BatchID IN" in s for s in lookups)
    plan = store._conn.execute(f"EXPLAIN QUERY PLAN {lookups[0]}").fetchall()
    assert "sqlite_autoindex_units_1" in str(plan)  # the primary key, not a scan
