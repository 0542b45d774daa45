"""LocalSink: the sink contract, plus files, temporary files and fsync."""

from __future__ import annotations

import errno
import os

import pytest

from aep_extract.errors import SinkError, UnsafeKeyError
from aep_extract.sinks import LocalSink
from aep_extract.testing.contracts import SinkContract


class TestLocalSink(SinkContract):
    @pytest.fixture
    def sink(self, tmp_path):
        return LocalSink(tmp_path / "root")


class Boom(Exception):
    pass


def all_files(root):
    return sorted(
        os.path.relpath(os.path.join(dirpath, name), root)
        for dirpath, _dirs, names in os.walk(root)
        for name in names
    )


def test_objects_are_plain_files_under_the_root(tmp_path):
    sink = LocalSink(tmp_path)
    sink.write_bytes("a/b/c.txt", b"data")
    assert (tmp_path / "a" / "b" / "c.txt").read_bytes() == b"data"
    assert sink.root == str(tmp_path)
    assert str(tmp_path) in repr(sink)


def test_failed_write_leaves_no_temporary_file(tmp_path):
    sink = LocalSink(tmp_path)
    with pytest.raises(Boom), sink.open_write("dir/file") as out:  # noqa: PT012 -- the failure must happen mid-write
        out.write(b"x" * 1000)
        assert len(all_files(tmp_path)) == 1  # the temporary file exists meanwhile
        raise Boom
    assert all_files(tmp_path) == []


def test_size_mismatch_leaves_no_temporary_file(tmp_path):
    sink = LocalSink(tmp_path)
    with (
        pytest.raises(SinkError, match="expected 3"),
        sink.open_write("f", size=3) as out,
    ):
        out.write(b"four")
    assert all_files(tmp_path) == []


def test_temporary_files_are_hidden_and_reserved(tmp_path):
    sink = LocalSink(tmp_path)
    (tmp_path / ".orphan.1234.part").write_bytes(b"left by a killed process")
    sink.write_bytes("real", b"1")
    assert list(sink.list_keys()) == ["real"]
    with pytest.raises(UnsafeKeyError, match="reserved"):
        sink.write_bytes("a/.x.part", b"1")


def test_new_files_get_default_permissions(tmp_path):
    sink = LocalSink(tmp_path)
    sink.write_bytes("f", b"1")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_errors_become_sink_errors(tmp_path, monkeypatch):
    sink = LocalSink(tmp_path)
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(SinkError, match="No space") as caught:
        sink.write_bytes("f", b"data")
    assert isinstance(caught.value.__cause__, OSError)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert all_files(tmp_path) == []


def test_errors_from_the_callers_block_pass_through_unchanged(tmp_path):
    sink = LocalSink(tmp_path)
    with pytest.raises(ConnectionResetError), sink.open_write("f") as out:  # noqa: PT012 -- the failure must happen mid-write
        out.write(b"x")
        raise ConnectionResetError("source went away")
    assert all_files(tmp_path) == []


def test_key_colliding_with_a_directory_raises_sink_error(tmp_path):
    sink = LocalSink(tmp_path)
    sink.write_bytes("a/b", b"1")
    with pytest.raises(SinkError):
        sink.write_bytes("a", b"2")
    with pytest.raises(SinkError):
        sink.write_bytes("a/b/c", b"3")
    assert sink.stat("a") is None  # a directory is not an object
    with pytest.raises(SinkError):
        sink.read_bytes("a")
    assert list(sink.list_keys()) == ["a/b"]


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EBADF])
def test_unsupported_directory_fsync_does_not_crash(tmp_path, monkeypatch, code):
    sink = LocalSink(tmp_path)
    real_fsync = os.fsync
    synced = []

    def fsync(fd):
        if _is_dir_fd(fd):
            synced.append("dir")
            raise OSError(code, os.strerror(code))
        synced.append("file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    sink.write_bytes("d/f", b"data")
    assert synced == ["file", "dir"]
    assert sink.read_bytes("d/f") == b"data"


def test_directory_fsync_io_error_raises_sink_error(tmp_path, monkeypatch):
    sink = LocalSink(tmp_path)
    real_fsync = os.fsync

    def fsync(fd):
        if _is_dir_fd(fd):
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(SinkError, match="fsync"):
        sink.write_bytes("f", b"data")


def test_real_directory_fsync_runs(tmp_path, monkeypatch):
    sink = LocalSink(tmp_path)
    real_fsync = os.fsync
    kinds = []

    def fsync(fd):
        kinds.append("dir" if _is_dir_fd(fd) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    sink.write_bytes("f", b"data")
    assert kinds == ["file", "dir"]


def test_list_keys_rejects_an_escaping_prefix(tmp_path):
    sink = LocalSink(tmp_path / "root")
    (tmp_path / "outside").write_bytes(b"secret")
    with pytest.raises(UnsafeKeyError):
        list(sink.list_keys("../"))
    assert list(sink.list_keys("..")) == []


def test_list_keys_of_a_missing_root_is_empty(tmp_path):
    assert list(LocalSink(tmp_path / "nowhere").list_keys()) == []


def test_root_is_fixed_at_construction(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sink = LocalSink("out")
    monkeypatch.chdir(tmp_path.parent)
    sink.write_bytes("f", b"1")
    assert (tmp_path / "out" / "f").read_bytes() == b"1"


def _is_dir_fd(fd):
    import stat

    return stat.S_ISDIR(os.fstat(fd).st_mode)
