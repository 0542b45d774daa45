"""AzureBlobSink on Azurite over HTTP: the sink contract, commits, crashes, errors."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from aep_extract.config import ConcurrencyConfig
from aep_extract.errors import (
    ConfigError,
    MissingResourceError,
    SinkError,
    UnsafeKeyError,
)
from aep_extract.models import ObjectInfo
from aep_extract.sinks import check_sink_url, open_sink
from aep_extract.sinks.azure import MIN_BLOCK_SIZE, AzureBlobSink, parse_azure_url
from aep_extract.testing.contracts import SinkContract

from .conftest import ACCOUNT, Azurite

BLOCK = MIN_BLOCK_SIZE


class Boom(Exception):
    """Raised by a source stream to make a write fail."""


def payload(size: int, seed: int = 7) -> bytes:
    """Deterministic bytes that differ from block to block."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def sink(azurite: Azurite, container: str) -> Iterator[AzureBlobSink]:
    with AzureBlobSink(
        f"azure://{container}/root",
        connection_string=azurite.connection_string,
        block_size=BLOCK,
    ) as opened:
        yield opened


class TestAzureBlobSink(SinkContract):
    pass  # the sink fixture above


def block_lists(azurite: Azurite, container: str, name: str) -> tuple[int, int]:
    """How many committed and uncommitted blocks the blob has."""
    with azurite.service() as service:
        blob = service.get_blob_client(container, name)
        committed, uncommitted = blob.get_block_list("all")
    return len(committed), len(uncommitted)


class FailingStream(io.RawIOBase):
    """A source that gives ``data`` and then raises, as a broken download does."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._source = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._source.readinto(buffer)
        if not count:
            raise Boom("the source broke mid-file")
        return count


def test_crash_mid_write_leaves_nothing_and_a_rerun_writes_the_whole_file(
    azurite, container, sink
):
    data = payload(3 * BLOCK + 12_345)
    key = "ds/date=2024-06-10/batch=b1/f1/part-0.parquet"
    with pytest.raises(Boom), sink.open_write(key, size=len(data)) as out:
        shutil.copyfileobj(FailingStream(data[: 2 * BLOCK + 100]), out, 64 * 1024)
    # Two blocks were staged, none committed: nothing at the key.
    assert block_lists(azurite, container, f"root/{key}") == (0, 2)
    assert sink.stat(key) is None
    assert list(sink.list_keys()) == []
    with pytest.raises(SinkError, match="no object"):
        sink.read_bytes(key)

    with sink.open_write(key, size=len(data)) as out:
        shutil.copyfileobj(io.BytesIO(data), out, 64 * 1024)
    assert sink.read_bytes(key) == data
    assert sink.stat(key) == ObjectInfo(key=key, size=len(data), metadata={})
    # The commit named the rerun's four blocks only and dropped the crashed ones.
    assert block_lists(azurite, container, f"root/{key}") == (4, 0)


def test_a_concurrent_commit_fails_the_other_writer_never_mixes_bytes(
    azurite, container
):
    url = f"azure://{container}/root"
    first = payload(3 * BLOCK, seed=1)
    second = payload(3 * BLOCK, seed=2)
    # Different block sizes: with shared block numbers, a commit of the first
    # writer's list would take the second writer's blocks of another size.
    small = AzureBlobSink(
        url, connection_string=azurite.connection_string, block_size=BLOCK
    )
    large = AzureBlobSink(
        url, connection_string=azurite.connection_string, block_size=2 * BLOCK
    )

    def write_while_another_writer_commits() -> None:
        with small.open_write("k") as out:
            out.write(first[: 2 * BLOCK + 1])  # stages two blocks
            large.write_bytes("k", second)
            out.write(first[2 * BLOCK + 1 :])

    with pytest.raises(SinkError, match="commit"):
        write_while_another_writer_commits()
    assert small.read_bytes("k") == second


def test_reads_stream_across_download_chunks(azurite, container):
    # Small download sizes, so that a read crosses the SDK's chunks; the sink is
    # given a container client, which it uses and leaves open.
    client = ContainerClient.from_connection_string(
        azurite.connection_string,
        container,
        max_single_get_size=MIN_BLOCK_SIZE,
        max_chunk_get_size=MIN_BLOCK_SIZE,
    )
    data = payload(3 * BLOCK + 777)
    with client, AzureBlobSink(f"azure://{container}/r", client=client) as sink:
        sink.write_bytes("k", data)
        with sink.open_read("k") as src:
            pieces = iter(lambda: src.read(100_000), b"")
            assert b"".join(pieces) == data
        assert sink.read_bytes("k") == data
        assert sink.url == f"{azurite.account_url}/{container}/r"
        sink.close()
        assert client.get_blob_client("r/k").exists()  # still open


def test_metadata_goes_to_azure_names_and_comes_back(azurite, container, sink):
    sink.write_bytes("k", b"x", metadata={"aep-file-name": "a%2Fb", "v2": "1"})
    with azurite.service() as service:
        stored = service.get_blob_client(container, "root/k").get_blob_properties()
    assert stored.metadata == {"aep_file_name": "a%2Fb", "v2": "1"}
    info = sink.stat("k")
    assert info is not None
    assert info.metadata == {"aep-file-name": "a%2Fb", "v2": "1"}


@pytest.mark.parametrize(
    "metadata",
    [{"Upper": "x"}, {"a_b": "x"}, {"1a": "x"}, {"a.b": "x"}, {"a": "caf\u00e9"}],
)
def test_metadata_azure_cannot_store_is_refused_before_writing(sink, metadata):
    with pytest.raises(SinkError, match="Azure metadata"):
        sink.write_bytes("k", b"x", metadata=metadata)
    assert sink.stat("k") is None


@pytest.mark.parametrize("key", ["a.", "dir./file", "x/y.", "a" * 1020])
def test_keys_azure_would_change_are_unsafe(sink, key):
    with pytest.raises(UnsafeKeyError):
        sink.key_identity(key)
    with pytest.raises(UnsafeKeyError):
        sink.write_bytes(key, b"x")
    with pytest.raises(UnsafeKeyError):
        sink.stat(key)


def test_keys_and_url_name_the_blob_under_the_prefix(azurite, container, sink):
    sink.write_bytes("a/b c?d#e%f", b"1")
    with azurite.service() as service:
        names = [b.name for b in service.get_container_client(container).list_blobs()]
    assert names == ["root/a/b c?d#e%f"]
    assert sink.key_identity("Data.csv") == "Data.csv"
    assert sink.url == f"{azurite.account_url}/{container}/root"
    assert repr(sink) == f"AzureBlobSink({sink.url!r})"
    assert (sink.container, sink.prefix) == (container, "root")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("azure://data", ("data", "")),
        ("azure://data/", ("data", "")),
        ("AZURE://my-data/raw/aep/", ("my-data", "raw/aep")),
    ],
)
def test_parse_azure_url(url, expected):
    assert parse_azure_url(url) == expected
    AzureBlobSink.check_url(url)
    check_sink_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "s3://data/x",
        "azure:/data",
        "azure://",
        "azure://Data",
        "azure://ab",
        "azure://a--b",
        "azure://-ab",
        "azure://data/a/../b",
        "azure://data/a./b",
    ],
)
def test_malformed_urls_are_configuration_errors(url):
    with pytest.raises(ConfigError):
        AzureBlobSink.check_url(url)
    with pytest.raises(ConfigError):
        AzureBlobSink.from_url(url, connection_string="unused")


def test_open_sink_reads_the_connection_string_from_the_environment(
    azure_env, container
):
    with open_sink(f"azure://{container}/p") as sink:
        assert isinstance(sink, AzureBlobSink)
        sink.check()
        sink.write_bytes("k", b"v")
        assert sink.read_bytes("k") == b"v"


def test_account_url_with_a_sas_token(azurite, container):
    sas = generate_container_sas(
        ACCOUNT,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, write=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    sink = AzureBlobSink(
        f"azure://{container}/p", account_url=azurite.account_url, credential=sas
    )
    sink.check()
    sink.write_bytes("k", b"v", metadata={"aep-batch-id": "b1"})
    assert sink.read_bytes("k") == b"v"
    assert "sig=" not in repr(sink)


def test_options_are_checked(azurite, monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    url = "azure://data/p"
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        AzureBlobSink(url)
    with pytest.raises(ConfigError, match="block_size"):
        AzureBlobSink(url, connection_string=azurite.connection_string, block_size=1)
    with pytest.raises(ConfigError, match="not several"):
        AzureBlobSink(
            url,
            connection_string=azurite.connection_string,
            account_url=azurite.account_url,
        )
    with pytest.raises(ConfigError, match="credential needs account_url"):
        AzureBlobSink(url, credential="key")
    with azurite.service() as service:
        other = service.get_container_client("other")
        with pytest.raises(ConfigError, match="'other'"):
            AzureBlobSink(url, client=other)


def test_a_malformed_connection_string_or_url_is_not_echoed(azurite):
    secret = "AccountKey=" + azurite.account_key
    with pytest.raises(ConfigError, match="connection string") as caught:
        AzureBlobSink("azure://data", connection_string=f"{secret};;garbage")
    assert azurite.account_key not in str(caught.value)
    assert caught.value.__cause__ is None
    with pytest.raises(ConfigError, match="account URL") as caught:
        AzureBlobSink("azure://data", account_url="//?sig=SECRETSIG")
    assert "SECRETSIG" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_missing_container_fails_the_check_and_is_an_error_elsewhere(azurite):
    sink = AzureBlobSink(
        "azure://absent/p", connection_string=azurite.connection_string
    )
    with pytest.raises(MissingResourceError, match="'absent' does not exist"):
        sink.check()
    with pytest.raises(SinkError, match="does not exist"):
        sink.stat("k")
    with pytest.raises(SinkError, match="does not exist"):
        list(sink.list_keys())
    with pytest.raises(SinkError):
        sink.write_bytes("k", b"v")


def test_a_wrong_key_is_a_sink_error_that_shows_no_key(azurite, container):
    wrong = azurite.connection_string.replace(
        azurite.account_key, "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIGtleSBvZiAzMiBieXQ="
    )
    sink = AzureBlobSink(f"azure://{container}", connection_string=wrong)
    with pytest.raises(SinkError, match="HTTP 403") as caught:
        sink.check()
    assert "credentials" in str(caught.value)
    assert "d3Jvbm" not in str(caught.value)


def test_a_network_error_shows_no_sas_signature(azurite):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sas = "sv=2023-11-03&sp=rl&sr=c&sig=TOPSECRETSIGNATURE%3D"
    client = BlobServiceClient(
        f"http://127.0.0.1:{port}/{ACCOUNT}", credential=sas, retry_total=0
    )
    sink = AzureBlobSink("azure://data/p", client=client)
    assert "sig=" not in repr(sink)
    with pytest.raises(SinkError) as caught:
        sink.stat("k")
    assert "TOPSECRET" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_without_the_extra_an_azure_url_is_a_configuration_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)  # not installed
    monkeypatch.delitem(sys.modules, "aep_extract.sinks.azure")
    with pytest.raises(ConfigError, match=r"pip install 'aep-extract\[azure\]'"):
        check_sink_url("azure://data/p")


def test_the_pool_follows_the_run_concurrency(azure_env, container):
    def pool_size(sink: AzureBlobSink) -> int:
        transport: Any = sink._owned._pipeline._transport  # type: ignore[union-attr]
        return int(transport.session.adapters["http://"]._pool_maxsize)

    url = f"azure://{container}/p"
    with AzureBlobSink(url) as default:
        assert pool_size(default) == ConcurrencyConfig().sink_connections == 12
    wide = ConcurrencyConfig(workers=40)
    with open_sink(url, concurrency=wide) as sink:
        assert isinstance(sink, AzureBlobSink)
        assert pool_size(sink) == 44
