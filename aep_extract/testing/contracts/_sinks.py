"""The sink contract."""

from __future__ import annotations

import hashlib
import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..._tasks import source_metadata
from ...errors import SinkError, UnsafeKeyError
from ...models import FileRef, WorkUnit
from ...sinks._parts import part_range
from ...sinks.base import Sink

__all__ = ["SinkContract"]

CREATED_MS = 1_718_000_000_000
"""A batch's created time (epoch ms) in the metadata test."""


class _Boom(Exception):
    """Raised inside a write block to make it fail."""


def _write_then_fail(sink: Sink, key: str, data: bytes) -> None:
    with sink.open_write(key) as out:
        out.write(data)
        raise _Boom


class SinkContract:
    """What every :class:`~aep_extract.sinks.base.Sink` must do.

    Supply a function-scoped ``sink`` fixture. The sink must implement
    :meth:`~aep_extract.Sink.list_keys`. A sink that cannot store metadata (its
    :meth:`~aep_extract.Sink.stat` reports ``metadata=None``) sets
    ``stores_metadata = False`` in the subclass.
    """

    stores_metadata = True
    """Whether the sink gives back the metadata an object was written with."""

    @pytest.fixture
    def prefix(self) -> str:
        """A key prefix no other test uses."""
        return f"contract-{uuid.uuid4().hex[:12]}/"

    def test_write_then_read_back(self, sink: Sink, prefix: str) -> None:
        key = f"{prefix}dataset/date=2024-01-02/batch=b1/file-1/part-0.parquet"
        with sink.open_write(key, size=5) as out:
            out.write(b"hello")
        assert sink.read_bytes(key) == b"hello"
        info = sink.stat(key)
        assert info is not None
        assert (info.key, info.size) == (key, 5)

    def test_multi_chunk_write_is_byte_identical(self, sink: Sink, prefix: str) -> None:
        # Odd sizes straddle buffer boundaries; over 5 MiB crosses an S3 part size.
        rng = random.Random(1234)
        sizes = [1, 7, 65_536, 1_048_576, 1_048_577, 4_000_000, 3]
        chunks = [rng.randbytes(size) for size in sizes]
        data = b"".join(chunks)
        assert len(data) > 5 * 1024 * 1024
        key = f"{prefix}big.bin"
        with sink.open_write(key, size=len(data)) as out:
            for chunk in chunks:
                out.write(chunk)
        info = sink.stat(key)
        assert info is not None
        assert info.size == len(data)
        assert sink.sha256(key) == hashlib.sha256(data).hexdigest()
        with sink.open_read(key) as src:
            assert src.read() == data

    def test_empty_object(self, sink: Sink, prefix: str) -> None:
        key = f"{prefix}empty"
        with sink.open_write(key, size=0):
            pass
        assert sink.read_bytes(key) == b""
        info = sink.stat(key)
        assert info is not None
        assert info.size == 0
        assert list(sink.list_keys(prefix)) == [key]

    def test_object_is_invisible_until_the_write_completes(
        self, sink: Sink, prefix: str
    ) -> None:
        key = f"{prefix}pending"
        with sink.open_write(key) as out:
            out.write(b"partial")
            assert sink.stat(key) is None
            assert list(sink.list_keys(prefix)) == []
        assert sink.read_bytes(key) == b"partial"

    def test_failed_write_leaves_nothing(self, sink: Sink, prefix: str) -> None:
        key = f"{prefix}broken"
        with pytest.raises(_Boom):
            _write_then_fail(sink, key, b"x" * 100_000)
        assert sink.stat(key) is None
        assert list(sink.list_keys(prefix)) == []
        with pytest.raises(SinkError):
            sink.read_bytes(key)

    def test_failed_write_keeps_the_existing_object(
        self, sink: Sink, prefix: str
    ) -> None:
        key = f"{prefix}kept"
        sink.write_bytes(key, b"original")
        with pytest.raises(_Boom):
            _write_then_fail(sink, key, b"replacement")
        assert sink.read_bytes(key) == b"original"
        assert list(sink.list_keys(prefix)) == [key]

    def test_rewrite_replaces_the_whole_object(self, sink: Sink, prefix: str) -> None:
        key = f"{prefix}again"
        sink.write_bytes(key, b"a longer first version")
        sink.write_bytes(key, b"short")
        assert sink.read_bytes(key) == b"short"
        info = sink.stat(key)
        assert info is not None
        assert info.size == 5

    def test_size_mismatch_fails_and_leaves_nothing(
        self, sink: Sink, prefix: str
    ) -> None:
        key = f"{prefix}sized"
        with pytest.raises(SinkError), sink.open_write(key, size=10) as out:
            out.write(b"short")
        assert sink.stat(key) is None
        sink.write_bytes(key, b"original")
        with pytest.raises(SinkError), sink.open_write(key, size=1) as out:
            out.write(b"too long")
        assert sink.read_bytes(key) == b"original"

    def test_stat_of_a_missing_key_is_none(self, sink: Sink, prefix: str) -> None:
        assert sink.stat(f"{prefix}missing") is None
        with pytest.raises(SinkError):
            sink.read_bytes(f"{prefix}missing")

    def test_list_keys_by_prefix_sorted(self, sink: Sink, prefix: str) -> None:
        names = ["b/2", "a/2", "a/10/x", "a/1", "ab", "a.txt", "c"]
        for name in names:
            sink.write_bytes(f"{prefix}{name}", name.encode())
        expected = sorted(f"{prefix}{name}" for name in names)
        assert list(sink.list_keys(prefix)) == expected
        assert list(sink.list_keys(f"{prefix}a/")) == [
            f"{prefix}a/1",
            f"{prefix}a/10/x",
            f"{prefix}a/2",
        ]
        assert list(sink.list_keys(f"{prefix}a")) == [
            f"{prefix}{name}" for name in ["a.txt", "a/1", "a/10/x", "a/2", "ab"]
        ]
        assert list(sink.list_keys(f"{prefix}a/1")) == [
            f"{prefix}a/1",
            f"{prefix}a/10/x",
        ]
        assert list(sink.list_keys(f"{prefix}zz")) == []
        assert list(sink.list_keys(f"{prefix}nothing/here/")) == []

    @pytest.mark.parametrize(
        "key",
        [
            *("", "../x", "a/../../x", "/abs", "a//b", "a/./b", "a/", "./a", "a\\b"),
            *("a\x00b", "a\nb", "a\rb", "a\x7fb"),
        ],
    )
    def test_unsafe_keys_are_rejected(self, sink: Sink, key: str) -> None:
        with pytest.raises(UnsafeKeyError):
            sink.write_bytes(key, b"x")
        with pytest.raises(UnsafeKeyError), sink.open_write(key):
            pass
        with pytest.raises(UnsafeKeyError):
            sink.stat(key)
        with pytest.raises(UnsafeKeyError):
            sink.read_bytes(key)

    def test_write_bytes_read_bytes_and_sha256(self, sink: Sink, prefix: str) -> None:
        key = f"{prefix}manifest/_manifest.json"
        data = b'{"files": []}\n'
        sink.write_bytes(key, data, metadata={"batch-id": "b1"})
        assert sink.read_bytes(key) == data
        assert sink.sha256(key) == hashlib.sha256(data).hexdigest()

    def test_unicode_key(self, sink: Sink, prefix: str) -> None:
        key = f"{prefix}données/ファイル 1.csv"
        sink.write_bytes(key, b"1,2\n")
        assert sink.read_bytes(key) == b"1,2\n"
        assert list(sink.list_keys(prefix)) == [key]

    def test_metadata_is_stored_with_the_object(self, sink: Sink, prefix: str) -> None:
        # The metadata the engine writes, for a name that is not ASCII.
        unit = WorkUnit(dataset_id="ds", batch_id="b1", batch_created_ms=CREATED_MS)
        file = FileRef(dataset_file_id="b1-1", name="données/ファイル 1.csv", length=3)
        metadata = source_metadata(unit, file)
        key = f"{prefix}with-metadata"
        with sink.open_write(key, size=3, metadata=metadata) as out:
            out.write(b"1,2")
        info = sink.stat(key)
        assert info is not None
        if not self.stores_metadata:
            assert info.metadata is None
            return
        assert info.metadata is not None
        assert {name: info.metadata.get(name) for name in metadata} == metadata
        sink.write_bytes(key, b"4,5", metadata={"aep-batch-id": "b2"})
        info = sink.stat(key)
        assert info is not None
        assert info.metadata is not None
        assert info.metadata.get("aep-batch-id") == "b2"
        assert "aep-file-name" not in info.metadata  # a rewrite replaces it all
        sink.write_bytes(key, b"6,7")
        info = sink.stat(key)
        assert info is not None
        assert info.metadata is not None
        assert "aep-batch-id" not in info.metadata

    @pytest.mark.parametrize(
        ("first", "second"),
        [("Data.csv", "data.csv"), ("caf\u00e9.csv", "cafe\u0301.csv")],
        ids=["case", "unicode"],
    )
    def test_keys_with_different_identities_are_different_objects(
        self, sink: Sink, prefix: str, first: str, second: str
    ) -> None:
        first, second = f"{prefix}{first}", f"{prefix}{second}"
        assert sink.key_identity(first) == sink.key_identity(first)
        sink.write_bytes(first, b"first")
        sink.write_bytes(second, b"second")
        if sink.key_identity(first) != sink.key_identity(second):
            assert sink.read_bytes(first) == b"first"
            assert sink.read_bytes(second) == b"second"
        else:  # one object in this sink: the second write replaced the first
            assert sink.read_bytes(first) == b"second"

    # -- writes in parts (optional: a sink whose open_parts gives None passes) --------

    def _parts_of(self, sink: Sink, parts: float) -> tuple[bytes, int]:
        """Random content of ``parts`` parts (the last one partial) and the part
        size: the sink's smallest, at least 64 KiB."""
        part_size = max(sink.min_part_size, 64 * 1024)
        rng = random.Random(4321)
        return rng.randbytes(int(part_size * parts)), part_size

    def test_parts_written_out_of_order_make_the_object(
        self, sink: Sink, prefix: str
    ) -> None:
        data, part_size = self._parts_of(sink, 2.5)
        key = f"{prefix}parts.bin"
        writer = sink.open_parts(
            key, size=len(data), part_size=part_size, metadata={"aep-batch-id": "b1"}
        )
        if writer is None:
            return  # the sink writes every object in one stream
        checksums: dict[int, str] = {}

        def send(number: int) -> None:
            start, end = part_range(number, len(data), part_size)
            checksums[number] = writer.write_part(number, data[start:end])

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(send, [3, 1, 2]))
        assert sink.stat(key) is None  # nothing visible before complete
        writer.complete(checksums)
        assert sink.read_bytes(key) == data
        info = sink.stat(key)
        assert info is not None
        assert info.size == len(data)
        if self.stores_metadata:
            assert info.metadata is not None
            assert info.metadata.get("aep-batch-id") == "b1"

    def test_a_reopened_write_keeps_only_intact_recorded_parts(
        self, sink: Sink, prefix: str
    ) -> None:
        data, part_size = self._parts_of(sink, 3.5)
        key = f"{prefix}resumed.bin"
        first = sink.open_parts(key, size=len(data), part_size=part_size)
        if first is None:
            return
        sent = {
            n: first.write_part(n, data[slice(*part_range(n, len(data), part_size))])
            for n in (1, 2, 3)
        }
        first.close()  # a stop: the parts stay
        again = sink.open_parts(
            key, size=len(data), part_size=part_size, resume=first.token
        )
        assert again is not None
        assert again.token == first.token
        recorded = {1: sent[1], 2: sent[1], 3: sent[3], 4: sent[3]}  # 2, 4 wrong
        assert again.resumable_parts(recorded) == {1, 3}
        checksums = {1: sent[1], 3: sent[3]}
        for number in (2, 4):
            part = data[slice(*part_range(number, len(data), part_size))]
            checksums[number] = again.write_part(number, part)
        again.complete(checksums)
        assert sink.read_bytes(key) == data

    def test_an_aborted_write_leaves_nothing_and_cannot_be_resumed(
        self, sink: Sink, prefix: str
    ) -> None:
        data, part_size = self._parts_of(sink, 1.5)
        key = f"{prefix}aborted.bin"
        writer = sink.open_parts(key, size=len(data), part_size=part_size)
        if writer is None:
            return
        checksum = writer.write_part(1, data[:part_size])
        writer.abort()
        assert sink.stat(key) is None
        again = sink.open_parts(
            key, size=len(data), part_size=part_size, resume=writer.token
        )
        assert again is not None
        assert again.token != writer.token
        assert again.resumable_parts({1: checksum}) == set()
        again.abort()

    def test_parts_of_the_wrong_size_or_missing_are_refused(
        self, sink: Sink, prefix: str
    ) -> None:
        data, part_size = self._parts_of(sink, 1.5)
        key = f"{prefix}refused.bin"
        writer = sink.open_parts(key, size=len(data), part_size=part_size)
        if writer is None:
            return
        with pytest.raises(SinkError):
            writer.write_part(2, data[part_size:] + b"x")
        checksums = {1: writer.write_part(1, data[:part_size])}
        with pytest.raises(SinkError):
            writer.complete(checksums)  # part 2 was never written
        assert sink.stat(key) is None
        writer.abort()
