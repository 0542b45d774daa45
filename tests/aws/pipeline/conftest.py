"""The pipeline's world: the fake AEP platform over HTTP, and on moto's server the
checkpoint table, the landing and artifact buckets, the credentials' secret and the
environment the template gives the Lambda functions and workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta

import attrs
import boto3
import pytest

from aep_extract.checkpoints.dynamodb import DynamoDBCheckpointStore
from aep_extract.testing import FakeAepPlatform

from ...e2e.helpers import DATASET

TABLE, BUCKET, ARTIFACTS, SECRET = "aep-extract", "landing", "artifacts", "aep-creds"
SINK = f"s3://{BUCKET}/aep"
SHARDS = f"s3://{ARTIFACTS}/aep-extract/shards/"
LEASE_SECONDS = "2"
GLUE_JOB = "aep-extract"


@attrs.define
class World:
    platform: FakeAepPlatform
    session: boto3.Session

    def store(self) -> DynamoDBCheckpointStore:
        return DynamoDBCheckpointStore(TABLE, session=self.session)

    def put_secret(self, name: str, **changes: str) -> None:
        credentials = {**self.platform.env(), **changes}
        self.session.client("secretsmanager").create_secret(
            Name=name, SecretString=json.dumps(credentials)
        )

    def read_json(self, location: dict[str, str]) -> object:
        s3 = self.session.client("s3")
        body = s3.get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"]
        return json.loads(body.read())

    def start_worker(self, *argv: str) -> subprocess.Popen[str]:
        """``python -m aep_extract.aws.worker ARGV`` with the template's
        environment (this process's, set by the fixture)."""
        return subprocess.Popen(
            [sys.executable, "-m", "aep_extract.aws.worker", *argv],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def glue_run(self) -> tuple[str, str]:
        """A run of the Glue job: its id and the deadline a worker derives from it
        (start + 60 minutes - the default margin of 120 s), as the worker logs it."""
        glue = self.session.client("glue")
        run_id = glue.start_job_run(JobName=GLUE_JOB, Timeout=60)["JobRunId"]
        run = glue.get_job_run(JobName=GLUE_JOB, RunId=run_id)["JobRun"]
        deadline = run["StartedOn"] + timedelta(minutes=60, seconds=-120)
        return run_id, f"deadline {deadline.isoformat()}"

    def copying_unit(self, process: subprocess.Popen[str]) -> str:
        """Wait until ``process`` holds a unit with a file copied; its id."""
        dynamodb = self.session.client("dynamodb")
        while process.poll() is None:
            for item in dynamodb.scan(TableName=TABLE)["Items"]:
                if (
                    item.get("Status", {}).get("S") == "InProgress"
                    and f":{process.pid}:" in item.get("Owner", {}).get("S", "")
                    and int(item["LastProcessedOffset"]["N"]) >= 0
                ):
                    return str(item["BatchID"]["S"])
            time.sleep(0.02)
        pytest.fail(
            f"the worker ended before it copied a file: {process.communicate()}"
        )


def worker_argv(item: dict[str, str], *extra: str) -> Sequence[str]:
    """The worker's arguments for a shard, as the Map passes them."""
    return [
        "--dataset", item["dataset"],
        "--threads", item["threads"],
        "--requests_per_second", item["requests_per_second"],
        "--lease_seconds", LEASE_SECONDS,
        "--job-bookmark-option", "job-bookmark-disable",
        *extra,
    ]  # fmt: skip


def promote_loading_batches(platform: FakeAepPlatform) -> None:
    """Make every unit of the demo window exportable."""
    for batch in platform.batches_of(DATASET):
        if batch.status == "loading":
            platform.set_batch_status(batch.batch_id, "success")


@pytest.fixture
def world(moto_over_http, monkeypatch) -> Iterator[World]:
    """Every unit of the demo window exportable (:func:`promote_loading_batches`)."""
    session = moto_over_http
    for bucket in (BUCKET, ARTIFACTS):
        session.client("s3").create_bucket(Bucket=bucket)
    DynamoDBCheckpointStore(TABLE, session=session, create_table=True).close()
    session.client("glue").create_job(
        Name=GLUE_JOB,
        Role="arn:aws:iam::123456789012:role/aep-extract-glue",
        Command={"Name": "pythonshell", "ScriptLocation": f"s3://{ARTIFACTS}/job.py"},
        ExecutionProperty={"MaxConcurrentRuns": 10},
    )
    with FakeAepPlatform.generate() as platform:
        promote_loading_batches(platform)
        world = World(platform=platform, session=session)
        world.put_secret(SECRET)
        for name, value in {
            "AEP_SECRET_ID": SECRET,
            "AEP_EXTRACT_STORE": f"dynamodb://{TABLE}",
            "AEP_EXTRACT_SINK": SINK,
            "AEP_EXTRACT_SHARDS": SHARDS,
            "AEP_EXTRACT_DATASETS": DATASET,
            "AEP_EXTRACT_WORKER": "glue",
            "AEP_EXTRACT_WORKERS_PER_DATASET": "3",
            "AEP_EXTRACT_THREADS": "2",
            "AEP_EXTRACT_REQUESTS_PER_SECOND": "12",
            "AEP_EXTRACT_MAX_CONCURRENCY": "10",
            "AEP_EXTRACT_LAG": "15m",
        }.items():
            monkeypatch.setenv(name, value)
        for name in platform.env():
            monkeypatch.delenv(name, raising=False)  # only the secret has them
        yield world
