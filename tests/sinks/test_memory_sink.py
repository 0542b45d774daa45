"""MemorySink: the sink contract, plus metadata."""

from __future__ import annotations

import pytest

from aep_extract.errors import SinkError
from aep_extract.sinks import MemorySink
from aep_extract.testing.contracts import SinkContract


class TestMemorySink(SinkContract):
    @pytest.fixture
    def sink(self):
        return MemorySink()


def test_metadata_is_kept():
    sink = MemorySink()
    sink.write_bytes("a/b", b"x", metadata={"sha256": "abc"})
    assert sink.metadata("a/b") == {"sha256": "abc"}
    sink.write_bytes("a/b", b"y")
    assert sink.metadata("a/b") == {}
    with pytest.raises(SinkError):
        sink.metadata("missing")


def test_closing_the_buffer_inside_the_block_fails_the_write():
    sink = MemorySink()
    with pytest.raises(SinkError), sink.open_write("k") as out:
        out.close()
    assert sink.stat("k") is None
