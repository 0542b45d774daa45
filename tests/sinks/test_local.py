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


# -- names the filesystem folds -------------------------------------------------------


def test_the_probe_finds_this_filesystem_keeps_case_and_unicode_apart(tmp_path):
    sink = LocalSink(tmp_path / "root")
    for key in ("a/Data.CSV", "a/cafe\u0301.csv", "a/caf\u00e9.csv"):
        assert sink.key_identity(key) == key
    assert all_files(tmp_path) == []  # the probe file is gone


def test_forced_folding_gives_one_identity_per_folded_name(tmp_path):
    both = LocalSink(tmp_path, fold_case=True, fold_unicode=True)
    assert both.key_identity("A/CAFE\u0301.csv") == both.key_identity("a/café.CSV")
    case = LocalSink(tmp_path, fold_case=True, fold_unicode=False)
    assert case.key_identity("A/Data.csv") == case.key_identity("a/data.CSV")
    assert case.key_identity("cafe\u0301") != case.key_identity("caf\u00e9")
    unicode = LocalSink(tmp_path, fold_case=False, fold_unicode=True)
    assert unicode.key_identity("cafe\u0301") == unicode.key_identity("caf\u00e9")
    assert unicode.key_identity("Data") != unicode.key_identity("data")
    with pytest.raises(UnsafeKeyError, match="reserved"):
        both.key_identity("a/.x.part")


def test_a_root_that_cannot_be_probed_is_taken_to_fold_both(tmp_path):
    (tmp_path / "file").write_bytes(b"not a directory")
    sink = LocalSink(tmp_path / "file" / "root")
    assert sink.key_identity("A/cafe\u0301") == sink.key_identity("a/caf\u00e9")


# -- metadata in extended attributes --------------------------------------------------


def test_metadata_lives_in_user_xattrs_set_before_the_rename(tmp_path, monkeypatch):
    sink = LocalSink(tmp_path)
    real_replace = os.replace
    seen = []

    def replace(src, dst):
        seen.append(os.getxattr(src, "user.aep.aep-batch-id"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    sink.write_bytes("f", b"1", metadata={"aep-batch-id": "b1"})
    assert seen == [b"b1"]
    assert os.getxattr(tmp_path / "f", "user.aep.aep-batch-id") == b"b1"
    info = sink.stat("f")
    assert info is not None
    assert info.metadata == {"aep-batch-id": "b1"}


def test_without_xattrs_metadata_is_not_kept(tmp_path, monkeypatch):
    def unsupported(*_args):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    sink = LocalSink(tmp_path)
    sink.write_bytes("f", b"1", metadata={"aep-batch-id": "b1"})
    info = sink.stat("f")
    assert info is not None
    assert (info.size, info.metadata) == (1, None)

    monkeypatch.delattr(os, "setxattr")  # an OS without xattrs (macOS, Windows)
    sink = LocalSink(tmp_path)
    sink.write_bytes("g", b"22", metadata={"aep-batch-id": "b1"})
    info = sink.stat("g")
    assert info is not None
    assert (info.size, info.metadata) == (2, None)
