"""DynamoDBCheckpointStore: the store contract, item layout, cost, retries, tables.

Every test that takes ``aws`` runs twice: against moto in-process and against moto's
server over real HTTP (``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, Callable, Optional

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError, ConnectionClosedError

from aep_extract import (
    Batch,
    Extractor,
    ExtractorConfig,
    MemorySink,
    RetryConfig,
    SerialScheduler,
    UnitStatus,
    WorkUnit,
    open_store,
)
from aep_extract._run import RunScope, within
from aep_extract.checkpoints._dynamodb_items import from_iso, to_iso
from aep_extract.checkpoints.base import _CLAIM_CANDIDATES
from aep_extract.checkpoints.dynamodb import (
    CLAIM_PAGE_SECONDS,
    GSI_NAME,
    DynamoDBCheckpointStore,
)
from aep_extract.errors import (
    CheckpointConflict,
    CheckpointError,
    ConfigError,
    MissingResourceError,
)
from aep_extract.testing import MemoryAepSource
from aep_extract.testing.contracts import (
    LEASE,
    START,
    AtomicWatermarksContract,
    ManualClock,
)

from .conftest import REGION, dynamodb_error, fail_sends

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
FAST_RETRY = RetryConfig(attempts=3, initial_wait=0.5, max_wait=4.0)

KEY_SCHEMA = [
    {"AttributeName": "BatchID", "KeyType": "HASH"},
    {"AttributeName": "OffsetRange", "KeyType": "RANGE"},
]
GSI = {
    "IndexName": GSI_NAME,
    "KeySchema": [
        {"AttributeName": "DatasetID", "KeyType": "HASH"},
        {"AttributeName": "Status", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "ALL"},
}
GSI_ATTRIBUTES = [
    {"AttributeName": "DatasetID", "AttributeType": "S"},
    {"AttributeName": "Status", "AttributeType": "S"},
]


# -- helpers ----------------------------------------------------------------------


class Calls:
    """Counts the requests a client sends, by operation (each attempt counts)."""

    def __init__(self, store: DynamoDBCheckpointStore) -> None:
        self.counts: Counter[str] = Counter()
        store.client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **kwargs: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> Counter[str]:
        """The counts so far, then start again from zero."""
        counts, self.counts = self.counts, Counter()
        return counts


def client_error(code: str, operation: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def fail_first(
    store: DynamoDBCheckpointStore,
    event: str,
    times: int,
    error: Callable[[], Exception],
) -> list[int]:
    """Make the first ``times`` requests reaching ``event`` raise ``error()``.

    Returns a one-element list holding how many requests reached the event.
    """
    seen = [0]

    def handler(**kwargs: Any) -> None:
        seen[0] += 1
        if seen[0] <= times:
            raise error()

    store.client.meta.events.register(event, handler)
    return seen


def units(dataset: str, count: int) -> list[WorkUnit]:
    return [
        WorkUnit(
            dataset_id=dataset,
            batch_id=f"{dataset}-b{n:04d}",
            batch_created_ms=1_717_977_600_000 + n,
        )
        for n in range(count)
    ]


def raw_item(session: boto3.Session, table: str, unit: WorkUnit) -> dict[str, Any]:
    item = session.client("dynamodb").get_item(
        TableName=table,
        Key={"BatchID": {"S": unit.batch_id}, "OffsetRange": {"S": unit.offset_range}},
        ConsistentRead=True,
    )["Item"]
    return dict(item)


def create_raw_table(
    session: boto3.Session,
    name: str,
    *,
    key_schema: Optional[list[dict[str, str]]] = None,
    with_gsi: bool = True,
) -> None:
    """Provision a table with boto3 directly, as a user would (provisioned mode)."""
    keys = key_schema or KEY_SCHEMA
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "AttributeDefinitions": [
            {"AttributeName": k["AttributeName"], "AttributeType": "S"} for k in keys
        ]
        + (GSI_ATTRIBUTES if with_gsi else []),
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    }
    if with_gsi:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                **GSI,
                "ProvisionedThroughput": {
                    "ReadCapacityUnits": 5,
                    "WriteCapacityUnits": 5,
                },
            }
        ]
    client = session.client("dynamodb")
    client.create_table(**kwargs)
    client.get_waiter("table_exists").wait(TableName=name)


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture
def table() -> str:
    return f"aep-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_store(aws: boto3.Session, table: str, sleeps: list[float]):
    """Open stores on the test's table (created by the first one)."""
    opened: list[DynamoDBCheckpointStore] = []

    def make(**kwargs: Any) -> DynamoDBCheckpointStore:
        kwargs.setdefault("session", aws)
        kwargs.setdefault("create_table", True)
        kwargs.setdefault("sleep", sleeps.append)
        store = DynamoDBCheckpointStore(table, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(
    make_store: Callable[..., DynamoDBCheckpointStore],
) -> DynamoDBCheckpointStore:
    return make_store(retry=FAST_RETRY)


@pytest.fixture
def clock(store: DynamoDBCheckpointStore) -> ManualClock:
    clock = ManualClock()
    store.clock = clock
    return clock


@pytest.fixture
def dataset() -> str:
    return f"ds-{uuid.uuid4().hex[:8]}"


# -- the contract -----------------------------------------------------------------


class TestDynamoDBCheckpointStore(AtomicWatermarksContract):
    @pytest.fixture
    def store(self, aws: boto3.Session):
        name = f"aep-contract-{uuid.uuid4().hex[:10]}"
        with DynamoDBCheckpointStore(name, session=aws, create_table=True) as store:
            yield store


# -- the item ---------------------------------------------------------------------


def test_items_carry_the_seed_attributes_with_their_types(
    store, clock, aws, table, dataset
):
    (unit,) = units(dataset, 1)
    store.register([unit])
    registered = raw_item(aws, table, unit)
    assert registered == {
        "BatchID": {"S": unit.batch_id},
        "OffsetRange": {"S": "0-*"},
        "DatasetID": {"S": dataset},
        "BatchCreated": {"N": str(unit.batch_created_ms)},
        "Status": {"S": "Pending"},
        "LastProcessedOffset": {"N": "-1"},
        "Attempts": {"N": "0"},
        "Crashes": {"N": "0"},
        "FilesDone": {"N": "0"},
        "BytesDone": {"N": "0"},
        "CreatedAt": {"S": "2023-11-14T22:13:20.250000+00:00"},
        "UpdatedAt": {"S": "2023-11-14T22:13:20.250000+00:00"},
        "Version": {"N": "0"},
    }, "None-valued Owner, LeaseExpiresAt and Error must be left out"

    clock.advance(1.5)
    lease = store.claim(dataset, "worker-a", LEASE)
    assert lease is not None
    lease = store.advance(lease, 3, files=4, size=1234)
    item = raw_item(aws, table, unit)
    assert item["Status"] == {"S": "InProgress"}
    assert item["Owner"] == {"S": "worker-a"}
    assert float(item["LeaseExpiresAt"]["N"]) == START + 1.5 + LEASE
    assert item["LastProcessedOffset"] == {"N": "3"}
    assert (item["FilesDone"], item["BytesDone"]) == ({"N": "4"}, {"N": "1234"})
    assert (item["Attempts"], item["Crashes"]) == ({"N": "0"}, {"N": "0"})
    assert item["Version"] == {"N": "2"}
    assert item["CreatedAt"] == registered["CreatedAt"]
    assert item["UpdatedAt"] == {"S": "2023-11-14T22:13:21.750000+00:00"}
    for name in ("CreatedAt", "UpdatedAt"):
        assert ISO_UTC.match(item[name]["S"])
    assert "Error" not in item

    store.fail(lease, "boom", max_attempts=1)
    failed = raw_item(aws, table, unit)
    assert failed["Status"] == {"S": "Failed"}
    assert failed["Attempts"] == {"N": "1"}
    assert failed["Error"] == {"S": "boom"}
    assert "Owner" not in failed
    assert "LeaseExpiresAt" not in failed


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000000+00:00"),
        (START, "2023-11-14T22:13:20.250000+00:00"),
        (1_718_020_800.123456, "2024-06-10T12:00:00.123456+00:00"),
        (1_718_020_800.000_000_4, "2024-06-10T12:00:00.000000+00:00"),
        (1_718_020_800.999_999_6, "2024-06-10T12:00:01.000000+00:00"),
    ],
)
def test_timestamps_are_iso_utc_with_microseconds(epoch, text):
    assert to_iso(epoch) == text
    assert abs(from_iso(text) - epoch) <= 0.5e-6
    # A value read back is written again unchanged: no drift over many writes.
    assert to_iso(from_iso(text)) == text
    assert from_iso(to_iso(from_iso(text))) == from_iso(text)


def test_unreadable_item_raises_checkpoint_error(store, aws, table, dataset):
    (unit,) = units(dataset, 1)
    store.register([unit])
    aws.client("dynamodb").update_item(
        TableName=table,
        Key={"BatchID": {"S": unit.batch_id}, "OffsetRange": {"S": "0-*"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "Status"},
        ExpressionAttributeValues={":s": {"S": "Bogus"}},
    )
    with pytest.raises(CheckpointError, match="unreadable item for batch"):
        store.get(unit.batch_id)


def test_an_item_of_an_older_release_has_no_crashes(store, clock, aws, table, dataset):
    (unit,) = units(dataset, 1)
    store.register([unit])
    aws.client("dynamodb").update_item(
        TableName=table,
        Key={"BatchID": {"S": unit.batch_id}, "OffsetRange": {"S": "0-*"}},
        UpdateExpression="REMOVE Crashes",
    )
    assert "Crashes" not in raw_item(aws, table, unit)
    registered = store.get(unit.batch_id)
    assert registered is not None
    assert registered.crashes == 0
    lease = store.claim(dataset, "worker-a", LEASE)
    assert lease is not None
    assert raw_item(aws, table, unit)["Crashes"] == {"N": "0"}


# -- watermarks -------------------------------------------------------------------


def watermark_key(dataset: str) -> dict[str, Any]:
    return {"BatchID": {"S": f"dataset#{dataset}"}, "OffsetRange": {"S": "watermark"}}


def raw_watermark(session: boto3.Session, table: str, dataset: str) -> Any:
    return (
        session.client("dynamodb")
        .get_item(TableName=table, Key=watermark_key(dataset), ConsistentRead=True)
        .get("Item")
    )


def test_the_watermark_is_an_item_of_its_own(store, clock, aws, table, dataset):
    store.raise_watermark(dataset, 1_718_064_000_000)
    item = raw_watermark(aws, table, dataset)
    assert item == {
        **watermark_key(dataset),
        "PlannedUntil": {"N": "1718064000000"},
        "UpdatedAt": {"S": "2023-11-14T22:13:20.250000+00:00"},
    }, "no DatasetID or Status: the sparse index must never hold it"
    clock.advance(1)
    store.raise_watermark(dataset, 1_718_064_000_000 - 1)
    assert raw_watermark(aws, table, dataset) == item, "a lower end writes nothing"
    store.raise_watermark(dataset, 1_718_150_400_000)
    raised = raw_watermark(aws, table, dataset)
    assert raised["PlannedUntil"] == {"N": "1718150400000"}
    assert raised["UpdatedAt"] == {"S": "2023-11-14T22:13:21.250000+00:00"}
    assert store.get(f"dataset#{dataset}", "watermark") is None
    store.forget(dataset)
    assert raw_watermark(aws, table, dataset) is None


def test_the_index_and_every_listing_skip_the_watermark(
    store, clock, aws, table, dataset
):
    planned = units(dataset, 3)
    store.register(planned)
    store.raise_watermark(dataset, 1_718_064_000_000)
    client = aws.client("dynamodb")
    whole = client.scan(TableName=table)["Items"]
    assert len(whole) == 4
    indexed = client.query(
        TableName=table,
        IndexName=GSI_NAME,
        KeyConditionExpression="DatasetID = :d",
        ExpressionAttributeValues={":d": {"S": dataset}},
    )["Items"]
    assert sorted(item["BatchID"]["S"] for item in indexed) == [
        u.batch_id for u in planned
    ]
    assert [cp.unit for cp in store.list(dataset)] == planned
    assert sum(store.summary(dataset).values()) == 3
    assert store.forget(dataset) == 3
    assert client.scan(TableName=table)["Items"] == []


def test_watermark_requests(store, clock, dataset):
    calls = Calls(store)
    assert store.watermark(dataset) is None
    assert calls.take() == {"GetItem": 1}
    store.raise_watermark(dataset, 2_000)
    assert calls.take() == {"GetItem": 1, "PutItem": 1}
    store.raise_watermark(dataset, 1_000)
    store.raise_watermark(dataset, 2_000)
    assert calls.take() == {"GetItem": 2}, "no write when the end is not higher"
    assert store.forget(dataset) == 0
    # The watermark's and the destination's items.
    assert calls.take() == {"Query": 1, "DeleteItem": 2}


def test_a_retried_raise_that_had_landed_is_not_an_error(store, clock, sleeps, dataset):
    fail_first(
        store,
        "after-call.dynamodb.PutItem",
        1,
        lambda: ConnectionClosedError(endpoint_url="http://dynamodb.invalid"),
    )
    store.raise_watermark(dataset, 5_000)
    assert len(sleeps) == 1
    assert store.watermark(dataset) == 5_000


def test_a_raise_racing_a_higher_one_keeps_the_higher(
    store, clock, aws, table, dataset
):
    store.raise_watermark(dataset, 1_000)
    other = aws.client("dynamodb")
    raced: list[int] = []

    def higher_meanwhile(**kwargs: Any) -> None:
        # Another planner raises it between this store's read and its write.
        if not raced:
            raced.append(9_000)
            other.put_item(
                TableName=table,
                Item={
                    **watermark_key(dataset),
                    "PlannedUntil": {"N": "9000"},
                    "UpdatedAt": {"S": to_iso(START)},
                },
            )

    store.client.meta.events.register("before-call.dynamodb.PutItem", higher_meanwhile)
    store.raise_watermark(dataset, 5_000)
    assert raced == [9_000]
    assert store.watermark(dataset) == 9_000


# -- destinations -----------------------------------------------------------------


def destination_key(dataset: str) -> dict[str, Any]:
    return {
        "BatchID": {"S": f"dataset#{dataset}"},
        "OffsetRange": {"S": "destination"},
    }


def test_the_destination_is_an_item_the_index_never_holds(
    store, clock, aws, table, dataset
):
    planned = units(dataset, 2)
    store.register(planned)
    store.raise_watermark(dataset, 1_718_064_000_000)
    calls = Calls(store)
    store.bind_destination(dataset, "s3://bucket/aep")
    assert calls.take() == {"GetItem": 1, "PutItem": 1}
    client = aws.client("dynamodb")
    item = client.get_item(
        TableName=table, Key=destination_key(dataset), ConsistentRead=True
    )["Item"]
    assert item == {
        **destination_key(dataset),
        "Destination": {"S": "s3://bucket/aep"},
    }, "no DatasetID or Status: the sparse index must never hold it"
    store.bind_destination(dataset, "s3://bucket/aep")
    assert calls.take() == {"GetItem": 1}, "bound already: a read, no write"
    assert len(client.scan(TableName=table)["Items"]) == 4
    indexed = client.query(
        TableName=table,
        IndexName=GSI_NAME,
        KeyConditionExpression="DatasetID = :d",
        ExpressionAttributeValues={":d": {"S": dataset}},
    )["Items"]
    assert len(indexed) == 2
    assert [cp.unit for cp in store.list(dataset)] == planned
    assert store.get(f"dataset#{dataset}", "destination") is None
    assert store.forget(dataset) == 2
    assert client.scan(TableName=table)["Items"] == []


def test_a_retried_binding_that_had_landed_is_not_a_mismatch(
    store, clock, sleeps, dataset
):
    fail_first(
        store,
        "after-call.dynamodb.PutItem",
        1,
        lambda: ConnectionClosedError(endpoint_url="http://dynamodb.invalid"),
    )
    store.bind_destination(dataset, "s3://bucket/aep")
    assert len(sleeps) == 1
    assert store.destination(dataset) == "s3://bucket/aep"


def test_unreadable_destination_raises_checkpoint_error(store, aws, table, dataset):
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={**destination_key(dataset), "Destination": {"N": "1"}},
    )
    with pytest.raises(CheckpointError, match="unreadable destination item"):
        store.destination(dataset)


def test_unreadable_watermark_raises_checkpoint_error(store, aws, table, dataset):
    aws.client("dynamodb").put_item(
        TableName=table,
        Item={**watermark_key(dataset), "PlannedUntil": {"S": "soon"}},
    )
    with pytest.raises(CheckpointError, match="unreadable watermark item"):
        store.watermark(dataset)


# -- leases across workers --------------------------------------------------------


def test_two_workers_race_for_one_unit_and_exactly_one_wins(
    make_store, aws, table, dataset
):
    clock = ManualClock()
    stores = [make_store(clock=clock) for _ in range(2)]
    (unit,) = units(dataset, 1)
    stores[0].register([unit])
    barrier = threading.Barrier(8)
    won: list[str] = []
    errors: list[BaseException] = []

    def claim(owner: str) -> None:
        try:
            barrier.wait()
            lease = stores[int(owner[-1]) % 2].claim(dataset, owner, LEASE)
            if lease is not None:
                won.append(owner)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(won) == 1
    item = raw_item(aws, table, unit)
    assert item["Owner"] == {"S": won[0]}
    assert item["Version"] == {"N": "1"}


def test_expired_lease_is_taken_over_in_the_table(make_store, aws, table, dataset):
    clock = ManualClock()
    first, second = make_store(clock=clock), make_store(clock=clock)
    (unit,) = units(dataset, 1)
    first.register([unit])
    old = first.claim(dataset, "worker-a", LEASE)
    assert old is not None
    old = first.advance(old, 1, files=2)
    assert second.claim(dataset, "worker-b", LEASE) is None
    clock.advance(LEASE)
    new = second.claim(dataset, "worker-b", LEASE)
    assert new is not None
    taken = raw_item(aws, table, unit)
    assert taken["Owner"] == {"S": "worker-b"}
    assert (taken["Attempts"], taken["Crashes"]) == ({"N": "0"}, {"N": "1"})
    assert taken["LastProcessedOffset"] == {"N": "1"}
    with pytest.raises(CheckpointConflict):
        first.advance(old, 5, files=1)
    with pytest.raises(CheckpointConflict):
        first.complete(old)
    assert raw_item(aws, table, unit) == taken
    second.complete(second.advance(new, 5, files=4))
    done = raw_item(aws, table, unit)
    assert done["Status"] == {"S": "Completed"}
    assert done["LastProcessedOffset"] == {"N": "5"}
    assert done["FilesDone"] == {"N": "6"}


# -- cost -------------------------------------------------------------------------


def test_registration_writes_only_new_units(store, clock, dataset):
    calls = Calls(store)
    planned = units(dataset, 250)
    assert store.register(planned) == 250
    first = calls.take()
    assert first["PutItem"] == 250
    assert first["BatchGetItem"] == 3  # 100 keys per request
    assert store.register(planned) == 0
    again = calls.take()
    assert again["PutItem"] == 0, "a re-plan of known units must cost no writes"
    assert again["BatchGetItem"] == 3
    more = units(dataset, 260)
    assert store.register([*more, more[-1]]) == 10  # duplicates count once
    assert calls.take()["PutItem"] == 10


def test_claims_read_the_index_once_per_page_of_pending_units(store, clock, dataset):
    store.register(units(dataset, 150))
    calls = Calls(store)
    claimed = []
    for _ in range(120):
        lease = store.claim(dataset, "worker-a", LEASE)
        assert lease is not None
        claimed.append(lease.unit.unit_id)
    assert len(set(claimed)) == 120
    counts = calls.take()
    assert counts["Query"] == 2, "one index page serves the next 100 claims"
    assert counts["PutItem"] == 120
    clock.advance(CLAIM_PAGE_SECONDS)
    assert store.claim(dataset, "worker-a", LEASE) is not None
    assert calls.take()["Query"] == 1  # a page that old is read afresh


def test_claims_from_a_kept_page_lose_units_others_took_meanwhile(
    make_store, clock, dataset
):
    first, second = make_store(), make_store()
    first.clock = second.clock = clock
    first.register(units(dataset, 30))
    assert first.claim(dataset, "worker-a", LEASE) is not None  # reads a page
    taken = []
    while (lease := second.claim(dataset, "worker-b", LEASE)) is not None:
        taken.append(lease.unit.unit_id)
    assert len(taken) == 29
    calls = Calls(first)
    assert first.claim(dataset, "worker-a", LEASE) is None
    counts = calls.take()
    # The candidates of one try lose, then a lost write drops the kept page, and
    # a fresh page of each status finds nothing.
    assert counts["PutItem"] == _CLAIM_CANDIDATES
    assert counts["Query"] == 2
    assert {cp.owner for cp in first.list(dataset)} == {"worker-a", "worker-b"}


def test_registration_never_overwrites_a_unit_registered_meanwhile(
    store, clock, aws, table, dataset
):
    (unit,) = units(dataset, 1)
    store.register([unit])
    lease = store.claim(dataset, "worker-a", LEASE)
    assert lease is not None
    store.advance(lease, 7, files=8)
    before = raw_item(aws, table, unit)

    # Another process registers the unit between our read and our write: the
    # read sees nothing, so only the condition on the write protects the unit.
    def nothing_found(params: Any, **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("", 200, HTTPHeaders(), None), {"Responses": {table: []}}

    store.client.meta.events.register(
        "before-call.dynamodb.BatchGetItem", nothing_found
    )
    calls = Calls(store)
    assert store.register([unit]) == 0
    assert calls.take()["PutItem"] == 1
    assert raw_item(aws, table, unit) == before


def test_writes_per_file_and_per_batch(store, clock, dataset):
    files = 10
    calls = Calls(store)
    (unit,) = units(dataset, 1)
    store.register([unit])
    registered = calls.take()["PutItem"]
    lease = store.claim(dataset, "worker-a", LEASE)
    assert lease is not None
    claimed = calls.take()["PutItem"]
    per_file = []
    for offset in range(files):
        clock.advance(1)
        lease = store.advance(lease, offset, files=1, size=100, lease_seconds=LEASE)
        per_file.append(calls.take()["PutItem"])
    store.complete(lease)
    completed = calls.take()["PutItem"]
    assert (registered, claimed, completed) == (1, 1, 1)
    assert per_file == [1] * files
    total = registered + claimed + sum(per_file) + completed
    assert total == files + 3
    print(
        f"\nDynamoDB writes, one unit of {files} files: register {registered}, "
        f"claim {claimed}, per file {per_file[0]}, complete {completed}, "
        f"total {total} = files + 3"
    )


def test_writes_of_a_whole_run_through_the_engine(aws, table):
    n_batches, n_files = 3, 5
    dataset = "ds-engine"
    batches = {
        Batch(
            batch_id=f"batch{b}",
            dataset_id=dataset,
            status="success",
            created_ms=1_717_977_600_000 + b * 3_600_000,
        ): {
            (f"file{b}-{f}", f"part-{f}.parquet"): b"x" * (f + 1)
            for f in range(n_files)
        }
        for b in range(n_batches)
    }
    store = DynamoDBCheckpointStore(table, session=aws, create_table=True)
    calls = Calls(store)
    extractor = Extractor(
        MemoryAepSource(dataset, batches),
        store=store,
        sink=MemorySink(),
        scheduler=SerialScheduler(),
        config=ExtractorConfig(),
    )
    with extractor:
        report = extractor.run(dataset, "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z")
    assert report.units[UnitStatus.COMPLETED] == n_batches
    counts = calls.take()
    assert counts["PutItem"] == n_batches * (n_files + 3) + 2, (
        "+2: the watermark and the destination binding"
    )
    # The plan looks the batches up, then registers them: 100 keys a request.
    assert counts["BatchGetItem"] == 2
    print(
        f"\nEngine run of {n_batches} batches x {n_files} files: "
        + ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
        + f"; PutItem per batch {(counts['PutItem'] - 2) / n_batches:g}"
        + " plus 2 for the watermark and the destination"
    )
    with Extractor(
        MemoryAepSource(dataset, batches),
        store=store,
        sink=MemorySink(),
        scheduler=SerialScheduler(),
    ) as rerun:
        rerun.run(dataset, "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z")
    assert calls.take()["PutItem"] == 0, "a rerun of finished work writes nothing"
    store.close()


# -- retries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("RequestLimitExceeded", 400),
        ("InternalServerError", 500),
        ("SomethingNew", 503),
    ],
)
def test_throttled_writes_are_retried_with_backoff(
    store, clock, sleeps, dataset, code, status
):
    seen = fail_first(
        store,
        "before-call.dynamodb.PutItem",
        2,
        lambda: client_error(code, "PutItem", status),
    )
    (unit,) = units(dataset, 1)
    assert store.register([unit]) == 1
    assert seen[0] == 3
    assert len(sleeps) == 2
    assert all(0 <= wait <= FAST_RETRY.max_wait for wait in sleeps)
    assert store.get(unit.batch_id) is not None


def test_connection_failures_are_retried(store, clock, sleeps, dataset):
    (unit,) = units(dataset, 1)
    fail_first(
        store,
        "before-call.dynamodb.GetItem",
        1,
        lambda: ConnectionClosedError(endpoint_url="http://dynamodb.invalid"),
    )
    store.register([unit])
    assert store.get(unit.batch_id) is not None
    assert len(sleeps) == 1


def test_exhausted_retries_raise_checkpoint_error(store, clock, sleeps, dataset):
    fail_first(
        store,
        "before-call.dynamodb.Query",
        99,
        lambda: client_error("ProvisionedThroughputExceededException", "Query"),
    )
    with pytest.raises(CheckpointError, match="gave up after 3 attempt") as info:
        store.claim(dataset, "worker-a", LEASE)
    assert not isinstance(info.value, ClientError)
    assert isinstance(info.value.__cause__, CheckpointError)
    assert len(sleeps) == FAST_RETRY.attempts - 1


def test_other_client_errors_are_not_retried(store, clock, sleeps, dataset):
    fail_first(
        store,
        "before-call.dynamodb.GetItem",
        1,
        lambda: client_error("AccessDeniedException", "GetItem"),
    )
    with pytest.raises(CheckpointError, match="AccessDeniedException") as info:
        store.get("some-batch")
    assert isinstance(info.value.__cause__, ClientError)
    assert sleeps == []


def test_unprocessed_keys_are_fetched_again_after_a_backoff(
    store, clock, sleeps, table, dataset
):
    planned = units(dataset, 5)
    store.register(planned[:3])
    requested: list[int] = []

    def unprocessed_once(
        params: Any, **kwargs: Any
    ) -> Optional[tuple[AWSResponse, dict[str, Any]]]:
        requested.append(1)
        if len(requested) > 1:
            return None  # send the real request
        keys = [
            {"BatchID": {"S": u.batch_id}, "OffsetRange": {"S": "0-*"}} for u in planned
        ]
        return AWSResponse("", 200, HTTPHeaders(), None), {
            "Responses": {table: []},
            "UnprocessedKeys": {table: {"Keys": keys, "ConsistentRead": True}},
        }

    store.client.meta.events.register(
        "before-call.dynamodb.BatchGetItem", unprocessed_once
    )
    calls = Calls(store)
    assert store.register(planned) == 2
    assert len(requested) == 2
    assert len(sleeps) == 1
    assert calls.take()["PutItem"] == 2, "units found on the second read are kept"


def test_a_retried_write_that_had_landed_is_not_a_conflict(
    store, clock, sleeps, aws, table, dataset
):
    (unit,) = units(dataset, 1)
    store.register([unit])
    lease = store.claim(dataset, "worker-a", LEASE)
    assert lease is not None
    # The write reaches the table, but its answer is lost on the way back.
    fail_first(
        store,
        "after-call.dynamodb.PutItem",
        1,
        lambda: ConnectionClosedError(endpoint_url="http://dynamodb.invalid"),
    )
    advanced = store.advance(lease, 4, files=5, lease_seconds=LEASE)
    assert len(sleeps) == 1
    assert store.get(unit.batch_id) == advanced.checkpoint
    assert raw_item(aws, table, unit)["Version"] == {"N": "2"}
    store.complete(advanced)


# -- tables -----------------------------------------------------------------------


def test_missing_table_is_a_clear_error(aws, sleeps):
    with pytest.raises(MissingResourceError) as info:
        DynamoDBCheckpointStore("no-such-table", session=aws, sleep=sleeps.append)
    message = str(info.value)
    assert message.startswith(
        f"DynamoDB table no-such-table does not exist in {REGION}; "
        "create it with create_table=True or `--create-table`"
    )
    assert isinstance(info.value.__cause__, ClientError)
    assert sleeps == []


def test_check_finds_a_table_deleted_since_opening(make_store, aws, table):
    store = make_store()
    store.check()
    calls = Calls(store)
    aws.client("dynamodb").delete_table(TableName=table)
    with pytest.raises(MissingResourceError) as info:
        store.check()
    assert calls.take() == {"DescribeTable": 1}
    assert f"DynamoDB table {table} does not exist" in str(info.value)
    assert "`--create-table`" in str(info.value)


def test_read_only_never_creates_the_table(aws, table, sleeps):
    with pytest.raises(ConfigError, match="read-only store cannot create"):
        DynamoDBCheckpointStore(table, session=aws, create_table=True, read_only=True)
    with pytest.raises(MissingResourceError, match=f"DynamoDB table {table} does"):
        DynamoDBCheckpointStore(table, session=aws, read_only=True)
    assert table not in aws.client("dynamodb").list_tables()["TableNames"]


def test_read_only_reads_and_refuses_every_write(make_store, aws, table, dataset):
    writer = make_store()
    planned = units(dataset, 2)
    writer.register(planned)
    lease = writer.claim(dataset, "worker-a", LEASE)
    assert lease is not None
    writer.raise_watermark(dataset, 5_000)
    writer.bind_destination(dataset, "s3://bucket/aep")
    before = writer.list(dataset)
    reader = make_store(create_table=False, read_only=True)
    assert reader.read_only
    assert reader.list(dataset) == before
    assert (reader.watermark(dataset), reader.destination(dataset)) == (
        5_000,
        "s3://bucket/aep",
    )
    calls = Calls(reader)
    writes = [
        lambda: reader.register(units(dataset, 3)),
        lambda: reader.claim(dataset, "worker-b", LEASE),
        lambda: reader.complete(lease),
        lambda: reader.raise_watermark(dataset, 9_000),
        lambda: reader.bind_destination(f"{dataset}-other", "s3://bucket/aep"),
        lambda: reader.forget(dataset),
        reader.create_table,
    ]
    for write in writes:
        with pytest.raises(CheckpointError, match="is read-only"):
            write()
    assert not {"PutItem", "DeleteItem", "CreateTable"} & set(calls.take())
    assert writer.list(dataset) == before
    assert writer.destination(f"{dataset}-other") is None


def test_no_region_is_a_clear_error(monkeypatch, tmp_path):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    with pytest.raises(ConfigError, match="no AWS region: set AWS_DEFAULT_REGION"):
        DynamoDBCheckpointStore("any-table")


def test_create_table_is_idempotent(make_store, aws, table, dataset):
    first = make_store()
    (unit,) = units(dataset, 1)
    first.register([unit])
    first.create_table()
    second = make_store(create_table=True)
    assert second.get(unit.batch_id) is not None
    described = aws.client("dynamodb").describe_table(TableName=table)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert described["TableStatus"] == "ACTIVE"
    (index,) = described["GlobalSecondaryIndexes"]
    assert index["IndexName"] == GSI_NAME
    assert index["KeySchema"] == GSI["KeySchema"]
    assert index["Projection"] == {"ProjectionType": "ALL"}


def test_create_table_creates_only_a_missing_table(aws, table):
    sent: list[str] = []
    aws.events.register(
        "before-call.dynamodb", lambda model, **_: sent.append(model.name)
    )
    with DynamoDBCheckpointStore(table, session=aws, create_table=True):
        assert "CreateTable" in sent
    sent.clear()
    # A worker of a provisioned table may lack dynamodb:CreateTable: not asked.
    with DynamoDBCheckpointStore(table, session=aws, create_table=True):
        assert sent == ["DescribeTable"]


def test_a_user_provisioned_table_works(aws, table, dataset):
    create_raw_table(aws, table)
    with DynamoDBCheckpointStore(table, session=aws) as store:
        store.register(units(dataset, 2))
        lease = store.claim(dataset, "worker-a", LEASE)
        assert lease is not None
        store.complete(store.advance(lease, 0, files=1))
        assert store.summary(dataset)[UnitStatus.COMPLETED] == 1
        assert store.summary(dataset)[UnitStatus.PENDING] == 1


def test_a_table_with_another_key_schema_is_refused(aws, table):
    # The seed's table: BatchID alone, so split units could not coexist.
    create_raw_table(
        aws,
        table,
        key_schema=[{"AttributeName": "BatchID", "KeyType": "HASH"}],
        with_gsi=False,
    )
    with pytest.raises(CheckpointError, match="has key schema BatchID HASH"):
        DynamoDBCheckpointStore(table, session=aws)


def test_a_table_without_the_index_is_refused(aws, table):
    create_raw_table(aws, table, with_gsi=False)
    with pytest.raises(CheckpointError, match=f"no global secondary index {GSI_NAME}"):
        DynamoDBCheckpointStore(table, session=aws)


def test_queries_page_through_every_result(store, clock, dataset):
    store.register(units(dataset, 7))

    def small_pages(params: dict[str, Any], **kwargs: Any) -> None:
        params["Limit"] = 2

    store.client.meta.events.register(
        "provide-client-params.dynamodb.Query", small_pages
    )
    calls = Calls(store)
    assert len(store.list(dataset)) == 7
    assert calls.take()["Query"] >= 4
    assert len(store.list(dataset, UnitStatus.PENDING)) == 7


# -- construction -----------------------------------------------------------------


def test_open_store_returns_a_dynamodb_store(aws, table):
    with open_store(f"dynamodb://{table}", session=aws, create_table=True) as store:
        assert isinstance(store, DynamoDBCheckpointStore)
        assert store.table_name == table
        assert repr(store) == f"DynamoDBCheckpointStore({table!r}, region={REGION!r})"


def test_a_client_can_be_passed_in_and_is_left_open(aws, table, dataset):
    client = aws.client("dynamodb")
    with DynamoDBCheckpointStore(table, client=client, create_table=True) as store:
        assert store.client is client
        store.register(units(dataset, 1))
    assert client.describe_table(TableName=table)["Table"]["ItemCount"] >= 0


class _Body:
    """The raw stream of a canned HTTP response."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.data


def test_clients_created_here_do_not_retry_on_their_own(sleeps):
    # Every request gets a 500 at the HTTP layer, where botocore's own retries act:
    # each of our attempts must be a single send.
    session = boto3.Session(region_name=REGION)
    sends: list[str] = []

    def server_error(request: Any, **kwargs: Any) -> Any:  # an AWSResponse
        sends.append(request.url)
        body = b'{"__type": "InternalServerError", "message": "injected"}'
        return AWSResponse(request.url, 500, HTTPHeaders(), _Body(body))

    session.events.register("before-send.dynamodb", server_error)
    with pytest.raises(CheckpointError, match="InternalServerError"):
        DynamoDBCheckpointStore(
            "any-table",
            session=session,
            endpoint_url="http://127.0.0.1:1",
            retry=FAST_RETRY,
            sleep=sleeps.append,
        )
    assert len(sends) == FAST_RETRY.attempts
    assert len(sleeps) == FAST_RETRY.attempts - 1


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"])
def test_endpoint_comes_from_the_environment(
    moto_over_http, moto_server, monkeypatch, table, variable
):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv(variable, moto_server)
    with DynamoDBCheckpointStore(table, region_name=REGION, create_table=True) as store:
        assert store.client.meta.endpoint_url == moto_server
        assert store.region_name == REGION
    direct = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server)
    assert table in direct.list_tables()["TableNames"]


def test_endpoint_url_argument(moto_over_http, moto_server, monkeypatch, table):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with DynamoDBCheckpointStore(
        table, region_name=REGION, endpoint_url=moto_server, create_table=True
    ) as store:
        assert store.client.meta.endpoint_url == moto_server


def test_a_throttle_is_retried_per_the_retry_config_and_counted_for_the_run(
    moto_over_http, table
):
    sleeps: list[float] = []
    with DynamoDBCheckpointStore(
        table,
        session=moto_over_http,
        create_table=True,
        retry=FAST_RETRY,
        sleep=sleeps.append,
    ) as store:
        body = dynamodb_error("ThrottlingException")
        sends = fail_sends(store.client, "dynamodb.GetItem", 2, 400, body)
        scope = RunScope()
        with within(scope):
            assert store.get("some-batch") is None
        assert len(sends) == FAST_RETRY.attempts  # one send per attempt
        assert len(sleeps) == FAST_RETRY.attempts - 1
        assert all(0 <= wait <= FAST_RETRY.max_wait for wait in sleeps)
        counters = scope.counters()
        assert (counters["retries"], counters["throttled"]) == (2, 2)

        sends = fail_sends(store.client, "dynamodb.Query", 99, 503, b"")
        with pytest.raises(CheckpointError, match="gave up after 3 attempt"):
            store.claim("some-dataset", "worker-a", LEASE)
        assert len(sends) == FAST_RETRY.attempts
