"""4 processes x 4 threads on one DynamoDB table and one bucket (moto server, real
HTTP): one owner per unit at any time, expired leases taken over, exact output."""

from __future__ import annotations

import os

from aep_extract import DynamoDBCheckpointStore, Extractor, HttpAepSource, S3Sink
from aep_extract.testing import FakeAepPlatform

from ..e2e.helpers import (
    DATASET,
    END,
    START,
    expected_statuses,
    expected_tree,
    sink_tree,
    table_statuses,
)
from ..many_workers import (
    LEASE_SECONDS,
    check_single_owner,
    read_records,
    recording,
    run_workers,
)

BUCKET, TABLE = "shared-landing", "shared-state"


def test_four_processes_share_one_table(moto_over_http, moto_server, tmp_path):
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    records = tmp_path / "records"
    records.mkdir()
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }
    with FakeAepPlatform.generate(batches=24, files_per_batch=4) as platform:
        store = recording(
            DynamoDBCheckpointStore(TABLE, session=moto_over_http, create_table=True),
            records / "ghost.jsonl",
        )
        Extractor(
            HttpAepSource.from_env(platform.env()),
            store=store,
            sink=S3Sink(f"s3://{BUCKET}/x"),
        ).plan(DATASET, START, END)
        assert store.claim(DATASET, "ghost", LEASE_SECONDS) is not None

        exits = run_workers(
            {**platform.env(), **env},
            f"dynamodb://{TABLE}",
            f"s3://{BUCKET}/x",
            records,
        )
        assert exits == [0, 0, 0, 0]
        expected = expected_tree(platform)
        statuses = expected_statuses(platform)

    counts = check_single_owner(read_records(records))
    print(f"\nmany workers (dynamodb): {counts}")
    assert counts["takeovers"] >= 1
    assert sink_tree(S3Sink(f"s3://{BUCKET}/x", session=moto_over_http)) == expected
    items = moto_over_http.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert table_statuses(items) == statuses
