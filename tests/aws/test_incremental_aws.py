"""Daily runs with ``--since-last`` on DynamoDB and S3 over real HTTP (moto server)."""

from __future__ import annotations

import json

from aep_extract import DynamoDBCheckpointStore, S3Sink
from aep_extract.cli import main

from ..e2e.helpers import DATASET, expected_tree, run_args, sink_tree, unit_statuses
from ..incremental_scenario import check_three_days, three_days

BUCKET, PREFIX, TABLE = "aep-daily", "raw", "aep-extract-daily"
SINK, STORE = f"s3://{BUCKET}/{PREFIX}", f"dynamodb://{TABLE}"


def test_three_daily_runs_copy_each_batch_once(moto_over_http, monkeypatch, capsys):
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    outcome = three_days(SINK, STORE, monkeypatch, capsys, "--create-table")
    check_three_days(outcome, sink_tree(S3Sink(SINK)))
    item = moto_over_http.client("dynamodb").get_item(
        TableName=TABLE,
        Key={"BatchID": {"S": f"dataset#{DATASET}"}, "OffsetRange": {"S": "watermark"}},
    )["Item"]
    assert int(item["PlannedUntil"]["N"]) == 1720051200000  # 2024-07-04T00:00:00Z


def test_a_batch_loading_at_the_first_run_is_copied_by_the_second(
    fake_aep, fake_aep_env, moto_over_http, capsys
):
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    (loading,) = [b for b in fake_aep.batches_of(DATASET) if b.status == "loading"]
    args = [*run_args(SINK, STORE, "--json"), "--create-table"]
    assert main(args) == 0
    store = DynamoDBCheckpointStore(TABLE)
    assert unit_statuses(store)[loading.batch_id] == "Waiting"

    fake_aep.set_batch_status(loading.batch_id, "success")
    capsys.readouterr()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["filesCopied"] == loading.file_count
    assert unit_statuses(store)[loading.batch_id] == "Completed"
    assert sink_tree(S3Sink(SINK)) == expected_tree(fake_aep)
