"""The template deployed over an existing sink bucket and secret."""

from __future__ import annotations

import boto3
import pytest

from .stack import ARTIFACTS, deploy

pytestmark = pytest.mark.filterwarnings(
    # moto's CloudFormation names each resource type it skips (see .stack).
    "ignore:Tried to parse AWS.* not supported by moto:UserWarning"
)


def test_an_existing_bucket_and_secret_are_used_as_they_are(
    moto_over_http: boto3.Session, moto_server: str
) -> None:
    s3 = moto_over_http.client("s3")
    s3.create_bucket(Bucket="existing-sink")
    secret = moto_over_http.client("secretsmanager").create_secret(
        Name="team/aep", SecretString="{}"
    )["ARN"]
    stack = deploy(
        moto_over_http,
        moto_server,
        {
            "DatasetIds": "ds1",
            "CreateBucket": "false",
            "BucketName": "existing-sink",
            "SinkPrefix": "team/aep/",
            "SecretArn": secret,
        },
        name="aep-existing",
    )
    assert stack.outputs["SinkUrl"] == "s3://existing-sink/team/aep/"
    assert stack.outputs["SecretArn"] == secret
    assert "SinkBucket" not in stack.physical_ids
    assert "SinkBucketPolicy" not in stack.physical_ids
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {
        "existing-sink",
        ARTIFACTS,
    }
    statements = {
        s["Sid"]: s
        for document in stack.role_policies("GlueWorkerRole")
        for s in document["Statement"]
    }
    listing = statements["CheckAndListOnlyThePrefix"]
    assert listing["Resource"] == "arn:aws:s3:::existing-sink"
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["team/aep/", "team/aep/*"]}
    }
    objects = statements["ReadAndWriteObjectsUnderThePrefix"]
    assert objects["Resource"] == "arn:aws:s3:::existing-sink/team/aep/*"
    assert statements["ReadTheAepCredentials"]["Resource"] == secret
