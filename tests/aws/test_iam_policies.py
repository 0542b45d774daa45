"""The least-privilege policies of the docs (``docs/policies``) allow every AWS call
a real extraction makes, and deny what they should: checked with a real IAM policy
evaluator (iam-simulate, conditions included) on calls recorded over the moto
server."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NamedTuple

import boto3
import pytest
import requests
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError

from aep_extract import (
    AepSource,
    DynamoDBCheckpointStore,
    Extractor,
    S3Sink,
    ThreadPoolScheduler,
)
from aep_extract.checkpoints.dynamodb import GSI_NAME
from aep_extract.testing import FakeAepPlatform

from ..e2e.helpers import DATASET, END, START
from .conftest import REGION, fake_aws_env
from .iam_policies import (
    Call,
    CallRecorder,
    IamRequest,
    Simulator,
    iam_requests,
    install_simulator,
    policy,
    unique,
)

ACCOUNT = "123456789012"  # moto's, hence its KMS key ARNs'
WRITER = "210987654321"  # the writer's account when the bucket is another's
ROLE = f"arn:aws:iam::{ACCOUNT}:role/aep-extract"
BUCKET, PREFIX, TABLE = "aep-landing", "raw/aep", "aep-extract-state"
MiB = 1024 * 1024
DEFAULT_KEY_POLICY = {
    # A KMS key obeys IAM policies only when its key policy says so, as the
    # default key policy does.
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ],
}


class Recording(NamedTuple):
    calls: list[Call]
    kms_key_arn: str

    def requests(self, service: str, *, kms: bool = True) -> list[IamRequest]:
        key = self.kms_key_arn if kms else None
        return unique(
            request
            for call in self.calls
            if call.service == service
            for request in iam_requests(
                call, region=REGION, account=ACCOUNT, kms_key_arn=key
            )
        )


@pytest.fixture(scope="session")
def simulator() -> Simulator:
    return Simulator(install_simulator())


@pytest.fixture(scope="module")
def recording(moto_server: str) -> Iterator[Recording]:
    try:
        with pytest.MonkeyPatch.context() as env:
            yield record_a_days_work(env, moto_server)
    finally:
        requests.post(f"{moto_server}/moto-api/reset", timeout=10)


def record_a_days_work(env: pytest.MonkeyPatch, moto_server: str) -> Recording:
    """Every AWS call of a day's work, over the moto server: a run with a multipart
    file and SSE-KMS, a rerun, a daily run, status, verify, retry, cleanup of a
    killed writer's upload, and reset."""
    fake_aws_env(env)
    env.setenv("AWS_ENDPOINT_URL", moto_server)
    admin = boto3.Session(region_name=REGION).client("s3")
    admin.create_bucket(Bucket=BUCKET)
    kms = boto3.Session(region_name=REGION).client("kms")
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]

    session = boto3.Session(region_name=REGION)
    recorder = CallRecorder(session)
    # As S3 answers a caller whose s3:ListBucket is limited to a prefix: 403, not
    # 404, for a missing key (the sink then lists that key).
    session.events.register("before-parameter-build.s3.HeadObject", note_object)
    session.events.register(
        "before-call.s3.HeadObject", functools.partial(forbid_missing, admin)
    )
    # Two parts for the large file: 5 MiB (the smallest part) and 1 MiB.
    with FakeAepPlatform.generate(large_file_size=6 * MiB) as platform:
        for name, value in platform.env().items():
            env.setenv(name, value)
        store = DynamoDBCheckpointStore(TABLE, session=session, create_table=True)
        sink = S3Sink(
            f"s3://{BUCKET}/{PREFIX}",
            session=session,
            part_size=5 * MiB,
            sse="aws:kms",
            kms_key_id=key_arn,
        )
        with Extractor(
            AepSource.from_env(),
            store=store,
            sink=sink,
            scheduler=ThreadPoolScheduler(4),
            progress=False,
        ) as extractor:
            assert extractor.run(DATASET, START, END).ok
            assert extractor.run(DATASET, START, END).files_copied == 0
            extractor.run_since_last(DATASET)
            assert extractor.status(DATASET).units
            assert extractor.verify(DATASET, START, END).ok
            extractor.retry_failed(DATASET)
            admin.create_multipart_upload(Bucket=BUCKET, Key=f"{PREFIX}/killed.bin")
            assert sink.cleanup_incomplete(older_than=timedelta(0)) == 1
            assert store.forget(DATASET) > 0
    return Recording(recorder.calls, key_arn)


_OBJECT = "aep-test-object"


def note_object(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[_OBJECT] = (params["Bucket"], params["Key"])


def forbid_missing(admin: Any, context: dict[str, Any], **_: Any) -> Any:
    """A 403 answer when the object is missing, else None (send the request)."""
    bucket, key = context[_OBJECT]
    try:
        admin.head_object(Bucket=bucket, Key=key)
    except ClientError:
        error = {"Code": "403", "Message": "Forbidden"}
        metadata = {"HTTPStatusCode": 403}
        response = AWSResponse("", 403, HTTPHeaders(), None)
        return response, {"Error": error, "ResponseMetadata": metadata}
    return None  # the object exists: send the real request


def s3_policy(**values: str) -> dict[str, Any]:
    return policy("s3-sink.json", BUCKET=BUCKET, PREFIX=PREFIX, REGION=REGION, **values)


def dynamodb_policy() -> dict[str, Any]:
    return policy("dynamodb-store.json", TABLE=TABLE, REGION=REGION, ACCOUNT=ACCOUNT)


def denied(
    simulator: Simulator, asked: list[IamRequest], **kwargs: Any
) -> list[IamRequest]:
    decisions = simulator.decide(asked, **kwargs)
    return [r for r, d in zip(asked, decisions) if d != "Allowed"]


def test_every_call_of_a_run_is_allowed_by_the_documented_policies(
    recording, simulator
):
    operations = {(c.service, c.operation) for c in recording.calls}
    # Every kind of call the sink and the store make was exercised.
    assert operations >= {
        ("s3", name)
        for name in (
            "ListObjectsV2",
            "HeadObject",
            "GetObject",
            "PutObject",
            "CreateMultipartUpload",
            "UploadPart",
            "CompleteMultipartUpload",
            "ListMultipartUploads",
            "AbortMultipartUpload",
        )
    }
    assert operations >= {
        ("dynamodb", name)
        for name in (
            "DescribeTable",
            "CreateTable",
            "GetItem",
            "PutItem",
            "BatchGetItem",
            "Query",
            "DeleteItem",
        )
    }
    key_id = recording.kms_key_arn.rsplit("/", 1)[1]
    sink_policy = s3_policy(ACCOUNT=ACCOUNT, KEY_ID=key_id)
    s3_requests = recording.requests("s3")
    kms_requests = [r for r in s3_requests if r.action.startswith("kms:")]
    assert {r.action for r in kms_requests} == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert not denied(
        simulator,
        [r for r in s3_requests if r not in kms_requests],
        identity_policy=sink_policy,
        principal=ROLE,
        resource_account=ACCOUNT,
    )
    assert not denied(
        simulator,
        kms_requests,
        identity_policy=sink_policy,
        principal=ROLE,
        resource_account=ACCOUNT,
        resource_policy=DEFAULT_KEY_POLICY,
    )
    assert not denied(
        simulator,
        recording.requests("dynamodb"),
        identity_policy=dynamodb_policy(),
        principal=ROLE,
        resource_account=ACCOUNT,
    )


def test_a_bucket_of_another_account_needs_the_documented_bucket_policy(
    recording, simulator
):
    s3_requests = recording.requests("s3", kms=False)
    writer = {
        "identity_policy": s3_policy(ACCOUNT=WRITER, KEY_ID="unused"),
        "principal": f"arn:aws:iam::{WRITER}:role/aep-extract",
        "resource_account": ACCOUNT,
    }
    bucket_policy = policy(
        "s3-bucket-policy.json", BUCKET=BUCKET, PREFIX=PREFIX, WRITER_ACCOUNT=WRITER
    )
    assert not denied(simulator, s3_requests, **writer, resource_policy=bucket_policy)
    # The control: across accounts, the writer's own policy is not enough.
    assert denied(simulator, s3_requests, **writer) == s3_requests


OUTSIDE = [
    # HeadBucket, the sink's former preflight: it carries no s3:prefix.
    Call("s3", "HeadBucket", {"Bucket": BUCKET}),
    Call("s3", "ListObjectsV2", {"Bucket": BUCKET}),
    Call("s3", "ListObjectsV2", {"Bucket": BUCKET, "Prefix": "raw/"}),
    Call("s3", "ListObjectsV2", {"Bucket": BUCKET, "Prefix": f"{PREFIX}x/"}),
    Call("s3", "GetObject", {"Bucket": BUCKET, "Key": "other/file"}),
    Call("s3", "PutObject", {"Bucket": BUCKET, "Key": f"{PREFIX}x/file"}),
    Call("s3", "PutObject", {"Bucket": "other-bucket", "Key": f"{PREFIX}/file"}),
    Call("dynamodb", "PutItem", {"TableName": "other-table"}),
    Call("dynamodb", "Query", {"TableName": "other-table"}),
    Call("dynamodb", "Query", {"TableName": TABLE, "IndexName": "other-index"}),
    Call("dynamodb", "UpdateItem", {"TableName": TABLE}),
]
INSIDE = [
    Call("s3", "ListObjectsV2", {"Bucket": BUCKET, "Prefix": f"{PREFIX}/"}),
    Call("s3", "ListObjectsV2", {"Bucket": BUCKET, "Prefix": f"{PREFIX}/d/k"}),
    Call("s3", "PutObject", {"Bucket": BUCKET, "Key": f"{PREFIX}/d/k"}),
    Call("dynamodb", "Query", {"TableName": TABLE, "IndexName": GSI_NAME}),
    Call("dynamodb", "Query", {"TableName": TABLE}),  # a plan's lookup of a batch
]
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k1"


@pytest.mark.parametrize(
    ("calls", "decision"), [(OUTSIDE, "ImplicitlyDenied"), (INSIDE, "Allowed")]
)
def test_the_policies_allow_nothing_outside_the_prefix_and_table(
    simulator, calls, decision
):
    both = {**s3_policy(ACCOUNT=ACCOUNT, KEY_ID="k1")}
    both["Statement"] = both["Statement"] + dynamodb_policy()["Statement"]
    asked = unique(
        request
        for call in calls
        for request in iam_requests(call, region=REGION, account=ACCOUNT)
    )
    decisions = simulator.decide(
        asked, identity_policy=both, principal=ROLE, resource_account=ACCOUNT
    )
    assert dict(zip(asked, decisions)) == dict.fromkeys(asked, decision)


def test_the_kms_key_is_usable_only_through_s3(simulator):
    asked = [
        IamRequest(
            "kms:Decrypt", KEY_ARN, (("kms:ViaService", f"{via}.amazonaws.com"),)
        )
        for via in (f"s3.{REGION}", f"sqs.{REGION}", "s3.eu-west-1")
    ] + [IamRequest("kms:Decrypt", KEY_ARN)]
    decisions = simulator.decide(
        asked,
        identity_policy=s3_policy(ACCOUNT=ACCOUNT, KEY_ID="k1"),
        principal=ROLE,
        resource_account=ACCOUNT,
        resource_policy=DEFAULT_KEY_POLICY,
    )
    assert decisions == ["Allowed"] + ["ImplicitlyDenied"] * 3
