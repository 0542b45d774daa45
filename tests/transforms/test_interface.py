"""The Transform interface on its own: outputs committed whole and only after the
source was read to its listed length, keys derived from the source's."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, BinaryIO, Callable, Optional

import pytest

from aep_extract import (
    ConfigError,
    IncompleteDownload,
    MemorySink,
    TransformError,
    UnsafeKeyError,
    registry,
)
from aep_extract.transforms import (
    CountingReader,
    Outputs,
    Transform,
    TransformContext,
    TransformOutput,
    open_transform,
    output_key,
    output_keys,
    run_transform,
)

from .conftest import KEY, chunks, context

DATA = b"the bytes of one source file, streamed in small chunks\n" * 50


class Upper(Transform):
    """Streams its source, upper-cased, into one output."""

    name = "upper"

    def __init__(self, body: Optional[Callable[[BinaryIO, Outputs], None]] = None):
        self.body = self.stream if body is None else body

    @property
    def spec(self) -> str:
        return "upper"

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (".upper",)

    def apply(self, source: BinaryIO, context: TransformContext, out: Outputs) -> None:
        self.body(source, out)

    @staticmethod
    def stream(source: BinaryIO, out: Outputs) -> None:
        with out.open(".upper") as target:
            for chunk in iter(lambda: source.read(7), b""):
                target.write(chunk.upper())


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def run(transform: Transform, source: Any, sink: MemorySink) -> list[TransformOutput]:
    return run_transform(transform, source, context(DATA), sink, metadata={"a": "b"})


def test_a_streaming_transform_writes_one_whole_output_at_a_derived_key():
    sink = MemorySink()
    (output,) = run(Upper(), chunks(DATA, 100), sink)
    expected = DATA.upper()
    assert output == TransformOutput(
        key=KEY.replace(".parquet", ".upper"),
        size=len(expected),
        sha256=hashlib.sha256(expected).hexdigest(),
    )
    assert output.to_json() == {
        "key": output.key,
        "size": output.size,
        "sha256": output.sha256,
    }
    assert sink.read_bytes(output.key) == expected
    info = sink.stat(output.key)
    assert info is not None
    assert info.metadata == {"a": "b"}
    assert output_keys(Upper(), KEY) == [output.key]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (DATA[:-1], r"got 2749 of 2750 bytes"),
        (DATA + b"x", r"more than the listed 2750 bytes"),
    ],
    ids=["short", "long"],
)
def test_a_source_of_another_length_leaves_no_output(source, message):
    sink = MemorySink()
    with pytest.raises(IncompleteDownload, match=message):
        run(Upper(), chunks(source, 100), sink)
    assert list(sink.list_keys()) == []


def test_bytes_past_the_length_in_a_later_chunk_are_refused_at_commit():
    """A transform that reads exactly the listed length never asks for more: the
    commit looks for more, and finds the stream too long."""

    def exact(source: BinaryIO, out: Outputs) -> None:
        with out.open(".upper") as target:
            target.write(source.read(len(DATA)))

    sink = MemorySink()
    with pytest.raises(IncompleteDownload, match="more than the listed"):
        run(Upper(exact), iter([DATA, b"extra"]), sink)
    assert list(sink.list_keys()) == []
    run(Upper(exact), iter([DATA]), sink)
    assert sink.read_bytes(KEY.replace(".parquet", ".upper")) == DATA


def test_an_output_committed_before_the_source_is_read_whole_is_refused():
    def early(source: BinaryIO, out: Outputs) -> None:
        with out.open(".upper") as target:
            target.write(source.read(10))

    sink = MemorySink()
    with pytest.raises(TransformError, match="read 10 of 2750 bytes"):
        run(Upper(early), chunks(DATA), sink)
    assert list(sink.list_keys()) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            lambda source, out: out.open(".other").__enter__(),
            "'.other' is not declared",
        ),
        (lambda source, out: source.read(), "outputs not written: .*part-00000.upper"),
    ],
    ids=["undeclared", "missing"],
)
def test_outputs_must_be_the_declared_ones(body, message):
    sink = MemorySink()
    with pytest.raises(TransformError, match=message):
        run(Upper(body), chunks(DATA), sink)
    assert list(sink.list_keys()) == []


def test_an_output_written_twice_is_refused():
    def twice(source: BinaryIO, out: Outputs) -> None:
        Upper.stream(source, out)
        with out.open(".upper"):
            pass

    with pytest.raises(TransformError, match="written twice"):
        run(Upper(twice), chunks(DATA), MemorySink())


def test_a_failing_transform_leaves_nothing():
    def fails(source: BinaryIO, out: Outputs) -> None:
        with out.open(".upper") as target:
            target.write(source.read())
            raise TransformError("bad row")

    sink = MemorySink()
    with pytest.raises(TransformError, match="bad row"):
        run(Upper(fails), chunks(DATA), sink)
    assert list(sink.list_keys()) == []


def test_the_counting_reader_checksums_and_closes_the_download():
    closed = []

    def download() -> Iterator[bytes]:
        try:
            yield from chunks(DATA, 333)
        finally:
            closed.append(True)

    source = download()
    next(source)  # started, as a real download is
    with CountingReader(source, len(DATA) - 333, "f") as reader:
        assert reader.read() == DATA[333:]
        reader.check_complete()
        assert reader.sha256 == hashlib.sha256(DATA[333:]).hexdigest()
    assert closed == [True]


@pytest.mark.parametrize(
    ("key", "suffix", "expected"),
    [
        ("a/b/part-0.parquet", ".jsonl.gz", "a/b/part-0.jsonl.gz"),
        ("a/b/part-0.snappy.parquet", ".parquet", "a/b/part-0.parquet"),
        ("a/b/part-0.c000.gz.parquet", ".jsonl.gz", "a/b/part-0.c000.jsonl.gz"),
        ("a/b/x.snappy", ".jsonl.gz", "a/b/x.jsonl.gz"),
        ("a/noext", ".x", "a/noext.x"),
        ("a/.hidden", ".x", "a/.hidden.x"),
        ("top.parquet", "-0.csv", "top-0.csv"),
    ],
)
def test_output_keys_replace_the_extension_and_codec(key, suffix, expected):
    assert output_key(key, suffix) == expected


@pytest.mark.parametrize("suffix", ["", "/x", "/../x"])
def test_an_output_suffix_cannot_leave_the_source_folder(suffix):
    with pytest.raises(UnsafeKeyError):
        output_key("a/b.parquet", suffix)


def test_a_transform_registered_at_run_time_opens_by_name():
    registry.register("transform", "upper", Upper, summary="upper-cases")
    transform = open_transform("upper")
    assert isinstance(transform, Upper)
    assert "upper[:OPTIONS]" in registry.forms("transform")
    with pytest.raises(ConfigError, match="unknown option 'level'; options: none"):
        open_transform("upper:level=3")
    with pytest.raises(ConfigError, match="cannot be followed by 'jsonl'"):
        open_transform(["upper", "jsonl"])


def test_transform_names_are_checked_and_not_taken_silently():
    with pytest.raises(ConfigError, match="not a transform name"):
        registry.register("transform", "Up per", Upper)
    with pytest.raises(
        ConfigError, match=r"transform jsonl is registered to .*JsonLines"
    ):
        registry.register("transform", "jsonl", Upper)
    registry.register("transform", "jsonl", Upper, clobber=True)
    assert isinstance(open_transform("jsonl"), Upper)


def test_a_registered_target_that_is_no_transform_is_refused():
    registry.register("transform", "nope", "aep_extract.models:FileRef")
    with pytest.raises(ConfigError, match="is not a Transform"):
        open_transform("nope")
