"""The documented Glue policy (``docs/policies/glue-catalog.json``) allows every
call that registering partitions makes, over the moto server, grants nothing they
do not need, and nothing on another table."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from aep_extract import Extractor, SerialScheduler, SQLiteCheckpointStore, TimeWindow
from aep_extract.models import Batch
from aep_extract.sinks.s3 import S3Sink
from aep_extract.tables import PartitionHooks, table_location
from aep_extract.tables.glue import GlueCatalog
from aep_extract.testing.memory_source import MemoryAepSource
from aep_extract.verify import verify

from .conftest import REGION
from .iam_policies import (
    Call,
    CallRecorder,
    Simulator,
    iam_requests,
    install_simulator,
    policy,
    unique,
    unused_grants,
)
from .test_glue_catalog import DAY1_MS, DAY2_MS, parquet_bytes
from .test_iam_policies import ACCOUNT, ROLE

DATABASE, TABLE, DATASET, BUCKET = "analytics", "aep_events", "ds1", "landing"


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(install_simulator())


def glue_policy() -> dict[str, Any]:
    return policy(
        "glue-catalog.json",
        DATABASE=DATABASE,
        TABLE=TABLE,
        REGION=REGION,
        ACCOUNT=ACCOUNT,
    )


def test_registering_needs_exactly_the_documented_policy(
    moto_over_http, simulator, tmp_path
):
    moto_over_http.client("glue").create_database(DatabaseInput={"Name": DATABASE})
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    session = boto3.Session(region_name=REGION)
    recorder = CallRecorder(session)
    batches = {
        Batch(batch_id=f"b{n}", dataset_id=DATASET, status="success", created_ms=ms): {
            (f"f{n}", "part-0.parquet"): parquet_bytes(3)
        }
        for n, ms in enumerate((DAY1_MS, DAY2_MS))
    }
    window = TimeWindow.parse("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")
    sink = S3Sink(f"s3://{BUCKET}/aep", session=moto_over_http)
    table = GlueCatalog(
        DATABASE,
        TABLE,
        location=table_location(sink.url, DATASET),
        session=session,
    )
    hooks = PartitionHooks(table, DATASET, sink=sink)
    with SQLiteCheckpointStore(tmp_path / "state.db") as store:
        hooks.repair(store)  # nothing yet: the table does not exist
        with Extractor(
            MemoryAepSource(DATASET, batches),
            store=store,
            sink=sink,
            scheduler=SerialScheduler(),
            hooks=hooks,
        ) as extractor:
            assert extractor.run(DATASET, window.start, window.end).ok
        hooks.repair(store)
        report = verify(
            source=None,
            store=store,
            sink=sink,
            dataset_id=DATASET,
            window=window,
            table=table,
        )
    assert report.ok
    glue_calls = [c for c in recorder.calls if c.service == "glue"]
    assert {c.operation for c in glue_calls} == {
        "GetTable",
        "CreateTable",
        "BatchCreatePartition",
        "BatchGetPartition",
    }
    asked = unique(
        r for c in glue_calls for r in iam_requests(c, region=REGION, account=ACCOUNT)
    )
    who = {"principal": ROLE, "resource_account": ACCOUNT}
    decisions = simulator.decide(asked, identity_policy=glue_policy(), **who)
    assert decisions == ["Allowed"] * len(asked)
    assert unused_grants(simulator, glue_policy(), asked, **who) == []


def test_the_policy_allows_nothing_on_another_table(simulator):
    other_table = {"DatabaseName": DATABASE, "TableName": "x"}
    calls = [
        Call("glue", "BatchCreatePartition", other_table),
        Call("glue", "BatchGetPartition", other_table),
        Call(
            "glue", "CreateTable", {"DatabaseName": "y", "TableInput": {"Name": TABLE}}
        ),
        Call("glue", "GetTable", {"DatabaseName": DATABASE, "Name": "x"}),
    ]
    asked = [  # the table's request of each: the catalog's and database's pass
        r
        for c in calls
        for r in iam_requests(c, region=REGION, account=ACCOUNT)
        if ":table/" in r.resource
    ]
    assert len(asked) == len(calls)
    decisions = simulator.decide(
        asked,
        identity_policy=glue_policy(),
        principal=ROLE,
        resource_account=ACCOUNT,
    )
    assert decisions == ["ImplicitlyDenied"] * len(asked)
