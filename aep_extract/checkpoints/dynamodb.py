"""A checkpoint store in a DynamoDB table, shared by any number of hosts.

One item per work unit, keyed by ``BatchID`` (partition) and ``OffsetRange`` (sort; a
whole batch is ``"0-*"``), with the seed's attributes plus lease and progress fields
(see :mod:`._dynamodb_items`), and per dataset an item holding its watermark and one
holding its destination. The global secondary index ``DatasetID-Status-index`` lists a
dataset's units by status; a dataset's own items have neither of its keys, so it never
holds them.

Every write of a unit is a conditional ``PutItem``: registration only creates absent
items (``attribute_not_exists``), and every later write is a compare-and-swap on
``Version``. Raising a watermark is a ``PutItem`` conditional on the stored one being
lower, binding a destination one conditional on there being none. Every botocore
error becomes a :class:`~aep_extract.errors.CheckpointError`; throttling, 5xx answers
and connection failures are retried first, under the library's one retry policy
(:mod:`aep_extract._retry`, set by a :class:`~aep_extract.RetryConfig`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, cast

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .._aws_errors import Unprocessed, aws_config_errors, one_attempt_config
from .._retry import build_retrying, call_retrying
from ..config import RetryConfig
from ..errors import (
    CheckpointConflict,
    CheckpointError,
    ConfigError,
    MissingResourceError,
)
from ..models import WHOLE_BATCH, Checkpoint, UnitStatus
from ..registry import url_rest
from . import _dynamodb_items as items
from .base import CheckpointStore, group_by_batch

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import KeyTypeType
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        GlobalSecondaryIndexTypeDef,
        KeysAndAttributesTypeDef,
        KeySchemaElementTypeDef,
        QueryInputTypeDef,
        TableDescriptionTypeDef,
        WaiterConfigTypeDef,
    )

    from ._dynamodb_items import Item

__all__ = ["GSI_NAME", "DynamoDBCheckpointStore"]

logger = logging.getLogger(__name__)

GSI_NAME = "DatasetID-Status-index"
"""The global secondary index listing a dataset's units by status."""

BATCH_GET_LIMIT = 100
"""Keys per ``BatchGetItem`` request (DynamoDB's limit)."""

CLAIM_PAGE = 100
"""Pending units one index page read for a claim holds; later claims of the process
try the rest of them before reading the index again."""

CLAIM_PAGE_SECONDS = 30.0
"""How long claims keep trying the units of such a page before reading afresh."""

_KEY_SCHEMA: tuple[tuple[str, KeyTypeType], ...] = (
    (items.PARTITION_KEY, "HASH"),
    (items.SORT_KEY, "RANGE"),
)
_GSI_KEY_SCHEMA: tuple[tuple[str, KeyTypeType], ...] = (
    (items.DATASET, "HASH"),
    (items.STATUS, "RANGE"),
)

_WRITES = frozenset({"PutItem", "DeleteItem", "CreateTable"})
"""The operations a read-only store refuses."""

_WAITER_CONFIG: WaiterConfigTypeDef = {"Delay": 2, "MaxAttempts": 150}
"""Poll DescribeTable every 2 s for up to 5 minutes while a new table gets ACTIVE."""

_T = TypeVar("_T")


class _ConditionFailed(CheckpointConflict):
    """A conditional write lost; ``item`` is the stored item when DynamoDB sent it."""

    def __init__(
        self, message: str, item: Optional[dict[str, AttributeValueTypeDef]]
    ) -> None:
        super().__init__(message)
        self.item = item


class DynamoDBCheckpointStore(CheckpointStore):
    """Checkpoints in a DynamoDB table: durable and shared by workers on many hosts.

    The table has partition key ``BatchID`` and sort key ``OffsetRange`` (strings) and
    a global secondary index ``DatasetID-Status-index`` (``DatasetID``, ``Status``,
    projection ALL). :meth:`create_table` makes one with on-demand billing, or the
    table can be provisioned beforehand (see the DynamoDB page of the docs).

    The constructor calls ``DescribeTable`` once to fail early when AWS credentials
    or region are missing, or the table is missing or has another key schema; with
    ``create_table`` it creates a missing table (and only then calls
    ``CreateTable``).

    Args:
        table_name: the table.
        client: a boto3 DynamoDB client to use as is: its own retry settings
            apply on top of this store's (each of this store's attempts is then up
            to botocore's attempts); pass ``Config(retries={"total_max_attempts":
            1})`` to leave retrying to ``retry`` alone.
        session: a boto3 session to create the client from.
        region_name: the region, when neither client nor session is given (default:
            boto3's configuration chain).
        endpoint_url: an endpoint override; by default boto3 honours
            ``AWS_ENDPOINT_URL_DYNAMODB`` and ``AWS_ENDPOINT_URL``.
        create_table: create the table (and wait until it is ACTIVE) if it is absent.
        clock: epoch-seconds clock; defaults to :func:`time.time`.
        retry: attempts and backoff for throttled and failed requests: the
            library's one retry policy, the only retries of a client the store
            creates (its botocore retries are off, ``total_max_attempts=1``).
        sleep: how to wait between attempts (inject a recorder in tests).
        read_only: only read: every write raises CheckpointError (and the table is
            never created).

    Raises:
        ConfigError: both ``create_table`` and ``read_only``; no AWS credentials,
            no region, an unknown profile (or another AWS configuration error):
            the message says what to set.
        MissingResourceError: the table does not exist (and ``create_table`` is
            False).
        CheckpointError: the table has another schema, or AWS cannot be reached.

    Example:
        >>> store = DynamoDBCheckpointStore(
        ...     "aep-extract", region_name="eu-west-1", create_table=True
        ... )  # doctest: +SKIP
    """

    consistent_listing = False  # _scan reads a GSI, eventually consistent

    @classmethod
    def check_url(cls, url: str) -> None:
        """``dynamodb://TABLE``."""
        _table_of(url)

    @classmethod
    def from_url(
        cls, url: str, *, read_only: bool = False, **options: Any
    ) -> DynamoDBCheckpointStore:
        """The store in the table a ``dynamodb://TABLE`` URL names."""
        return cls(_table_of(url), read_only=read_only, **options)

    def __init__(
        self,
        table_name: str,
        *,
        client: Optional[DynamoDBClient] = None,
        session: Optional[boto3.Session] = None,
        region_name: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        create_table: bool = False,
        clock: Optional[Callable[[], float]] = None,
        retry: Optional[RetryConfig] = None,
        sleep: Callable[[float], None] = time.sleep,
        read_only: bool = False,
    ) -> None:
        check_table_name(table_name)
        if create_table and read_only:
            raise ConfigError(
                f"DynamoDB table {table_name}: a read-only store cannot create it"
            )
        if clock is not None:
            self.clock = clock
        self._table = table_name
        self._read_only = read_only
        # Per dataset: when a page of Pending units was read for claims, and those
        # of its units no write of this store has touched since (see _candidates).
        self._claim_lock = threading.Lock()
        self._claim_pages: dict[str, tuple[float, dict[tuple[str, str], Checkpoint]]]
        self._claim_pages = {}
        self._retry = retry or RetryConfig()
        # Not stopped by an aborting run: leases are given back even then.
        self._retrying = build_retrying(self._retry, sleep=sleep, stop_on_abort=False)
        self._owns_client = client is None
        if client is None:
            with self._map_botocore_errors("create client"):
                client = (session or boto3.Session(region_name=region_name)).client(
                    "dynamodb",
                    region_name=region_name,
                    endpoint_url=endpoint_url,
                    config=one_attempt_config(),
                )
        self._client = client
        try:
            table = self._describe()
        except MissingResourceError:
            if not create_table:
                raise
            # Only now: CreateTable is a control-plane call, rate-limited and
            # often not granted to the workers of a pre-provisioned table.
            self.create_table()
            table = self._describe()
        self._check_table(table)
        if table.get("TableStatus") == "CREATING":  # e.g. another worker's create
            self._wait_until_active()
        logger.debug("opened %r", self)

    def check(self) -> None:
        """Fail now if the table is gone or has another schema (``DescribeTable``).

        Raises:
            MissingResourceError: the table does not exist (the message names it
                and ``--create-table``).
            CheckpointError: the table has another schema, or AWS cannot be
                reached.
        """
        self._check()

    @property
    def table_name(self) -> str:
        """The DynamoDB table."""
        return self._table

    @property
    def region_name(self) -> str:
        """The client's AWS region."""
        return str(self._client.meta.region_name)

    @property
    def client(self) -> DynamoDBClient:
        """The boto3 DynamoDB client in use."""
        return self._client

    @property
    def read_only(self) -> bool:
        """Whether the store refuses every write."""
        return self._read_only

    def create_table(self) -> None:
        """Create the table with on-demand billing and wait until it is ACTIVE.

        Idempotent: an existing table is left as it is (and waited for if it is
        still being created).

        Raises:
            CheckpointError: the table cannot be created (e.g. missing
                ``dynamodb:CreateTable`` permission).
        """
        attributes = (items.PARTITION_KEY, items.SORT_KEY, items.DATASET, items.STATUS)
        index: GlobalSecondaryIndexTypeDef = {
            "IndexName": GSI_NAME,
            "KeySchema": _key_schema(_GSI_KEY_SCHEMA),
            "Projection": {"ProjectionType": "ALL"},
        }
        try:
            self._call(
                "CreateTable",
                lambda: self._client.create_table(
                    TableName=self._table,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": name, "AttributeType": "S"}
                        for name in attributes
                    ],
                    KeySchema=_key_schema(_KEY_SCHEMA),
                    GlobalSecondaryIndexes=[index],
                ),
            )
        except CheckpointError as exc:
            if not _caused_by(exc, "ResourceInUseException"):
                raise
            logger.debug("table %s exists already", self._table)
        else:
            logger.info(
                "created DynamoDB table %s in %s", self._table, self.region_name
            )
        self._wait_until_active()

    def _wait_until_active(self) -> None:
        with self._map_botocore_errors("wait for the table"):
            self._client.get_waiter("table_exists").wait(
                TableName=self._table, WaiterConfig=_WAITER_CONFIG
            )

    # -- primitives ---------------------------------------------------------------

    def _insert(self, checkpoints: Sequence[Checkpoint]) -> int:
        fresh: dict[tuple[str, str], Checkpoint] = {}
        for cp in checkpoints:  # BatchGetItem refuses duplicate keys
            fresh.setdefault((cp.unit.batch_id, cp.unit.offset_range), cp)
        keys = list(fresh)
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            for known in self._existing(keys[start : start + BATCH_GET_LIMIT]):
                del fresh[known]
        inserted = 0
        for cp in fresh.values():
            # The read above saves the writes for known units; the condition is what
            # guarantees that a unit registered meanwhile is never overwritten.
            if self._put(items.to_item(cp), "attribute_not_exists(#b)", {}):
                inserted += 1
        logger.debug("registered %d of %d unit(s)", inserted, len(checkpoints))
        return inserted

    def _load(self, batch_id: str, offset_range: str) -> Optional[Checkpoint]:
        response = self._call(
            "GetItem",
            lambda: self._client.get_item(
                TableName=self._table,
                Key=items.key(batch_id, offset_range),
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        if item is None or not items.is_unit(item):
            return None
        return items.from_item(item)

    def _replace(self, checkpoint: Checkpoint, expected_version: int) -> None:
        unit = checkpoint.unit
        with self._claim_lock:  # written or lost: no longer a claim candidate
            page = self._claim_pages.get(unit.dataset_id)
            if page is not None:
                page[1].pop((unit.batch_id, unit.offset_range), None)
        written = self._put(
            items.to_item(checkpoint),
            "attribute_exists(#b) AND #v = :v",
            {":v": {"N": str(expected_version)}},
        )
        if not written:
            with self._claim_lock:  # others work here: the kept page is stale
                self._claim_pages.pop(unit.dataset_id, None)
            raise CheckpointConflict(
                f"unit {checkpoint.unit_id}: version {expected_version} is not current"
            )

    def _delete(self, batch_id: str, offset_range: str) -> None:
        # Unconditional: deleting an absent item succeeds, so a retried request
        # whose first answer was lost is harmless.
        self._call(
            "DeleteItem",
            lambda: self._client.delete_item(
                TableName=self._table, Key=items.key(batch_id, offset_range)
            ),
        )

    def _scan(
        self, dataset_id: str, statuses: Optional[Collection[UnitStatus]] = None
    ) -> Iterator[Checkpoint]:
        # GSI reads are eventually consistent: a unit may show its previous status
        # for a moment. That is safe because every write is a compare-and-swap on
        # Version (_replace): a claim based on a stale read simply loses.
        for status in (
            [None] if statuses is None else dict.fromkeys(map(UnitStatus, statuses))
        ):
            for page in self._query(dataset_id, status):
                yield from page

    def _candidates(self, dataset_id: str, status: UnitStatus) -> Iterator[Checkpoint]:
        """Pending units for a claim without an index read per claim: the units
        left of the page an earlier claim read (:data:`CLAIM_PAGE` units, at most
        :data:`CLAIM_PAGE_SECONDS` old), then a fresh page, kept for the next
        claims, then the rest of the index. Each claim is a compare-and-swap, so
        a unit another worker took meanwhile only costs a write that loses; the
        first such loss drops the page, and the next claim reads afresh."""
        if status is not UnitStatus.PENDING:
            return super()._candidates(dataset_id, status)
        return self._pending_candidates(dataset_id)

    def _pending_candidates(self, dataset_id: str) -> Iterator[Checkpoint]:
        with self._claim_lock:
            read_at, kept = self._claim_pages.get(dataset_id, (None, {}))
        if read_at is not None and self.clock() - read_at < CLAIM_PAGE_SECONDS:
            yield from self._still_kept(dataset_id, list(kept))
        pages = self._query(dataset_id, UnitStatus.PENDING, limit=CLAIM_PAGE)
        first = next(pages, [])
        random.shuffle(first)  # workers of other processes spread out
        fresh = {(cp.unit.batch_id, cp.unit.offset_range): cp for cp in first}
        with self._claim_lock:
            self._claim_pages[dataset_id] = (self.clock(), fresh)
        yield from self._still_kept(dataset_id, list(fresh))
        for page in pages:  # every unit of the page was taken meanwhile
            yield from page

    def _still_kept(
        self, dataset_id: str, keys: Sequence[tuple[str, str]]
    ) -> Iterator[Checkpoint]:
        """The kept candidates of these keys that no write has touched since."""
        for key in keys:
            with self._claim_lock:
                page = self._claim_pages.get(dataset_id)
                kept = None if page is None else page[1].get(key)
            if kept is not None:
                yield kept

    def get_many(
        self, dataset_id: str, batch_ids: Iterable[str]
    ) -> dict[str, list[Checkpoint]]:
        """The units of each of ``batch_ids`` that has some in the dataset, read
        by key and strongly consistent: ``BatchGetItem`` of the whole-batch keys,
        100 a request, then a ``Query`` of the partition of each batch without a
        whole-batch unit (new, or split into offset ranges)."""
        wanted = sorted(set(batch_ids))
        found: list[Checkpoint] = []
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            chunk = wanted[start : start + BATCH_GET_LIMIT]
            whole = [
                items.from_item(item)
                for item in self._batch_get([(b, WHOLE_BATCH) for b in chunk])
            ]
            found += whole
            seen = {cp.unit.batch_id for cp in whole}
            for batch_id in chunk:
                if batch_id not in seen:
                    found += self._partition(batch_id)
        return group_by_batch(cp for cp in found if cp.unit.dataset_id == dataset_id)

    def _load_watermark(self, dataset_id: str) -> Optional[int]:
        response = self._call(
            "GetItem",
            lambda: self._client.get_item(
                TableName=self._table,
                Key=items.watermark_key(dataset_id),
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        return None if item is None else items.watermark_from_item(item)

    def _save_watermark(self, dataset_id: str, end_ms: Optional[int]) -> None:
        # Both unconditional, so a retried request is harmless.
        if end_ms is None:
            self._call(
                "DeleteItem",
                lambda: self._client.delete_item(
                    TableName=self._table, Key=items.watermark_key(dataset_id)
                ),
            )
            return
        item = items.watermark_item(dataset_id, end_ms, self.clock())
        self._call(
            "PutItem",
            lambda: self._client.put_item(TableName=self._table, Item=item),
        )

    def raise_watermark(self, dataset_id: str, end_ms: int) -> None:
        """A consistent read, then a ``PutItem`` conditional on the stored watermark
        being absent or lower, so racing planners never lose the later end. The
        read first makes a rerun that plans nothing new cost no write."""
        current = self._load_watermark(dataset_id)
        if current is not None and current >= end_ms:
            return
        item = items.watermark_item(dataset_id, end_ms, self.clock())
        try:
            self._call(
                "PutItem",
                lambda: self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#p) OR #p < :p",
                    ExpressionAttributeNames={"#p": items.PLANNED_UNTIL},
                    ExpressionAttributeValues={":p": item[items.PLANNED_UNTIL]},
                ),
            )
        except _ConditionFailed:
            # Already as high (or a retry finding its own first attempt applied).
            logger.debug("watermark of %s is at or past %d already", dataset_id, end_ms)

    def _load_destination(self, dataset_id: str) -> Optional[str]:
        response = self._call(
            "GetItem",
            lambda: self._client.get_item(
                TableName=self._table,
                Key=items.destination_key(dataset_id),
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        return None if item is None else items.destination_from_item(item)

    def _save_destination(self, dataset_id: str, destination: Optional[str]) -> None:
        # Both unconditional, so a retried request is harmless.
        if destination is None:
            self._call(
                "DeleteItem",
                lambda: self._client.delete_item(
                    TableName=self._table, Key=items.destination_key(dataset_id)
                ),
            )
            return
        item = items.destination_item(dataset_id, destination)
        self._call(
            "PutItem",
            lambda: self._client.put_item(TableName=self._table, Item=item),
        )

    def _bind_destination(self, dataset_id: str, destination: str) -> str:
        """A read, and only when nothing is bound a ``PutItem`` conditional on
        the item being absent: of racing first bindings exactly one lands; the
        others read what it recorded. A bound dataset costs no write."""
        recorded = self._load_destination(dataset_id)
        if recorded is not None:
            return recorded
        try:
            self._call(
                "PutItem",
                lambda: self._client.put_item(
                    TableName=self._table,
                    Item=items.destination_item(dataset_id, destination),
                    ConditionExpression="attribute_not_exists(#b)",
                    ExpressionAttributeNames={"#b": items.PARTITION_KEY},
                ),
            )
        except _ConditionFailed:
            # Bound already (or a retry finding its own first attempt applied).
            recorded = self._load_destination(dataset_id)
            if recorded is None:
                raise CheckpointConflict(
                    f"destination of dataset {dataset_id} was removed while "
                    "binding it; try again"
                ) from None
            return recorded
        return destination

    # -- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Close the connections of a client this store created (not a caller's)."""
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._table!r}, region={self.region_name!r})"

    # -- requests -----------------------------------------------------------------

    def _existing(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of at most 100 keys have an item (strongly consistent)."""
        found = self._batch_get(keys, (items.PARTITION_KEY, items.SORT_KEY))
        return {(i[items.PARTITION_KEY]["S"], i[items.SORT_KEY]["S"]) for i in found}

    def _batch_get(
        self,
        keys: Sequence[tuple[str, str]],
        attributes: Optional[Sequence[str]] = None,
    ) -> list[Item]:
        """The items of at most 100 keys that have one (strongly consistent), with
        only ``attributes`` if given."""
        found: list[Item] = []
        pending: list[Item] = [items.key(*k) for k in keys]

        def fetch() -> None:
            nonlocal pending
            request: KeysAndAttributesTypeDef = {
                "Keys": pending,
                "ConsistentRead": True,
            }
            if attributes is not None:
                names = {f"#a{n}": name for n, name in enumerate(attributes)}
                request["ProjectionExpression"] = ", ".join(names)
                request["ExpressionAttributeNames"] = names
            response = self._client.batch_get_item(RequestItems={self._table: request})
            found.extend(response.get("Responses", {}).get(self._table, []))
            unprocessed = response.get("UnprocessedKeys", {}).get(self._table)
            pending = list(unprocessed["Keys"]) if unprocessed else []
            if pending:
                # Partial answers are DynamoDB's way of throttling a batch: back off.
                raise CheckpointError(
                    f"{self!r}: BatchGetItem left {len(pending)} key(s) unprocessed"
                ) from Unprocessed()

        self._call("BatchGetItem", fetch)
        return found

    def _partition(self, batch_id: str) -> list[Checkpoint]:
        """Every unit of a batch: a strongly consistent ``Query`` of its partition."""
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "KeyConditionExpression": "#b = :b",
            "ExpressionAttributeNames": {"#b": items.PARTITION_KEY},
            "ExpressionAttributeValues": {":b": {"S": batch_id}},
            "ConsistentRead": True,
        }
        return [cp for page in self._pages(request) for cp in page]

    def _put(
        self,
        item: Item,
        condition: str,
        values: dict[str, AttributeValueTypeDef],
    ) -> bool:
        """A conditional PutItem; False when the condition failed.

        A retried write may find its own earlier attempt applied (the answer was lost
        to a timeout or reset): when the stored item is the one we are writing, the
        write counts as done rather than as a conflict.
        """
        names = {"#b": items.PARTITION_KEY}
        if ":v" in values:
            names["#v"] = "Version"
        extra: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
        try:
            self._call(
                "PutItem",
                lambda: self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **extra,
                ),
            )
        except _ConditionFailed as exc:
            return exc.item is not None and items.from_item(exc.item) == (
                items.from_item(item)
            )
        return True

    def _query(
        self, dataset_id: str, status: Optional[UnitStatus], limit: Optional[int] = None
    ) -> Iterator[list[Checkpoint]]:
        """The pages of the index's units of a dataset (of one status if given),
        each of at most ``limit`` units if given."""
        names = {"#d": items.DATASET}
        values: dict[str, AttributeValueTypeDef] = {":d": {"S": dataset_id}}
        condition = "#d = :d"
        if status is not None:
            names["#s"] = items.STATUS
            values[":s"] = {"S": status.value}
            condition += " AND #s = :s"
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "IndexName": GSI_NAME,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if limit is not None:
            request["Limit"] = limit
        return self._pages(request)

    def _pages(self, request: QueryInputTypeDef) -> Iterator[list[Checkpoint]]:
        """The units of each page of a ``Query``, lazily, page after page."""
        while True:
            page = self._call("Query", lambda: self._client.query(**request))
            # A dataset's own items lack both index keys, so the sparse index
            # never holds them; skipping them here costs nothing and keeps it so.
            found = page.get("Items", [])
            yield [items.from_item(item) for item in found if items.is_unit(item)]
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def _describe(self) -> TableDescriptionTypeDef:
        """The table's description (MissingResourceError when there is none)."""
        return self._call(
            "DescribeTable", lambda: self._client.describe_table(TableName=self._table)
        )["Table"]

    def _check(self) -> TableDescriptionTypeDef:
        """Describe the table and refuse one this store cannot use."""
        table = self._describe()
        self._check_table(table)
        return table

    def _check_table(self, table: TableDescriptionTypeDef) -> None:
        """Refuse a table this store cannot use, with a message naming the fix."""
        types = {
            a["AttributeName"]: a["AttributeType"]
            for a in table.get("AttributeDefinitions", [])
        }
        keys = tuple(
            (k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])
        )
        if keys != _KEY_SCHEMA or any(types.get(n) != "S" for n, _ in _KEY_SCHEMA):
            raise CheckpointError(
                f"DynamoDB table {self._table} in {self.region_name} has key schema "
                f"{_describe_keys(keys, types)}; this store needs "
                f"{_describe_keys(_KEY_SCHEMA, {})} (both strings)"
            )
        for index in table.get("GlobalSecondaryIndexes", []):
            if index.get("IndexName") != GSI_NAME:
                continue
            index_keys = tuple(
                (k["AttributeName"], k["KeyType"]) for k in index.get("KeySchema", [])
            )
            projection = index.get("Projection", {}).get("ProjectionType")
            if index_keys == _GSI_KEY_SCHEMA and projection == "ALL":
                return
            raise CheckpointError(
                f"DynamoDB table {self._table}: index {GSI_NAME} has key schema "
                f"{_describe_keys(index_keys, types)} and projection {projection}; "
                f"this store needs {_describe_keys(_GSI_KEY_SCHEMA, {})} and ALL"
            )
        raise CheckpointError(
            f"DynamoDB table {self._table} in {self.region_name} has no global "
            f"secondary index {GSI_NAME} ({items.DATASET} HASH, {items.STATUS} "
            "RANGE, projection ALL)"
        )

    # -- errors and retries -------------------------------------------------------

    def _call(self, operation: str, request: Callable[[], _T]) -> _T:
        """Send one request: mapped errors, transient failures retried."""

        if self._read_only and operation in _WRITES:
            raise CheckpointError(f"{self._where()} is read-only: {operation} refused")

        def attempt() -> _T:
            logger.debug("%s %s", operation, self._table)
            with self._map_botocore_errors(operation):
                return request()

        return call_retrying(
            self._retrying, self._retry.attempts, CheckpointError, attempt
        )

    @contextlib.contextmanager
    def _map_botocore_errors(self, operation: str) -> Iterator[None]:
        """Translate botocore errors, in one place, into CheckpointError subclasses
        (AWS configuration errors into ConfigError, see :mod:`.._aws_errors`),
        each raised from the botocore error: the retry policy judges that one."""
        try:
            with aws_config_errors():
                yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            detail = error.get("Message", "")
            message = f"{self._where()}: {operation} failed: {code}: {detail}"
            if code == "ConditionalCheckFailedException":
                stored = cast("Optional[Item]", exc.response.get("Item"))
                raise _ConditionFailed(message, stored) from exc
            if code == "ResourceNotFoundException":
                raise MissingResourceError(
                    f"DynamoDB table {self._table} does not exist in "
                    f"{self._region_or_unknown()}; create it with create_table=True "
                    f"or `--create-table` ({operation}: {code})"
                ) from exc
            raise CheckpointError(message) from exc
        except BotoCoreError as exc:
            raise CheckpointError(
                f"{self._where()}: {operation} failed: {exc}"
            ) from exc

    def _where(self) -> str:
        # Usable while __init__ is still building the client (repr needs it).
        return f"DynamoDB table {self._table} ({self._region_or_unknown()})"

    def _region_or_unknown(self) -> str:
        client = getattr(self, "_client", None)
        return str(client.meta.region_name) if client is not None else "unknown region"


def _caused_by(exc: BaseException, code: str) -> bool:
    """Whether a mapped error came from a ClientError with this error code."""
    cause = exc.__cause__
    return isinstance(cause, ClientError) and (
        cause.response.get("Error", {}).get("Code") == code
    )


def _describe_keys(keys: Sequence[tuple[str, str]], types: Mapping[str, str]) -> str:
    parts = [
        f"{name} {kind}" + (f" ({types[name]})" if name in types else "")
        for name, kind in keys
    ]
    return ", ".join(parts) or "(none)"


def _key_schema(
    pairs: Sequence[tuple[str, KeyTypeType]],
) -> list[KeySchemaElementTypeDef]:
    return [{"AttributeName": name, "KeyType": kind} for name, kind in pairs]


_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def check_table_name(name: object) -> str:
    """``name`` if it is a valid DynamoDB table name.

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a DynamoDB table name "
            "(3-255 characters of A-Z, a-z, 0-9, '_', '-', '.')"
        )
    return name


def _table_of(url: str) -> str:
    try:
        return check_table_name(url_rest(url).rstrip("/"))
    except ConfigError as exc:
        raise ConfigError(f"store URL {url!r}: {exc}") from None
