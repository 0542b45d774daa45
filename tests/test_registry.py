"""The backend registry: schemes to classes, run-time and entry-point registrations,
and the CLI and openers built on it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aep_extract import (
    Batch,
    ConfigError,
    MemoryCheckpointStore,
    MemorySink,
    open_sink,
    open_source,
    open_store,
    registry,
)
from aep_extract.cli import main
from aep_extract.sinks import check_sink_url
from aep_extract.sources import check_source_url
from aep_extract.testing import MemoryAepSource


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


class VaultSink(MemorySink):
    """A sink of a made-up scheme: ``vault://NAME``."""

    opened: ClassVar[list[str]] = []

    @classmethod
    def check_url(cls, url: str) -> None:
        if not registry.url_rest(url):
            raise ConfigError(f"sink URL {url!r} names no vault")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> VaultSink:
        cls.check_url(url)
        cls.opened.append(url)
        return cls(**options)


def test_a_sink_registered_at_run_time_opens_by_url(capsys):
    registry.register(
        "sink", "vault", VaultSink, forms=["vault://NAME"], summary="a vault"
    )
    assert isinstance(open_sink("Vault://gold"), VaultSink)
    assert VaultSink.opened[-1] == "Vault://gold"
    check_sink_url("vault://silver")
    with pytest.raises(ConfigError, match="names no vault"):
        check_sink_url("vault://")
    assert "vault://NAME" in registry.forms("sink")
    assert main(["run", "--help"]) == 0
    assert "vault://NAME" in " ".join(capsys.readouterr().out.split())


def test_a_registered_import_path_loads_on_first_use():
    registry.register("sink", "vault", "tests.test_registry:VaultSink")
    assert registry.get_class("sink", "vault://x") is VaultSink


def test_schemes_are_not_taken_silently():
    with pytest.raises(ConfigError, match=r"registered to .*S3Sink"):
        registry.register("sink", "s3", VaultSink)
    registry.register("sink", "s3", VaultSink, clobber=True)
    assert isinstance(open_sink("s3://bucket"), VaultSink)
    registry.reset()
    assert registry.get_class("sink", "s3://bucket").__name__ == "S3Sink"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: registry.register("sink", "x", VaultSink), "two or more"),
        (lambda: registry.register("sink", "a b", VaultSink), "not a URL scheme"),
        (lambda: registry.register("sink", "vault", "no_colon"), "package.module"),
        (lambda: registry.register("queue", "vault", VaultSink), "unknown backend"),  # type: ignore[arg-type]
    ],
)
def test_bad_registrations(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_a_backend_that_cannot_be_imported_names_its_extra():
    registry.register(
        "sink", "gone", "no_such_package.sink:GoneSink", extra="gone-cloud"
    )
    with pytest.raises(ConfigError) as caught:
        open_sink("gone://bucket")
    message = str(caught.value)
    assert "no_such_package" in message
    assert "pip install 'aep-extract[gone-cloud]'" in message


class PlainStore(MemoryCheckpointStore):
    """A store that takes its URL whole and has no read-only mode."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    @classmethod
    def check_url(cls, url: str) -> None:
        if not registry.url_rest(url):
            raise ConfigError(f"store URL {url!r} names no database")

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False, **options: Any) -> Any:
        # The default of CheckpointStore, past MemoryCheckpointStore's override.
        return super(MemoryCheckpointStore, cls).from_url(
            url, read_only=read_only, **options
        )


def test_a_store_is_built_from_its_url_and_refuses_read_only_it_lacks():
    registry.register("store", "plain", PlainStore)
    store = open_store("plain://db/x")
    assert isinstance(store, PlainStore)
    assert store.url == "plain://db/x"
    with pytest.raises(ConfigError, match="names no database"):
        open_store("plain://")
    with pytest.raises(ConfigError, match="PlainStore cannot be opened read-only"):
        open_store("plain://db/x", read_only=True)


def test_a_class_that_is_no_backend_is_refused():
    registry.register("store", "plain", "collections:OrderedDict")
    with pytest.raises(ConfigError, match="is not a store class"):
        open_store("plain://x")


def test_unknown_schemes_list_every_known_form():
    with pytest.raises(ConfigError) as caught:
        open_source("kafka://topic")
    assert str(caught.value) == (
        "unsupported source URL 'kafka://topic'; expected one of: aep://"
    )
    with pytest.raises(ConfigError, match="nothing may follow aep://"):
        check_source_url("aep://platform.adobe.io")


def test_open_source_reads_the_aep_variables(monkeypatch):
    for name in ("AEP_CLIENT_ID", "AEP_CLIENT_SECRET", "AEP_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="AEP_CLIENT_ID"):
        open_source()


# -- entry points ------------------------------------------------------------------


@pytest.fixture
def installed_package(tmp_path, monkeypatch):
    """A distribution on sys.path whose entry points add a sink and a store, and
    try to take ``s3://``."""
    (tmp_path / "vault_backends.py").write_text(
        textwrap.dedent(
            """
            from aep_extract import MemoryCheckpointStore, MemorySink

            class EntrySink(MemorySink):
                @classmethod
                def from_url(cls, url, **options):
                    return cls(**options)

            class EntryStore(MemoryCheckpointStore):
                @classmethod
                def from_url(cls, url, *, read_only=False, **options):
                    return cls(**options)
            """
        )
    )
    info = tmp_path / "vault_backends-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vault-backends\n")
    (info / "entry_points.txt").write_text(
        "[aep_extract.sinks]\n"
        "vault = vault_backends:EntrySink\n"
        "s3 = vault_backends:EntrySink\n"
        "[aep_extract.stores]\n"
        "vault = vault_backends:EntryStore\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reset()


@pytest.mark.usefixtures("installed_package")
def test_entry_points_add_backends_but_take_no_built_in_scheme():
    sink = open_sink("vault://anything")
    assert type(sink).__name__ == "EntrySink"
    assert isinstance(sink, MemorySink)
    store = open_store("vault://x")
    assert type(store).__name__ == "EntryStore"
    assert isinstance(store, MemoryCheckpointStore)
    assert registry.get_class("sink", "s3://bucket").__name__ == "S3Sink"
    assert "vault://..." in registry.forms("sink")


# -- a source by URL, end to end through the CLI ---------------------------------


class ShelfSource(MemoryAepSource):
    """One batch of two files, at ``shelf://``."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ShelfSource:
        registry.require_bare("source", url)
        batch = Batch(
            batch_id="b1",
            dataset_id="ds1",
            status="success",
            created_ms=1_717_977_600_000,
        )
        return cls("ds1", {batch: {("f1", "a.parquet"): b"A" * 9, ("f2", "b"): b"B"}})


def run_from(source: str, tmp_path: Path) -> int:
    """``aep-extract run`` of dataset ds1 from ``source`` into ``tmp_path``."""
    window = ["--start", "2024-06-10T00:00:00Z", "--end", "2024-06-11T00:00:00Z"]
    store = f"sqlite:///{tmp_path / 'state.db'}"
    sink = str(tmp_path / "out")
    args = ["--source", source, "--dataset", "ds1", "--store", store, "--sink", sink]
    return main(["run", *args, *window])


def test_the_cli_runs_a_registered_source(tmp_path, capsys):
    registry.register("source", "shelf", ShelfSource, forms=["shelf://"])
    assert run_from("shelf://", tmp_path) == 0
    copied = {
        path.name: path.read_bytes()
        for path in (tmp_path / "out").rglob("*")
        if path.is_file() and not path.name.endswith(".json")
    }
    assert copied == {"a.parquet": b"A" * 9, "b": b"B"}


def test_the_cli_refuses_an_unknown_source_before_opening_anything(tmp_path, capsys):
    assert run_from("kafka://topic", tmp_path) == 2
    assert "--source: unsupported source URL 'kafka://topic'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
