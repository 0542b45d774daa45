"""SIGKILL at random moments with S3 and DynamoDB on moto's server (real HTTP) and
faults on the fake AEP platform; a final run must equal a clean run."""

from __future__ import annotations

import json
import os

import moto.s3.models

from aep_extract.testing import FakeAepPlatform, FaultPlan

from ..crash_harness import (
    CRASH_CATALOG,
    FAULTS,
    MULTISTREAM,
    kills_wanted,
    run_with_kills,
)
from ..e2e.helpers import expected_statuses, expected_tree, run_args, table_statuses

BUCKET, PREFIX, TABLE = "crash-landing", "aep", "crash-state"


def test_sigkill_at_random_moments_then_rerun_is_exact(
    moto_over_http, moto_server, monkeypatch
):
    """Files from 128 KiB on go up as multipart uploads of 64 KiB parts (the moto
    server is told to take parts that small): kills land mid-upload."""
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1)
    s3 = moto_over_http.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    plan = FaultPlan.parse(FAULTS)
    with FakeAepPlatform.generate(**CRASH_CATALOG, faults=plan) as platform:
        env = {
            **os.environ,
            **platform.env(),
            "AWS_ENDPOINT_URL": moto_server,
            "AEP_TEST_CONCURRENCY": json.dumps(MULTISTREAM),
        }
        args = run_args(
            f"s3://{BUCKET}/{PREFIX}",
            f"dynamodb://{TABLE}",
            "--create-table",
            "--workers",
            "4",
            "--lease-seconds",
            "2",
        )
        result = run_with_kills(
            args, env, kills=kills_wanted(), seed=9, module="tests.multistream_cli"
        )
        served = platform.faults_served
        expected = expected_tree(platform)
        statuses = expected_statuses(platform)

    print(
        f"\ncrash test (dynamodb+s3): {result.kills} kills, "
        f"{result.exited_early} finished before their kill, faults {served}"
    )
    assert result.final_exit == 0, result.final_output
    assert result.kills >= 1
    assert sum(served.values()) > 0

    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    data = {k for k in keys if not k.endswith("/_manifest.json")}
    assert data == {f"{PREFIX}/{key}" for key in expected}  # nothing extra
    for key, content in expected.items():
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read()
        assert body == content, key
    batches = {key.split("/")[2] for key in expected}
    manifests = {k.split("/")[3] for k in keys if k.endswith("/_manifest.json")}
    assert manifests == batches
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    items = moto_over_http.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert table_statuses(items) == statuses
