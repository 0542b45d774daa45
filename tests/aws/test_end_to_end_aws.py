"""``aep-extract run`` with S3 and DynamoDB over real HTTP (moto server) and the fake
AEP platform: exact output, the seed's attributes, and a rerun that uploads nothing."""

from __future__ import annotations

import json

import attrs
import pytest

from aep_extract import KeyLayout
from aep_extract._tasks import source_metadata
from aep_extract.cli import main

from ..e2e.helpers import (
    DATASET,
    expected_sources,
    expected_statuses,
    expected_tree,
    run_args,
    table_statuses,
)

BUCKET, PREFIX, TABLE = "aep-landing", "raw/aep", "aep-extract-state"


@pytest.fixture
def landing(moto_over_http):
    s3 = moto_over_http.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    return moto_over_http


def run(*extra: str) -> int:
    return main(
        run_args(
            f"s3://{BUCKET}/{PREFIX}", f"dynamodb://{TABLE}", "--workers", "4", *extra
        )
    )


def versions(s3) -> list[tuple[str, str]]:
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        found += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    return sorted(found)


def test_run_lands_every_file_and_rerun_uploads_nothing(
    fake_aep, fake_aep_env, landing, capsys
):
    assert run("--create-table") == 0
    s3 = landing.client("s3")
    expected = expected_tree(fake_aep)
    keys = {v[0] for v in versions(s3) if not v[0].endswith("_manifest.json")}
    assert keys == {f"{PREFIX}/{key}" for key in expected}
    for key, content in expected.items():
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read()
        assert body == content, key
    manifests = [k for k, _ in versions(s3) if k.endswith("/_manifest.json")]
    assert len(manifests) == 9
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifests[0])["Body"].read())
    assert manifest["fileCount"] == len(manifest["files"]) > 0

    items = landing.client("dynamodb").scan(TableName=TABLE)["Items"]
    statuses = expected_statuses(fake_aep)
    assert table_statuses(items) == statuses
    for item in items:
        if statuses.get(item["BatchID"]["S"]) != "Completed":
            continue
        assert item["DatasetID"]["S"] == DATASET
        assert item["OffsetRange"]["S"] == "0-*"
        assert int(item["LastProcessedOffset"]["N"]) == int(item["FilesDone"]["N"]) - 1
        for name in ("BatchID", "CreatedAt", "UpdatedAt"):
            assert item[name]["S"]
        assert "Owner" not in item

    before = versions(s3)
    capsys.readouterr()
    assert run("--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["filesCopied"] == 0
    assert versions(s3) == before  # no new object version: nothing re-uploaded
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_objects_of_the_listed_size_from_elsewhere_are_replaced(
    fake_aep, fake_aep_env, landing
):
    """An object of the right size whose metadata names no source, or another
    batch's file, is not taken for a copy: the run uploads the real bytes."""
    s3 = landing.client("s3")
    planted = [source for source in expected_sources(fake_aep) if source[1].length][:2]
    for index, (unit, ref, content) in enumerate(planted):
        other = attrs.evolve(unit, batch_id="another-batch")
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{PREFIX}/{KeyLayout().file_key(unit, ref)}",
            Body=bytes(255 - byte for byte in content),
            Metadata={} if index == 0 else source_metadata(other, ref),
        )
    assert run("--create-table") == 0
    for key, content in expected_tree(fake_aep).items():
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read()
        assert body == content, key
    for unit, ref, _ in planted:
        head = s3.head_object(
            Bucket=BUCKET, Key=f"{PREFIX}/{KeyLayout().file_key(unit, ref)}"
        )
        assert head["Metadata"] == source_metadata(unit, ref)


def test_missing_table_is_a_configuration_error(fake_aep_env, landing, capsys):
    assert run() == 2
    err = capsys.readouterr().err
    assert TABLE in err
    assert "--create-table" in err


def test_missing_bucket_fails_before_copying(fake_aep_env, moto_over_http, capsys):
    assert run("--create-table") == 2
    assert BUCKET in capsys.readouterr().err
