"""open_store and open_sink: URL forms and their errors."""

from __future__ import annotations

import os

import pytest

from aep_extract.checkpoints import (
    MemoryCheckpointStore,
    SQLiteCheckpointStore,
    check_store_url,
    open_store,
)
from aep_extract.errors import CheckpointError, ConfigError, MissingResourceError
from aep_extract.sinks import LocalSink, MemorySink, check_sink_url, open_sink

# -- open_store -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://", "MEMORY://", "memory:///"])
def test_memory_store(url):
    store = open_store(url)
    assert isinstance(store, MemoryCheckpointStore)


def test_memory_store_takes_kwargs():
    store = open_store("memory://", clock=lambda: 5.0)
    assert store.clock() == 5.0


def test_sqlite_three_slashes_is_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///state/run.db", timeout=1.0) as store:
        assert isinstance(store, SQLiteCheckpointStore)
        assert store.path == "state/run.db"
    assert (tmp_path / "state" / "run.db").is_file()


def test_sqlite_four_slashes_is_an_absolute_path(tmp_path):
    target = tmp_path / "abs" / "run.db"
    with open_store(f"sqlite:///{target}") as store:
        assert isinstance(store, SQLiteCheckpointStore)
        assert store.path == str(target)
        assert os.path.isabs(store.path)
    assert target.is_file()


def test_sqlite_without_a_path_is_in_memory():
    with open_store("sqlite://") as store:
        assert isinstance(store, SQLiteCheckpointStore)
        assert store.path == ":memory:"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///", "names no file"),
        ("sqlite://state.db", "sqlite:///state.db"),
        ("sqlite:state.db", "unsupported"),
        ("postgres://db/x", "unsupported"),
        ("state.db", "unsupported"),
        ("", "empty store URL"),
        ("memory://name", "nothing may follow memory://"),
        ("dynamodb://", "table name"),
        ("dynamodb://ab", "table name"),
        ("dynamodb://has space", "table name"),
        ("dynamodb://a/b", "table name"),
    ],
)
def test_bad_store_urls(url, message):
    with pytest.raises(ConfigError, match=message) as caught:
        open_store(url)
    if message == "unsupported":
        assert "sqlite:////absolute/path.db" in str(caught.value)
    with pytest.raises(ConfigError) as checked:
        check_store_url(url)
    assert str(checked.value) == str(caught.value)


@pytest.mark.parametrize(
    "url", ["memory://", "sqlite://", "sqlite:///x/y.db", "dynamodb://aep-state"]
)
def test_check_store_url_opens_nothing(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_store_url(url)
    assert list(tmp_path.iterdir()) == []


def test_sqlite_read_only_of_a_missing_file_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingResourceError, match="no state database at /"):
        open_store("sqlite:///typo/state.db", read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_sqlite_read_only_opens_an_existing_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    open_store(url).close()
    with open_store(url, read_only=True) as store:
        assert isinstance(store, SQLiteCheckpointStore)
        assert store.read_only
        assert store.list("ds") == []
        with pytest.raises(CheckpointError, match="read-only"):
            store.raise_watermark("ds", 1)


@pytest.mark.parametrize("url", ["memory://", "sqlite://"])
def test_read_only_in_memory_stores_are_empty(url):
    with open_store(url, read_only=True) as store:
        assert store.list("ds") == []


def missing_module(name, package=None):
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_dynamodb_store_missing_module_is_a_config_error(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib, "import_module", missing_module)
    with pytest.raises(ConfigError, match="cannot be imported"):
        open_store("dynamodb://aep-extract-state")


def test_dynamodb_import_failure_of_a_dependency_is_reported(monkeypatch):
    import importlib

    def broken(name, package=None):
        raise ModuleNotFoundError("No module named 'boto3'", name="boto3")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ConfigError, match="boto3"):
        open_store("dynamodb://aep-extract-state")


def test_dynamodb_store_is_built_with_the_table_name(monkeypatch):
    from aep_extract.checkpoints.dynamodb import DynamoDBCheckpointStore

    built: dict[str, object] = {}

    def record(self, table, **kwargs):
        built.update(table=table, **kwargs)

    monkeypatch.setattr(DynamoDBCheckpointStore, "__init__", record)
    store = open_store("dynamodb://aep-extract.state_1", create_table=True)
    assert isinstance(store, DynamoDBCheckpointStore)
    assert built == {
        "table": "aep-extract.state_1",
        "create_table": True,
        "read_only": False,
    }
    open_store("dynamodb://aep-extract.state_1/", read_only=True)
    assert built["read_only"] is True


# -- open_sink ------------------------------------------------------------------------


def test_plain_path_is_a_local_sink(tmp_path):
    sink = open_sink(str(tmp_path / "out"))
    assert isinstance(sink, LocalSink)
    assert sink.root == str(tmp_path / "out")


def test_relative_path_is_resolved_now(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sink = open_sink("out/dir")
    assert isinstance(sink, LocalSink)
    assert sink.root == str(tmp_path / "out" / "dir")


@pytest.mark.parametrize("form", ["file://{path}", "file://localhost{path}"])
def test_file_url_is_a_local_sink(tmp_path, form):
    path = tmp_path / "with space"
    sink = open_sink(form.format(path=str(path).replace(" ", "%20")))
    assert isinstance(sink, LocalSink)
    assert sink.root == str(path)


@pytest.mark.parametrize("url", ["memory://", "Memory://"])
def test_memory_sink(url):
    assert isinstance(open_sink(url), MemorySink)


def test_s3_sink_missing_module_is_a_config_error(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib, "import_module", missing_module)
    with pytest.raises(ConfigError, match="cannot be imported"):
        open_sink("s3://bucket/prefix")


def test_s3_sink_is_built_with_the_url(monkeypatch):
    from aep_extract.sinks.s3 import S3Sink

    built: dict[str, object] = {}

    def record(self, url, **kwargs):
        built.update(url=url, **kwargs)

    monkeypatch.setattr(S3Sink, "__init__", record)
    sink = open_sink("s3://bucket/prefix", client="c")
    assert isinstance(sink, S3Sink)
    assert built == {"url": "s3://bucket/prefix", "client": "c"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("gs://bucket/x", "unsupported"),
        ("https://example.com/x", "unsupported"),
        ("memory://name", "nothing may follow memory://"),
        ("file://remote-host/x", "not local"),
        ("file://", "file:///absolute/path"),
        ("file:///x?y=1", "file:///absolute/path"),
    ],
)
def test_bad_sink_urls(url, message):
    with pytest.raises(ConfigError, match=message) as caught:
        open_sink(url)
    with pytest.raises(ConfigError) as checked:
        check_sink_url(url)
    assert str(checked.value) == str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://Bad_Bucket/x", "invalid bucket name"),
        ("s3://bucket/a/../b", "invalid prefix"),
    ],
)
def test_bad_s3_urls_are_refused_before_any_client(url, message, monkeypatch):
    from aep_extract.sinks import s3

    def no_client(*args, **kwargs):
        raise AssertionError("a client was built")

    monkeypatch.setattr(s3, "_build_client", no_client)
    with pytest.raises(ConfigError, match=message):
        check_sink_url(url)
    with pytest.raises(ConfigError, match=message):
        open_sink(url)


@pytest.mark.parametrize("url", ["out/dir", "file:///data/out", "memory://"])
def test_check_sink_url_opens_nothing(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_sink_url(url)
    check_sink_url("s3://bucket/prefix")
    assert list(tmp_path.iterdir()) == []
