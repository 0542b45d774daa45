"""A TableCatalog in the AWS Glue Data Catalog (what Athena and Spectrum read).

The table is an external Parquet table (``ParquetHiveSerDe``) at the dataset's
prefix, partitioned by ``date`` (a string); each partition is the ``date=D/``
folder under it. Every botocore error becomes a
:class:`~aep_extract.errors.CatalogError` (a missing database or table a
:class:`~aep_extract.errors.MissingResourceError`); throttling, 5xx answers and
connection failures are retried first under the library's one retry policy
(:mod:`aep_extract._retry`), as are the entries of a batch request that Glue
answers with a throttling or internal error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, cast

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .._aws_errors import Unprocessed, aws_config_errors, one_attempt_config
from .._retry import build_retrying, call_retrying
from ..config import RetryConfig
from ..errors import CatalogError, ConfigError, MissingResourceError
from .base import PARTITION_KEY, TableCatalog, check_date, check_name
from .hive_types import Column, SchemaLike, describe, table_columns

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_glue.type_defs import (
        ColumnTypeDef,
        PartitionInputTypeDef,
        StorageDescriptorTypeDef,
        TableTypeDef,
    )

__all__ = ["GlueCatalog"]

logger = logging.getLogger(__name__)

CREATE_LIMIT = 100
"""Partitions per ``BatchCreatePartition`` request (Glue's limit)."""
GET_LIMIT = 1000
"""Partitions per ``BatchGetPartition`` request (Glue's limit)."""

INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

_RETRIED_ENTRY_CODES = frozenset(
    {"ThrottlingException", "InternalServiceException", "OperationTimeoutException"}
)
"""Per-entry error codes of a batch request that another try may pass."""

_T = TypeVar("_T")


class _NoSuchTable(MissingResourceError):
    """The table does not exist (the database does)."""


class GlueCatalog(TableCatalog):
    """A table in the AWS Glue Data Catalog, partitioned by ``date``.

    Nothing is sent until a method is called. The database must exist; the
    table is created by :meth:`ensure_table` (or beforehand, by any tool, with a
    string partition key ``date``).

    Args:
        database: the Glue database.
        table: the table.
        location: the dataset's prefix, ``s3://bucket/prefix/dataset_id/`` (see
            :func:`~aep_extract.tables.table_location`).
        client: a boto3 Glue client to use as is (its own retry settings apply on
            top of ``retry``).
        session: a boto3 session to create the client from.
        region_name: the region, when neither client nor session is given
            (default: boto3's configuration chain).
        endpoint_url: an endpoint override; by default boto3 honours
            ``AWS_ENDPOINT_URL_GLUE`` and ``AWS_ENDPOINT_URL``.
        retry: attempts and backoff for throttled and failed requests, the only
            retries of a client this catalog creates.
        sleep: how to wait between attempts (inject a recorder in tests).

    Raises:
        ConfigError: an invalid database or table name, a location that is not
            ``s3://bucket/...``; no AWS credentials or region (the message says
            what to set).

    Example:
        >>> catalog = GlueCatalog(
        ...     "analytics", "events", location="s3://bucket/aep/5e8f81cf/"
        ... )  # doctest: +SKIP
        >>> catalog.add_partitions(["2024-06-10"])  # doctest: +SKIP
        1
    """

    def __init__(
        self,
        database: str,
        table: str,
        *,
        location: str,
        client: Optional[GlueClient] = None,
        session: Optional[boto3.Session] = None,
        region_name: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        retry: Optional[RetryConfig] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._database = check_name(database, "Glue database")
        self._table = check_name(table, "Glue table")
        self._location = _check_location(location)
        self._retry = retry or RetryConfig()
        self._retrying = build_retrying(self._retry, sleep=sleep)
        self._storage: Optional[dict[str, Any]] = None
        self._owns_client = client is None
        if client is None:
            with self._map_botocore_errors("create client"):
                client = (session or boto3.Session(region_name=region_name)).client(
                    "glue",
                    region_name=region_name,
                    endpoint_url=endpoint_url,
                    config=one_attempt_config(),
                )
        self._client = client

    @property
    def database(self) -> str:
        """The Glue database."""
        return self._database

    @property
    def table(self) -> str:
        """The table."""
        return self._table

    @property
    def location(self) -> str:
        """The table's location, ending in ``/``."""
        return self._location

    @property
    def client(self) -> GlueClient:
        """The boto3 Glue client in use."""
        return self._client

    def table_exists(self) -> bool:
        """Whether the table exists (``GetTable``).

        Raises:
            MissingResourceError: the database does not exist.
            CatalogError: Glue refused or failed.
        """
        return self._get_table() is not None

    def ensure_table(self, schema: SchemaLike) -> bool:
        """Create the table with the columns of ``schema`` unless it exists.

        An existing table is never changed (another tool may own it): columns or a
        location that differ from ``schema`` and :attr:`location` are logged as a
        WARNING, and the partitions added later take the table's own columns and
        format, as Athena expects.

        Args:
            schema: a ``pyarrow.Schema`` (e.g. ``pyarrow.parquet.read_schema`` of a
                copied file) or Glue column dicts (see
                :func:`~aep_extract.tables.table_columns`).

        Returns:
            True if this call created the table.

        Raises:
            MissingResourceError: the database does not exist.
            CatalogError: the existing table has another partition key, the schema
                has a type with no Hive equivalent, or Glue refused (e.g. missing
                ``glue:CreateTable``).
        """
        columns = table_columns(schema)
        existing = self._get_table()
        if existing is None:
            try:
                self._call(
                    "CreateTable",
                    lambda: self._client.create_table(
                        DatabaseName=self._database,
                        TableInput={
                            "Name": self._table,
                            "TableType": "EXTERNAL_TABLE",
                            "Parameters": {
                                "EXTERNAL": "TRUE",
                                "classification": "parquet",
                            },
                            "PartitionKeys": [
                                {"Name": PARTITION_KEY, "Type": "string"}
                            ],
                            "StorageDescriptor": _storage(columns, self._location),
                        },
                    ),
                )
            except CatalogError as exc:
                if _code(exc) != "AlreadyExistsException":
                    raise
                existing = self._get_table()  # another worker's, just now
            else:
                logger.info(
                    "created Glue table %s with %d column(s) at %s",
                    self,
                    len(columns),
                    self._location,
                )
                return True
        if existing is not None:
            self._check_table(existing, columns)
        return False

    def add_partitions(self, dates: Iterable[str]) -> int:
        """Add the partitions of these days (``BatchCreatePartition``, 100 a
        request); partitions that exist already are left as they are.

        Returns:
            How many partitions were new.

        Raises:
            ConfigError: a date that is not ``YYYY-MM-DD``.
            MissingResourceError: the database or table does not exist.
            CatalogError: Glue refused a partition or the request (e.g. missing
                ``glue:BatchCreatePartition``).
        """
        values = sorted({check_date(d) for d in dates})
        if not values:
            return 0
        storage = self._table_storage()
        added = 0
        for start in range(0, len(values), CREATE_LIMIT):
            chunk = values[start : start + CREATE_LIMIT]
            entries = [
                cast(
                    "PartitionInputTypeDef",
                    {
                        "Values": [date],
                        "StorageDescriptor": {
                            **storage,
                            "Location": self.partition_location(date),
                        },
                    },
                )
                for date in chunk
            ]
            added += self._call(
                "BatchCreatePartition", functools.partial(self._create, entries)
            )
        logger.info(
            "Glue table %s: %d of %d partition(s) new", self, added, len(values)
        )
        return added

    def missing_partitions(self, dates: Iterable[str]) -> list[str]:
        """The days among ``dates`` with no partition (``BatchGetPartition``, 1000 a
        request), sorted; all of them when the table does not exist.

        Raises:
            ConfigError: a date that is not ``YYYY-MM-DD``.
            MissingResourceError: the database does not exist.
            CatalogError: Glue refused or failed.
        """
        values = sorted({check_date(d) for d in dates})
        missing: list[str] = []
        for start in range(0, len(values), GET_LIMIT):
            chunk = values[start : start + GET_LIMIT]
            try:
                found = self._call(
                    "BatchGetPartition", functools.partial(self._found, chunk)
                )
            except _NoSuchTable:
                return values
            missing += [d for d in chunk if d not in found]
        return missing

    def close(self) -> None:
        """Close the connections of a client this catalog created (not a caller's)."""
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._database!r}, {self._table!r})"

    def __str__(self) -> str:
        return f"{self._database}.{self._table}"

    # -- requests -----------------------------------------------------------------

    def _get_table(self) -> Optional[TableTypeDef]:
        try:
            return self._call(
                "GetTable",
                lambda: self._client.get_table(
                    DatabaseName=self._database, Name=self._table
                ),
            )["Table"]
        except _NoSuchTable:
            return None

    def _table_storage(self) -> dict[str, Any]:
        """The table's storage descriptor, the template of its partitions'."""
        if self._storage is None:
            table = self._get_table()
            if table is None:
                raise MissingResourceError(
                    f"Glue table {self} does not exist: create it first "
                    "(ensure_table, or give a schema)"
                )
            self._storage = dict(table.get("StorageDescriptor", {}))
        return self._storage

    def _create(self, entries: Sequence[PartitionInputTypeDef]) -> int:
        response = self._client.batch_create_partition(
            DatabaseName=self._database,
            TableName=self._table,
            PartitionInputList=list(entries),
        )
        existed = 0
        for error in response.get("Errors", []):
            detail = error.get("ErrorDetail", {})
            code = detail.get("ErrorCode", "")
            if code == "AlreadyExistsException":
                existed += 1
                continue
            what = (
                f"Glue table {self}: partition {error.get('PartitionValues')} "
                f"refused: {code}: {detail.get('ErrorMessage', '')}"
            )
            if code in _RETRIED_ENTRY_CODES:  # the retry resends the whole chunk
                raise CatalogError(what) from Unprocessed(what)
            raise CatalogError(what)
        return len(entries) - existed

    def _found(self, dates: Sequence[str]) -> set[str]:
        response = self._client.batch_get_partition(
            DatabaseName=self._database,
            TableName=self._table,
            PartitionsToGet=[{"Values": [date]} for date in dates],
        )
        if response.get("UnprocessedKeys"):
            what = f"Glue table {self}: BatchGetPartition left keys unprocessed"
            raise CatalogError(what) from Unprocessed(what)
        return {p["Values"][0] for p in response.get("Partitions", []) if p["Values"]}

    def _check_table(self, table: TableTypeDef, columns: list[Column]) -> None:
        keys = [
            (k.get("Name", "").lower(), k.get("Type", "").lower())
            for k in table.get("PartitionKeys", [])
        ]
        if keys != [(PARTITION_KEY, "string")]:
            raise CatalogError(
                f"Glue table {self} exists with partition key(s) {keys or 'none'}; "
                f"its partitions must be one string key {PARTITION_KEY!r}"
            )
        storage = table.get("StorageDescriptor", {})
        stored, wanted = describe(storage.get("Columns", [])), describe(columns)
        if stored != wanted:
            changed = sorted(
                name
                for name in stored.keys() | wanted.keys()
                if stored.get(name) != wanted.get(name)
            )
            logger.warning(
                "Glue table %s exists with other columns than the files' (%s); "
                "kept as it is",
                self,
                ", ".join(changed),
            )
        location = storage.get("Location", "")
        if location.rstrip("/") != self._location.rstrip("/"):
            logger.warning(
                "Glue table %s is at %s, not %s; kept as it is (partitions are "
                "added under %s)",
                self,
                location,
                self._location,
                self._location,
            )

    # -- errors and retries -------------------------------------------------------

    def _call(self, operation: str, request: Callable[[], _T]) -> _T:
        """Send one request: mapped errors, transient failures retried."""

        def attempt() -> _T:
            logger.debug("%s %s", operation, self)
            with self._map_botocore_errors(operation):
                return request()

        return call_retrying(
            self._retrying, self._retry.attempts, CatalogError, attempt
        )

    @contextlib.contextmanager
    def _map_botocore_errors(self, operation: str) -> Iterator[None]:
        """botocore errors as CatalogError (a missing database or table as
        MissingResourceError), each raised from the botocore error: the retry
        policy judges that one."""
        try:
            with aws_config_errors():
                yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            message = (
                f"Glue table {self}: {operation} failed: {code}: "
                f"{error.get('Message', '')}"
            )
            if code == "EntityNotFoundException":
                detail = str(error.get("Message", ""))
                if detail.lower().startswith("database"):
                    raise MissingResourceError(
                        f"Glue database {self._database} does not exist: create "
                        f"it first ({operation}: {code}: {detail})"
                    ) from exc
                raise _NoSuchTable(message) from exc
            if code in ("AccessDeniedException", "AccessDenied"):
                message += f" (the caller needs glue:{operation})"
            raise CatalogError(message) from exc
        except BotoCoreError as exc:
            raise CatalogError(f"Glue table {self}: {operation} failed: {exc}") from exc


def _storage(columns: list[Column], location: str) -> StorageDescriptorTypeDef:
    return {
        "Columns": cast("list[ColumnTypeDef]", [dict(c) for c in columns]),
        "Location": location,
        "InputFormat": INPUT_FORMAT,
        "OutputFormat": OUTPUT_FORMAT,
        "SerdeInfo": {
            "SerializationLibrary": SERDE,
            "Parameters": {"serialization.format": "1"},
        },
    }


def _code(exc: BaseException) -> str:
    """The error code of the ClientError a mapped error was raised from."""
    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def _check_location(location: object) -> str:
    if (
        not isinstance(location, str)
        or not location.startswith("s3://")
        or not location[len("s3://") :].split("/", 1)[0]
    ):
        raise ConfigError(
            f"table location {location!r} is not an S3 URL (s3://bucket/prefix/)"
        )
    return location if location.endswith("/") else f"{location}/"
