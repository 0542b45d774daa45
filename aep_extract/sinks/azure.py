"""The Azure Blob sink: one block blob per key under ``azure://container/prefix``.

A blob becomes visible only when its block list is committed: every write stages
its bytes as blocks (``Put Block``, each with a Content-MD5 the service checks)
and makes them the blob in one ``Put Block List``, sent on a clean exit from
:meth:`AzureBlobSink.open_write` and never otherwise. Staged blocks that no
commit names stay invisible and are dropped by Azure (at the next commit of the
blob, or after a week).

Written on azure-storage-blob's own calls rather than smart_open's Azure writer:
smart_open numbers its blocks 1, 2, 3 ... in every writer, and a blob has one set
of uncommitted blocks shared by all its writers, so two writers of one key (a
worker whose lease expired and the one that took over, with different block
sizes) could commit a mix of each other's blocks as a whole object. Here each
writer's block ids carry a random id of their own: a concurrent commit makes the
other writer's commit fail (and its file be retried), never mixes their bytes.
smart_open also sends no per-block checksum.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Optional, Union, cast

import requests

# Without azure-storage-blob these fail: open_sink names the extra to install.
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from ..config import ConcurrencyConfig
from ..errors import ConfigError, MissingResourceError, SinkError, UnsafeKeyError
from ..layout import check_key
from ..models import ObjectInfo
from ._chunked import ChunkedWriter
from .base import Sink

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from azure.core.credentials import (
        AzureNamedKeyCredential,
        AzureSasCredential,
        TokenCredential,
    )
    from azure.storage.blob import BlobClient, StorageStreamDownloader

    AzureCredential = Union[
        str, AzureNamedKeyCredential, AzureSasCredential, TokenCredential
    ]

__all__ = [
    "CONNECTION_STRING_ENV",
    "AzureBlobSink",
    "parse_azure_url",
]

logger = logging.getLogger(__name__)

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
"""The environment variable the sink reads a connection string from by default."""

MiB = 1024 * 1024
DEFAULT_BLOCK_SIZE = 8 * MiB
"""Bytes per block unless the object's size needs larger ones."""
MIN_BLOCK_SIZE = 1 * MiB
MAX_BLOCK_SIZE = 4000 * MiB
"""Azure's limit for one block (service version 2019-12-12 and later)."""
MAX_BLOCKS = 50_000
"""Azure's limit of committed blocks in one block blob."""
MAX_BLOB_NAME = 1024
"""Azure's limit of characters in a blob name (the prefix included)."""

"""HTTP connections of a client the sink builds: one per worker thread, with room."""
CONNECTION_TIMEOUT = 20.0
READ_TIMEOUT = 120.0
"""Seconds, for a client the sink builds: no answer may take forever."""

# Azure's container naming rules: 3-63 characters of a-z, 0-9 and '-', starting and
# ending with a letter or digit, no '--'.
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
# Azure metadata names are C# identifiers, compared without case: the sink stores
# lower-case names of letters, digits and '-' with '-' spelled '_'.
_METADATA_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_SAS_SIGNATURE = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


def parse_azure_url(url: str) -> tuple[str, str]:
    """Split ``azure://container/prefix`` into container and prefix (slashes
    stripped).

    Raises:
        ConfigError: not an ``azure://`` URL, an invalid container name, or a prefix
            Azure could not store as given (see :meth:`AzureBlobSink.key_identity`).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "azure":
        raise ConfigError(
            f"not an Azure URL: {url!r}; expected azure://CONTAINER/PREFIX"
        )
    container, _, prefix = rest.partition("/")
    if not _CONTAINER.match(container):
        raise ConfigError(
            f"Azure URL {url!r}: invalid container name {container!r} (3-63 "
            "characters of a-z, 0-9 and '-', starting and ending with a letter or "
            "digit, no '--')"
        )
    prefix = prefix.strip("/")
    if prefix:
        try:
            _check_blob_name(prefix)
        except SinkError as exc:
            raise ConfigError(f"Azure URL {url!r}: invalid prefix: {exc}") from None
    return container, prefix


class AzureBlobSink(Sink):
    """Stores each key as the block blob ``prefix/key`` in an Azure container.

    An object is staged in blocks and committed with one ``Put Block List`` when
    :meth:`open_write` exits cleanly; on any error nothing is committed, so a key
    never shows a partial or empty object and keeps what it held before. Memory:
    each open writer buffers one block.

    Credentials, in this order: ``client``; ``account_url`` with ``credential``;
    ``connection_string``; the connection string in the environment variable
    ``AZURE_STORAGE_CONNECTION_STRING``. The sink never shows a connection
    string, key or SAS token (nor keeps the connection string).

    Thread-safe: the client is shared; each writer belongs to one thread.

    Args:
        url: ``azure://container`` or ``azure://container/prefix``.
        client: a ``BlobServiceClient`` or ``ContainerClient`` (of this container)
            to use as is (not closed by :meth:`close`).
        account_url: the blob endpoint, e.g. ``https://ACCOUNT.blob.core.windows.net``.
        credential: for ``account_url``: an account key, a SAS token, an
            ``AzureNamedKeyCredential``, ``AzureSasCredential`` or an
            azure-identity credential; None for a public or SAS-bearing URL.
        connection_string: a storage account connection string.
        block_size: bytes per block, 1 MiB to 4000 MiB; larger when an object of
            known size needs more than 50,000 blocks of it.
        concurrency: sizes the connection pool of a client the sink builds
            (:attr:`~aep_extract.ConcurrencyConfig.sink_connections`; default
            ``ConcurrencyConfig()``'s).

    Raises:
        ConfigError: an invalid URL or option, no credentials, or a malformed
            connection string.
    """

    uses_concurrency = True

    def __init__(
        self,
        url: str,
        *,
        client: Optional[Union[BlobServiceClient, ContainerClient]] = None,
        account_url: Optional[str] = None,
        credential: Optional[AzureCredential] = None,
        connection_string: Optional[str] = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        concurrency: Optional[ConcurrencyConfig] = None,
    ) -> None:
        self._container_name, self._prefix = parse_azure_url(url)
        self._root = f"{self._prefix}/" if self._prefix else ""
        if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
            raise ConfigError(
                f"block_size must be between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE} "
                f"bytes (1 MiB to 4000 MiB), got {block_size}"
            )
        self._block_size = block_size
        given = [
            name
            for name, value in (
                ("client", client),
                ("account_url", account_url),
                ("connection_string", connection_string),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ConfigError(f"pass one of {', '.join(given)}, not several")
        if credential is not None and account_url is None:
            raise ConfigError("credential needs account_url")
        self._owned: Optional[BlobServiceClient] = None
        if client is None:
            pool = (concurrency or ConcurrencyConfig()).sink_connections
            client = self._owned = _build_client(
                account_url, credential, connection_string, pool
            )
        if isinstance(client, ContainerClient):
            if client.container_name != self._container_name:
                raise ConfigError(
                    f"the client is for container {client.container_name!r}, the "
                    f"URL names {self._container_name!r}"
                )
            self._container = client
        else:
            self._container = client.get_container_client(self._container_name)
        # scheme://host[/account]: never the client's url, which carries a SAS.
        self._endpoint = f"{client.scheme}://{client.primary_hostname}".rstrip("/")

    @classmethod
    def check_url(cls, url: str) -> None:
        """Check the URL's form, opening nothing.

        Raises:
            ConfigError: not ``azure://container[/prefix]`` with a valid name.
        """
        parse_azure_url(url)

    @property
    def container(self) -> str:
        """The container name."""
        return self._container_name

    @property
    def prefix(self) -> str:
        """The key prefix without slashes at either end; empty for the container."""
        return self._prefix

    @property
    def url(self) -> str:
        """The account's blob endpoint, container and prefix
        (``https://ACCOUNT.blob.core.windows.net/container/prefix``): unlike
        ``azure://container/prefix``, it tells two accounts apart."""
        return f"{self._endpoint}/{self._container_name}/{self._prefix}".rstrip("/")

    def open_write(
        self,
        key: str,
        *,
        size: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open ``key`` for writing; the blob appears only when the block succeeds.

        ``metadata`` becomes the blob's metadata, committed with its blocks.

        Raises:
            UnsafeKeyError: the key would escape the prefix or Azure would change it.
            SinkError: Azure refused, metadata Azure cannot store, more than 50,000
                blocks, or ``size`` was given and a different number of bytes was
                written.
        """
        blob = self._blob(key)
        block_size = self.block_size_for(size)
        writer = _BlockWriter(
            blob,
            block_size=block_size,
            metadata=_to_azure_metadata(metadata or {}),
            errors=self._map_azure_errors,
            label=key,
        )
        return self._write(writer, size)

    def block_size_for(self, size: Optional[int]) -> int:
        """The block size a write of ``size`` bytes (None: unknown) would use.

        Raises:
            SinkError: the object cannot fit in 50,000 blocks of at most 4000 MiB.
        """
        if size is None or size <= self._block_size * MAX_BLOCKS:
            return self._block_size
        needed = -(-size // MAX_BLOCKS)
        needed = -(-needed // MiB) * MiB
        if needed > MAX_BLOCK_SIZE:
            raise SinkError(
                f"an object of {size} bytes does not fit in {MAX_BLOCKS} blocks of "
                f"at most {MAX_BLOCK_SIZE} bytes"
            )
        return needed

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Stream a stored blob.

        Raises:
            UnsafeKeyError: the key would escape the prefix.
            SinkError: no such blob, or Azure refused (also while streaming).
        """
        blob = self._blob(key)
        with self._map_azure_errors("read", key):
            download = blob.download_blob(max_concurrency=1)
        return cast("BinaryIO", _DownloadReader(download, self._map_azure_errors, key))

    def stat(self, key: str) -> Optional[ObjectInfo]:
        """Size and metadata of a stored blob, or None when there is none.

        Raises:
            UnsafeKeyError: the key would escape the prefix.
            SinkError: the container does not exist, or Azure refused.
        """
        blob = self._blob(key)
        try:
            with self._map_azure_errors("stat", key):
                properties = blob.get_blob_properties()
        except _NoSuchBlob:
            return None
        return ObjectInfo(
            key=key,
            size=properties.size,
            metadata=_from_azure_metadata(properties.metadata or {}),
        )

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key starting with ``prefix``, in Azure's (lexicographic)
        order; blobs with uncommitted blocks only are not listed.

        Lazy: pages are fetched as the iterator advances.

        Raises:
            SinkError: the container does not exist, or Azure refused (while
                iterating).
        """
        return self._list_keys(prefix)

    def key_identity(self, key: str) -> str:
        """The key itself: blob names are compared exactly (case and Unicode
        form included).

        Raises:
            UnsafeKeyError: the key would escape the prefix, has a segment ending
                in ``.`` (which Azure drops from URLs), or is longer than Azure
                allows.
        """
        self._blob_name(key)
        return key

    def check(self) -> None:
        """Fail early when the container does not exist or cannot be reached.

        Lists at most one blob under the sink's prefix, which a SAS or role
        limited to listing and writing the container allows.

        Raises:
            MissingResourceError: no such container.
            SinkError: Azure refused (e.g. authentication failed) or cannot be
                reached.
        """
        pages = self._container.list_blobs(
            name_starts_with=self._root or None, results_per_page=1
        ).by_page()
        try:
            with self._map_azure_errors("list", self._root or None):
                next(pages, None)
        except _NoSuchContainer as exc:
            raise MissingResourceError(str(exc)) from exc.__cause__

    def close(self) -> None:
        """Close the client if the sink built it."""
        if self._owned is not None:
            self._owned.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- helpers ------------------------------------------------------------------

    def _blob_name(self, key: str) -> str:
        name = self._root + check_key(key)
        _check_blob_name(name)
        return name

    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(self._blob_name(key))

    def _list_keys(self, prefix: str) -> Iterator[str]:
        pages = self._container.list_blobs(
            name_starts_with=self._root + prefix
        ).by_page()
        while True:
            # Only the request runs inside the mapper, never the caller's loop body.
            with self._map_azure_errors("list keys under", prefix):
                page = next(pages, None)
                names = [] if page is None else [item.name for item in page]
            if page is None:
                return
            for name in names:
                yield name[len(self._root) :]

    @contextlib.contextmanager
    def _write(self, writer: _BlockWriter, size: Optional[int]) -> Iterator[BinaryIO]:
        try:
            yield cast("BinaryIO", writer)
            writer.commit(size)
        finally:
            writer.close()  # frees the buffer; staged blocks stay uncommitted

    @contextlib.contextmanager
    def _map_azure_errors(
        self, action: str, key: Optional[str] = None
    ) -> Iterator[None]:
        """The one place where azure-core's errors become SinkError; messages carry
        the service's error code and first line, never a URL (a SAS rides in it)."""
        what = action if key is None else f"{action} {key!r}"
        try:
            yield
        except ResourceNotFoundError as exc:
            code = _error_code(exc)
            if code == "ContainerNotFound":
                raise _NoSuchContainer(
                    f"{self!r}: container {self._container_name!r} does not exist"
                ) from exc
            if code in ("BlobNotFound", "") and key is not None:
                # A HEAD answer has no body; Azure still sends the code as a header.
                raise _NoSuchBlob(f"{self!r}: no object {key!r}") from exc
            raise SinkError(f"{self!r}: cannot {what}: {_describe(exc)}") from exc
        except HttpResponseError as exc:
            hint = ""
            if isinstance(exc, ClientAuthenticationError) or exc.status_code in (
                401,
                403,
            ):
                hint = (
                    "; check the credentials and the role or SAS permissions (the "
                    "Azure sink docs list them)"
                )
            raise SinkError(f"{self!r}: cannot {what}: {_describe(exc)}{hint}") from exc
        except AzureError as exc:
            # A transport error's text names the URL, SAS signature included: the
            # cause is dropped and the text redacted.
            raise SinkError(
                f"{self!r}: cannot {what}: {type(exc).__name__}: {_redact(str(exc))}"
            ) from None


class _NoSuchContainer(SinkError):
    """The container does not exist."""


class _NoSuchBlob(SinkError):
    """The blob does not exist; callers may turn it to None."""


class _BlockWriter(ChunkedWriter):
    """Stages one blob's blocks, holding at most one block in memory.

    Block ids are this writer's random id and the block's number, all of one
    length (Azure requires that within a blob). :meth:`commit` stages the last
    block and commits the list, with the metadata; nothing else makes the blob
    visible. Not thread-safe: one writer belongs to one ``with`` block.
    """

    def __init__(
        self,
        blob: BlobClient,
        *,
        block_size: int,
        metadata: Mapping[str, str],
        errors: Any,
        label: str,
    ) -> None:
        super().__init__(block_size, label)
        self._blob = blob
        self._metadata = dict(metadata)
        self._errors = errors
        self._writer_id = uuid.uuid4().hex
        self._blocks: list[BlobBlock] = []

    def commit(self, expected_size: Optional[int]) -> None:
        """Stage the last block and commit the block list (an empty list for an
        empty object).

        Raises:
            SinkError: the byte count differs from ``expected_size``, or Azure
                refused.
        """
        self._check_size(expected_size)
        if self._buffer.tell():
            self._send_chunk()
        with self._errors("commit", self._label):
            self._blob.commit_block_list(self._blocks, metadata=self._metadata)
        logger.debug(
            "committed %s (%d bytes, %d blocks)",
            self._blob.blob_name,
            self.written,
            len(self._blocks),
        )

    def _send_chunk(self) -> None:
        """Stage the buffer as the next block."""
        number = len(self._blocks) + 1
        if number > MAX_BLOCKS:
            raise SinkError(
                f"{self._label!r}: more than {MAX_BLOCKS} blocks of {self._chunk_size} "
                "bytes; pass size= to open_write or raise block_size"
            )
        block_id = base64.b64encode(f"{self._writer_id}{number:06d}".encode()).decode()
        with self._errors("stage a block of", self._label):
            self._blob.stage_block(
                block_id,
                self._buffer.getvalue(),
                length=self._buffer.tell(),
                validate_content=True,
            )
        self._blocks.append(BlobBlock(block_id=block_id))
        logger.debug("staged block %d of %s", number, self._blob.blob_name)


class _DownloadReader(io.RawIOBase):
    """A blob download as a file; errors while streaming become SinkError."""

    def __init__(
        self, download: StorageStreamDownloader[bytes], errors: Any, key: str
    ) -> None:
        super().__init__()
        self._chunks = download.chunks()
        self._errors = errors
        self._key = key
        self._pending = memoryview(b"")  # a view: consuming it copies nothing

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if self.closed:
            raise ValueError("read from a closed Azure blob")
        if not self._pending:
            self._pending = memoryview(self._next_chunk())
        view = memoryview(buffer).cast("B")
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def readall(self) -> bytes:
        parts = [bytes(self._pending)]
        self._pending = memoryview(b"")
        while chunk := self._next_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def _next_chunk(self) -> bytes:
        with self._errors("read", self._key):
            return next(self._chunks, b"")


def _check_blob_name(name: str) -> None:
    if len(name) > MAX_BLOB_NAME:
        raise UnsafeKeyError(
            f"unsafe key {name[:80]!r}...: longer than Azure's {MAX_BLOB_NAME} "
            "characters for a blob name"
        )
    if any(part.endswith(".") for part in name.split("/")):
        raise UnsafeKeyError(
            f"unsafe key {name!r}: Azure drops a '.' that ends a name or path "
            "segment, so the blob would not be found under this key"
        )


def _to_azure_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Metadata as Azure stores it: '-' in names spelled '_'.

    Raises:
        SinkError: a name other than lower-case letters, digits and '-' starting
            with a letter, or a value that is not printable ASCII.
    """
    for name, value in metadata.items():
        if not _METADATA_NAME.match(name) or not all(" " <= ch <= "~" for ch in value):
            raise SinkError(
                f"metadata {name!r}: {value!r}: Azure metadata names must be "
                "lower-case letters, digits and '-' starting with a letter, values "
                "printable ASCII"
            )
    return {name.replace("-", "_"): value for name, value in metadata.items()}


def _from_azure_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {name.lower().replace("_", "-"): value for name, value in metadata.items()}


def _describe(exc: HttpResponseError) -> str:
    """Status, Azure's error code and the first line of its message."""
    message = _redact((exc.message or "").split("\n", 1)[0].strip())
    code = _error_code(exc) or exc.reason or ""
    return f"HTTP {exc.status_code} {code}: {message}".rstrip(": ")


def _error_code(exc: HttpResponseError) -> str:
    """Azure's error code (set by azure-storage-blob, sometimes as an enum)."""
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))


def _redact(text: str) -> str:
    return _SAS_SIGNATURE.sub(r"\1***", text)


def _build_client(
    account_url: Optional[str],
    credential: Optional[AzureCredential],
    connection_string: Optional[str],
    pool: int,
) -> BlobServiceClient:
    """A client with bounded timeouts and a pool for every worker thread."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    options: dict[str, Any] = {
        "transport": RequestsTransport(session=session, session_owner=True),
        "connection_timeout": CONNECTION_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "user_agent": "aep-extract",
    }
    if account_url is None:
        if connection_string is None:
            connection_string = os.environ.get(CONNECTION_STRING_ENV)
        if not connection_string:
            raise ConfigError(
                f"no Azure credentials: set {CONNECTION_STRING_ENV}, or pass "
                "connection_string, account_url (with credential) or client"
            )
    try:
        if account_url is not None:
            return BlobServiceClient(account_url, credential=credential, **options)
        assert connection_string is not None  # checked above, for mypy
        return BlobServiceClient.from_connection_string(connection_string, **options)
    except ValueError:
        # The message may quote the string or URL, with a key or SAS: never chained.
        what = "account URL" if account_url is not None else "connection string"
        raise ConfigError(
            f"the Azure storage {what} is malformed (not shown: it may hold a key "
            "or SAS token)"
        ) from None
