"""Partitions in the Glue Data Catalog, against moto's Glue in-process and over HTTP:
the table from a Parquet schema, idempotent partitions, registration during a run,
repair after a crash, verify's partition-missing finding, and typed errors."""

from __future__ import annotations

import argparse
import io
import logging
from typing import Any, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from aep_extract import (
    Extractor,
    KeyLayout,
    MemorySink,
    SerialScheduler,
    SQLiteCheckpointStore,
    TimeWindow,
)
from aep_extract._cli_catalog import (
    glue_table_arg,
    glue_table_errors,
    partition_hooks,
    registering,
)
from aep_extract.config import RetryConfig
from aep_extract.errors import CatalogError, ConfigError, MissingResourceError
from aep_extract.models import Batch, UnitStatus, WorkUnit
from aep_extract.sinks.s3 import S3Sink
from aep_extract.tables import PartitionHooks, table_location
from aep_extract.tables.glue import GlueCatalog
from aep_extract.testing.memory_source import MemoryAepSource
from aep_extract.verify import FindingKind, verify

DATABASE, TABLE, DATASET = "analytics", "events", "ds1"
BUCKET = "landing"
LOCATION = f"s3://{BUCKET}/aep/{DATASET}/"
DAY1_MS, DAY2_MS = 1718000000000, 1718100000000  # 2024-06-10, 2024-06-11 UTC
DAY1, DAY2 = "2024-06-10", "2024-06-11"

XDM = pa.schema(
    [
        ("_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        (
            "identityMap",
            pa.map_(
                pa.string(),
                pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())])),
            ),
        ),
        (
            "web",
            pa.struct(
                [("url", pa.string()), ("tags", pa.list_(pa.string()))],
            ),
        ),
        ("revenue", pa.decimal128(12, 2)),
    ]
)
XDM_COLUMNS = [
    {"Name": "_id", "Type": "string"},
    {"Name": "timestamp", "Type": "timestamp"},
    {
        "Name": "identityMap",
        "Type": "map<string,array<struct<id:string,primary:boolean>>>",
    },
    {"Name": "web", "Type": "struct<url:string,tags:array<string>>"},
    {"Name": "revenue", "Type": "decimal(12,2)"},
]


def error(code: str, status: int = 400) -> dict[str, Any]:
    """A parsed Glue error answer."""
    return {
        "Error": {"Code": code, "Message": "injected"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }


def answer_calls(
    client: Any, operation: str, answers: list[dict[str, Any]]
) -> list[str]:
    """Answer the next calls of ``operation`` (``"glue.GetTable"``, or ``"glue"``
    for every call) with ``answers``, in order, before moto sees them; later calls
    go to moto. Returns the operation name of every call."""
    calls: list[str] = []
    left = list(answers)

    def answer(model: Any, **_: Any) -> Optional[tuple[AWSResponse, dict[str, Any]]]:
        calls.append(model.name)
        if not left:
            return None
        parsed = left.pop(0)
        status = parsed["ResponseMetadata"]["HTTPStatusCode"]
        return AWSResponse("", status, HTTPHeaders(), None), parsed

    client.meta.events.register(f"before-call.{operation}", answer)
    return calls


def parquet_bytes(rows: int) -> bytes:
    table = pa.table(
        {
            "_id": [f"id-{n}" for n in range(rows)],
            "timestamp": pa.array(
                [DAY1_MS * 1000 + n for n in range(rows)], pa.timestamp("us", "UTC")
            ),
            "identityMap": pa.array(
                [[("ECID", [{"id": str(n), "primary": True}])] for n in range(rows)],
                XDM.field("identityMap").type,
            ),
            "web": [{"url": f"https://x/{n}", "tags": ["a"]} for n in range(rows)],
            "revenue": pa.array([None] * rows, pa.decimal128(12, 2)),
        },
        schema=XDM,
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


@pytest.fixture
def glue(aws):
    client = aws.client("glue")
    client.create_database(DatabaseInput={"Name": DATABASE})
    return client


@pytest.fixture
def waits():
    return []


@pytest.fixture
def catalog(aws, glue, waits):
    with GlueCatalog(
        DATABASE, TABLE, location=LOCATION, session=aws, sleep=waits.append
    ) as catalog:
        yield catalog


def partitions(glue) -> dict[str, str]:
    """Every partition of the table: its day and location."""
    pages = glue.get_paginator("get_partitions").paginate(
        DatabaseName=DATABASE, TableName=TABLE
    )
    return {
        p["Values"][0]: p["StorageDescriptor"]["Location"]
        for page in pages
        for p in page["Partitions"]
    }


def unit(batch_id: str, created_ms: int) -> WorkUnit:
    return WorkUnit(dataset_id=DATASET, batch_id=batch_id, batch_created_ms=created_ms)


def test_table_from_a_parquet_schema_with_nested_xdm_columns(catalog, glue):
    assert catalog.ensure_table(XDM) is True
    table = glue.get_table(DatabaseName=DATABASE, Name=TABLE)["Table"]
    storage = table["StorageDescriptor"]
    assert storage["Columns"] == XDM_COLUMNS
    assert storage["Location"] == LOCATION
    assert storage["SerdeInfo"]["SerializationLibrary"] == (
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    assert storage["InputFormat"].endswith("MapredParquetInputFormat")
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
    assert catalog.ensure_table(XDM) is False  # exists: left alone


def test_an_existing_table_is_kept_and_its_differences_logged(catalog, glue, caplog):
    catalog.ensure_table([{"Name": "_id", "Type": "string"}])
    with caplog.at_level(logging.WARNING, logger="aep_extract.tables.glue"):
        assert catalog.ensure_table(XDM) is False
    storage = glue.get_table(DatabaseName=DATABASE, Name=TABLE)["Table"][
        "StorageDescriptor"
    ]
    assert storage["Columns"] == [{"Name": "_id", "Type": "string"}]
    assert "identitymap, revenue, timestamp, web" in caplog.text


def test_a_table_partitioned_otherwise_is_refused(catalog, glue):
    glue.create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": TABLE,
            "PartitionKeys": [{"Name": "day", "Type": "string"}],
            "StorageDescriptor": {"Columns": [{"Name": "x", "Type": "int"}]},
        },
    )
    with pytest.raises(CatalogError, match="partition key"):
        catalog.ensure_table(XDM)


def test_adding_partitions_twice_gives_the_same_partitions(catalog, glue):
    catalog.ensure_table(XDM)
    assert catalog.add_partitions([DAY2, DAY1, DAY1]) == 2
    assert catalog.add_partitions([DAY1, DAY2]) == 0
    assert partitions(glue) == {
        DAY1: f"{LOCATION}date={DAY1}/",
        DAY2: f"{LOCATION}date={DAY2}/",
    }
    partition = glue.get_partition(
        DatabaseName=DATABASE, TableName=TABLE, PartitionValues=[DAY1]
    )["Partition"]
    assert partition["StorageDescriptor"]["Columns"] == XDM_COLUMNS


def test_many_days_go_in_requests_of_glues_limits(catalog, glue):
    catalog.ensure_table(XDM)
    sent: list[str] = []
    catalog.client.meta.events.register(
        "before-call.glue", lambda model, **_: sent.append(model.name)
    )
    days = [f"{year}-{month:02d}-{day:02d}" for year in range(2020, 2025)
            for month in range(1, 13) for day in range(1, 21)]  # fmt: skip
    assert catalog.add_partitions(days[:150]) == 150
    assert sent == ["GetTable", "BatchCreatePartition", "BatchCreatePartition"]
    sent.clear()
    assert len(days) == 1200
    assert catalog.missing_partitions(days) == days[150:]
    assert sent == ["BatchGetPartition", "BatchGetPartition"]


def test_missing_partitions_of_a_missing_table_are_every_day(catalog):
    assert catalog.missing_partitions([DAY2, DAY1]) == [DAY1, DAY2]


def test_a_missing_database_is_a_configuration_error(aws):
    catalog = GlueCatalog("nowhere", TABLE, location=LOCATION, session=aws)
    with pytest.raises(MissingResourceError, match="Glue database nowhere"):
        catalog.ensure_table(XDM)


def test_partitions_of_a_missing_table_are_refused(catalog):
    with pytest.raises(MissingResourceError, match="does not exist"):
        catalog.add_partitions([DAY1])


def test_access_denied_is_a_catalog_error_not_retried(catalog, glue):
    catalog.ensure_table(XDM)
    sends = answer_calls(
        catalog.client,
        "glue.BatchCreatePartition",
        [error("AccessDeniedException")] * 5,
    )
    with pytest.raises(CatalogError, match="needs glue:BatchCreatePartition") as info:
        catalog.add_partitions([DAY1])
    assert not isinstance(info.value, ConfigError)
    assert len(sends) == 1
    assert partitions(glue) == {}


def test_throttling_is_retried_under_the_retry_policy(catalog, glue, waits):
    catalog.ensure_table(XDM)
    answer_calls(
        catalog.client,
        "glue.BatchCreatePartition",
        [error("ThrottlingException")] * 2,
    )
    assert catalog.add_partitions([DAY1]) == 1
    assert len(waits) == 2
    assert set(partitions(glue)) == {DAY1}


def test_a_throttled_entry_of_a_batch_is_retried(catalog, glue, waits):
    catalog.ensure_table(XDM)
    throttled_entry = {
        "Errors": [
            {
                "PartitionValues": [DAY1],
                "ErrorDetail": {"ErrorCode": "ThrottlingException"},
            }
        ],
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }
    answer_calls(catalog.client, "glue.BatchCreatePartition", [throttled_entry])
    assert catalog.add_partitions([DAY1]) == 1
    assert len(waits) == 1
    assert set(partitions(glue)) == {DAY1}


def test_gives_up_after_the_configured_attempts(aws, glue):
    catalog = GlueCatalog(
        DATABASE,
        TABLE,
        location=LOCATION,
        session=aws,
        retry=RetryConfig(attempts=2),
        sleep=lambda _: None,
    )
    answer_calls(catalog.client, "glue.GetTable", [error("InternalError", 500)] * 5)
    with pytest.raises(CatalogError, match=r"gave up after 2 attempt\(s\)"):
        catalog.table_exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"database": "a.b"}, "not a Glue database name"),
        ({"table": ""}, "not a Glue table name"),
        ({"location": "file:///tmp/x/"}, "not an S3 URL"),
        ({"location": "s3:///x/"}, "not an S3 URL"),
    ],
)
def test_bad_names_and_locations_are_refused(aws, kwargs, message):
    args = {"database": DATABASE, "table": TABLE, "location": LOCATION, **kwargs}
    with pytest.raises(ConfigError, match=message):
        GlueCatalog(args.pop("database"), args.pop("table"), session=aws, **args)


# -- registration during a run, repair after a crash -------------------------------


def test_each_completed_units_day_is_registered_once(catalog, glue):
    hooks = PartitionHooks(catalog, DATASET, schema=XDM)
    sent: list[str] = []
    catalog.client.meta.events.register(
        "before-call.glue.BatchCreatePartition", lambda **_: sent.append("create")
    )
    for batch_id, created in (("b1", DAY1_MS), ("b2", DAY1_MS + 1), ("b3", DAY2_MS)):
        hooks.unit_finished(unit=unit(batch_id, created), files=1, bytes=1)
    hooks.unit_finished(
        unit=WorkUnit(dataset_id="other", batch_id="x", batch_created_ms=0),
        files=1,
        bytes=1,
    )
    assert set(partitions(glue)) == {DAY1, DAY2}
    assert sent == ["create", "create"]


def test_days_are_flushed_in_batches(catalog, glue):
    hooks = PartitionHooks(catalog, DATASET, schema=XDM, batch_size=2)
    hooks.unit_finished(unit=unit("b1", DAY1_MS), files=1, bytes=1)
    assert not catalog.table_exists()
    hooks.unit_finished(unit=unit("b2", DAY2_MS), files=1, bytes=1)
    assert set(partitions(glue)) == {DAY1, DAY2}
    hooks.unit_finished(unit=unit("b3", DAY2_MS + 3_600_000 * 24), files=1, bytes=1)
    assert set(partitions(glue)) == {DAY1, DAY2}
    hooks.close()
    assert set(partitions(glue)) == {DAY1, DAY2, "2024-06-12"}


def test_repair_registers_exactly_the_completed_units_days(catalog, glue, tmp_path):
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        store.register([unit("b1", DAY1_MS), unit("b2", DAY2_MS)])
        for _ in range(2):  # b1 and b2 complete; the run dies before registering
            lease = store.claim(DATASET, "worker", 60)
            assert lease is not None
            store.complete(lease)
        store.register([unit("b3", DAY2_MS + 86_400_000)])  # 2024-06-12, Pending
        hooks = PartitionHooks(catalog, DATASET, schema=XDM)
        assert hooks.repair(store) == 2
        assert partitions(glue) == {
            DAY1: f"{LOCATION}date={DAY1}/",
            DAY2: f"{LOCATION}date={DAY2}/",
        }
        again = PartitionHooks(catalog, DATASET, schema=XDM)
        calls = answer_calls(catalog.client, "glue", [])
        assert again.repair(store) == 0
        assert calls == ["BatchGetPartition"]  # nothing missing, nothing written


def test_a_run_registers_its_days_and_a_crash_is_repaired(aws, glue, tmp_path):
    """Through the engine: the run's hooks fail to register (denied), the data
    lands anyway; the next run's repair registers the partitions, creating the
    table from the schema of a copied Parquet file."""
    aws.client("s3").create_bucket(Bucket=BUCKET)
    batches = {
        Batch(batch_id="b1", dataset_id=DATASET, status="success", created_ms=DAY1_MS):
            {("f1", "part-0.parquet"): parquet_bytes(50),
             ("f1", "part-1.parquet"): parquet_bytes(3)},
        Batch(batch_id="b2", dataset_id=DATASET, status="success", created_ms=DAY2_MS):
            {("f2", "part-0.parquet"): parquet_bytes(7)},
    }  # fmt: skip
    sink = S3Sink(f"s3://{BUCKET}/aep", session=aws)
    location = table_location(sink.url, DATASET)
    assert location == LOCATION
    denied = GlueCatalog(DATABASE, TABLE, location=location, session=aws)
    calls = answer_calls(denied.client, "glue", [error("AccessDeniedException")] * 9)
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        extractor = Extractor(
            MemoryAepSource(DATASET, batches),
            store=store,
            sink=sink,
            scheduler=SerialScheduler(),
            hooks=PartitionHooks(denied, DATASET, sink=sink),
        )
        report = extractor.run(DATASET, "2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
        assert report.ok
        assert store.summary(DATASET)[UnitStatus.COMPLETED] == 2
        assert calls == ["GetTable", "GetTable"]  # one try per completed unit
        glue_catalog = GlueCatalog(DATABASE, TABLE, location=location, session=aws)
        assert not glue_catalog.table_exists()

        hooks = PartitionHooks(glue_catalog, DATASET, sink=sink)
        assert hooks.repair(store) == 2
    table = glue.get_table(DatabaseName=DATABASE, Name=TABLE)["Table"]
    assert table["StorageDescriptor"]["Columns"] == XDM_COLUMNS
    assert partitions(glue) == {
        DAY1: f"{LOCATION}date={DAY1}/",
        DAY2: f"{LOCATION}date={DAY2}/",
    }
    s3_keys = {
        o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]
    }
    assert f"aep/{DATASET}/date={DAY1}/batch=b1/f1/part-0.parquet" in s3_keys


def test_a_layout_without_date_folders_is_refused(catalog):
    flat = KeyLayout(file_template="{dataset_id}/{batch_id}/{name}")
    with pytest.raises(ConfigError, match="no 'date=\\{date\\}/' segment"):
        PartitionHooks(catalog, DATASET, layout=flat)
    shared = KeyLayout(file_template="date={date}/{dataset_id}/{batch_id}/{name}")
    with pytest.raises(ConfigError, match="must hold \\{dataset_id\\}"):
        PartitionHooks(catalog, DATASET, layout=shared)
    with pytest.raises(ConfigError, match="not the prefix of dataset other"):
        PartitionHooks(catalog, "other")


# -- verify -----------------------------------------------------------------------


def test_verify_reports_a_day_missing_from_the_table(catalog, tmp_path):
    batches = {
        Batch(batch_id="b1", dataset_id=DATASET, status="success", created_ms=DAY1_MS):
            {("f1", "a.parquet"): b"one"},
        Batch(batch_id="b2", dataset_id=DATASET, status="success", created_ms=DAY2_MS):
            {("f2", "b.parquet"): b"two"},
    }  # fmt: skip
    sink = MemorySink()
    window = TimeWindow.parse("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        with Extractor(
            MemoryAepSource(DATASET, batches),
            store=store,
            sink=sink,
            scheduler=SerialScheduler(),
        ) as extractor:
            assert extractor.run(DATASET, window.start, window.end).ok
        catalog.ensure_table(XDM)
        catalog.add_partitions([DAY1])

        def check(**extra):
            return verify(
                source=None,
                store=store,
                sink=sink,
                dataset_id=DATASET,
                window=window,
                **extra,
            )

        plain = check()
        report = check(table=catalog)
    assert plain.ok
    assert not plain.partitions_checked
    assert report.partitions_checked
    assert [(f.kind, f.key) for f in report.findings] == [
        (FindingKind.PARTITION_MISSING, f"{DATASET}/date={DAY2}/")
    ]
    assert "has no partition date=2024-06-11" in str(report)
    assert report.to_dict()["findings"][0]["kind"] == "partition-missing"


# -- the CLI's --glue-table --------------------------------------------------------


def test_glue_table_option_opens_hooks_over_the_datasets_prefix(aws, glue):
    parser = argparse.ArgumentParser()
    parser.add_argument("--sink")
    parser.add_argument("--dataset")
    glue_table_arg(parser)
    args = parser.parse_args(
        ["--sink", f"s3://{BUCKET}/aep", "--dataset", DATASET, "--glue-table", "a.b"]
    )
    assert args.glue_table == ("a", "b")
    assert glue_table_errors(args) == []
    hooks = partition_hooks(args, S3Sink(args.sink, session=aws))
    assert hooks is not None
    assert hooks.catalog.location == LOCATION
    assert str(hooks.catalog) == "a.b"
    args.sink = "/tmp/out"
    assert glue_table_errors(args) == [
        "--glue-table needs an s3:// --sink, not '/tmp/out'"
    ]
    args.glue_table = None
    assert partition_hooks(args, MemorySink()) is None
    assert glue_table_errors(args) == []


@pytest.mark.parametrize("text", ["events", "a.b.c", ".b", "a b.c"])
def test_glue_table_option_refuses_what_is_not_database_dot_table(text, capsys):
    parser = argparse.ArgumentParser()
    glue_table_arg(parser, verify=True)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--glue-table", text])
    assert exit_.value.code == 2
    assert "--glue-table" in capsys.readouterr().err


def test_a_missing_table_without_schema_or_sink_is_refused(catalog):
    hooks = PartitionHooks(catalog, DATASET)
    with pytest.raises(CatalogError, match="give a schema, or the sink"):
        hooks.unit_finished(unit=unit("b1", DAY1_MS), files=1, bytes=1)
    catalog.ensure_table(XDM)
    hooks.flush()  # the day stayed queued
    assert catalog.missing_partitions([DAY1]) == []


def test_a_cli_run_repairs_before_and_registers_after(aws, glue, tmp_path):
    """What ``aep-extract run --glue-table`` does: the run's hooks register its
    days, and a day an earlier run completed but never registered is repaired
    first."""
    aws.client("s3").create_bucket(Bucket=BUCKET)
    earlier = Batch(
        batch_id="b0", dataset_id=DATASET, status="success", created_ms=DAY1_MS
    )
    later = Batch(
        batch_id="b1", dataset_id=DATASET, status="success", created_ms=DAY2_MS
    )
    source = MemoryAepSource(
        DATASET, {earlier: {("f0", "p.parquet"): parquet_bytes(4)}}
    )
    sink = S3Sink(f"s3://{BUCKET}/aep", session=aws)
    args = argparse.Namespace(dataset=DATASET, glue_table=(DATABASE, TABLE))
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        # The earlier run: copied, then died before registering anything.
        Extractor(source, store=store, sink=sink, scheduler=SerialScheduler()).run(
            DATASET, "2024-06-01T00:00:00Z", "2024-06-11T00:00:00Z"
        )
        source.batches[later] = {("f1", "p.parquet"): parquet_bytes(2)}
        hooks = partition_hooks(args, sink)
        extractor = Extractor(
            source, store=store, sink=sink, scheduler=SerialScheduler(), hooks=hooks
        )
        with registering(extractor):
            assert partitions(glue) == {DAY1: f"{LOCATION}date={DAY1}/"}
            report = extractor.run(
                DATASET, "2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z"
            )
    assert report.ok
    assert set(partitions(glue)) == {DAY1, DAY2}
