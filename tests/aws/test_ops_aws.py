"""``verify``, ``cleanup``, ``reset`` and ``failed`` with S3 and DynamoDB over real
HTTP (moto server) and the fake AEP platform."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from aep_extract import S3Sink
from aep_extract.cli import main
from aep_extract.sinks import s3 as s3_sink
from aep_extract.tables.glue import GlueCatalog

from ..e2e.helpers import DATASET, END, START, expected_tree, sink_tree
from ..ops_scenarios import check_fail_then_retry, fail_then_retry

BUCKET, PREFIX, TABLE = "aep-landing", "raw/aep", "aep-extract-ops"
SINK, STORE = f"s3://{BUCKET}/{PREFIX}", f"dynamodb://{TABLE}"


@pytest.fixture
def s3(moto_over_http):
    client = moto_over_http.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def window(*extra: str) -> list[str]:
    return ["--dataset", DATASET, "--start", START, "--end", END, *extra]


def verify(capsys) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["verify", *window("--sink", SINK, "--store", STORE, "--json")])
    return code, json.loads(capsys.readouterr().out)


def test_verify_reset_and_rerun_on_s3_and_dynamodb(
    fake_aep, fake_aep_env, s3, moto_over_http, capsys
):
    run = ["run", *window("--sink", SINK, "--store", STORE, "--json")]
    assert main([*run, "--create-table"]) == 0
    copied = expected_tree(fake_aep)

    code, report = verify(capsys)
    assert code == 0, report["findings"]
    assert report["objects"] == len(copied)
    assert report["bytesRead"] == sum(map(len, copied.values()))

    deleted, corrupted = sorted(k for k in copied if copied[k])[:2]
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{deleted}")
    data = copied[corrupted]
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{PREFIX}/{corrupted}",
        Body=bytes([data[0] ^ 0xFF]) + data[1:],
    )
    stray = f"{DATASET}/date=2024-06-12/batch=x/stray.bin"
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{stray}", Body=b"?")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/not-ours.bin", Body=b"?")

    code, report = verify(capsys)
    assert code == 1
    assert {(f["kind"], f["key"]) for f in report["findings"]} == {
        ("missing-object", deleted),
        ("checksum-mismatch", corrupted),
        ("stray-object", stray),
    }

    # Reset is no repair: a rerun skips an object of the right size, so the
    # corrupt one is deleted first; the rerun then copies the two missing files.
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{corrupted}")
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{stray}")
    capsys.readouterr()
    assert main(["reset", "--dataset", DATASET, "--store", STORE, "--yes"]) == 0
    assert "forgot 10 unit(s)" in capsys.readouterr().out
    table = moto_over_http.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert table == []
    assert main(run) == 0
    rerun = json.loads(capsys.readouterr().out)
    assert (rerun["filesCopied"], rerun["filesSkipped"]) == (2, len(copied) - 2)
    code, report = verify(capsys)
    assert code == 0, report["findings"]


def test_failed_export_and_cleanup_on_s3(
    fake_aep, fake_aep_env, s3, capsys, monkeypatch
):
    (batch,) = [b for b in fake_aep.batches_of(DATASET) if b.status == "failed"]
    args = [
        "failed",
        *window("--export-to", SINK, "--store", STORE, "--json", "--create-table"),
    ]
    assert main(args) == 0
    export = json.loads(capsys.readouterr().out)["export"]
    assert export["filesCopied"] == len(batch.failed_files) > 0
    date = time.strftime("%Y-%m-%d", time.gmtime(batch.created_ms / 1000))
    prefix = f"{PREFIX}/failed/{DATASET}/date={date}/batch={batch.batch_id}/"
    for file in batch.failed_files:
        body = s3.get_object(Bucket=BUCKET, Key=prefix + file.name)["Body"].read()
        assert body == file.content
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["export"]["filesCopied"] == 0

    # A leftover multipart upload, as a killed writer leaves one.
    s3.create_multipart_upload(Bucket=BUCKET, Key=f"{PREFIX}/{DATASET}/x/part.bin")
    s3.create_multipart_upload(Bucket=BUCKET, Key="elsewhere/part.bin")
    started = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"][0]["Initiated"]
    # An hour later, by the sink's clock (moto's clock may differ from ours).
    monkeypatch.setattr(s3_sink, "_utcnow", lambda: started + timedelta(hours=1))
    cleanup = ["cleanup", "--sink", SINK, "--json"]
    assert main(cleanup) == 0  # the default keeps uploads younger than a day
    assert json.loads(capsys.readouterr().out)["removed"] == 0
    assert main([*cleanup, "--older-than", "7200"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 0
    assert main([*cleanup, "--older-than", "1800"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["elsewhere/part.bin"]


def test_plan_fail_retry_failed_then_run(
    fake_aep, fake_aep_env, s3, moto_over_http, capsys
):
    steps = fail_then_retry(fake_aep, SINK, STORE, capsys, "--create-table")
    check_fail_then_retry(steps)
    assert sink_tree(S3Sink(SINK)) == expected_tree(fake_aep)


def test_run_and_verify_with_a_glue_table(
    fake_aep, fake_aep_env, s3, moto_over_http, capsys
):
    """``--glue-table``: the run registers every copied day as a partition (the
    fake's files are not Parquet, so the table exists beforehand), verify finds
    none missing, then reports the one deleted behind its back."""
    glue = moto_over_http.client("glue")
    glue.create_database(DatabaseInput={"Name": "lake"})
    GlueCatalog(
        "lake", "events", location=f"{SINK}/{DATASET}/", session=moto_over_http
    ).ensure_table([{"Name": "id", "Type": "string"}])
    table = ["--glue-table", "lake.events"]
    run = ["run", *window("--sink", SINK, "--store", STORE, "--create-table", *table)]
    assert main(run) == 0
    days = sorted(
        p["Values"][0]
        for p in glue.get_partitions(DatabaseName="lake", TableName="events")[
            "Partitions"
        ]
    )
    copied_days = sorted(
        {key.split("/")[1][len("date=") :] for key in expected_tree(fake_aep)}
    )
    assert days == copied_days

    capsys.readouterr()
    checked = ["verify", *window("--sink", SINK, "--store", STORE, "--json", *table)]
    assert main(checked) == 0
    assert json.loads(capsys.readouterr().out)["partitionsChecked"] is True

    glue.delete_partition(
        DatabaseName="lake", TableName="events", PartitionValues=[days[0]]
    )
    assert main(checked) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [(f["kind"], f["key"]) for f in findings] == [
        ("partition-missing", f"{DATASET}/date={days[0]}/")
    ]


def test_glue_table_needs_an_s3_sink(tmp_path, capsys):
    sink = ["--sink", str(tmp_path), "--store", "memory://"]
    code = main(["run", *window(*sink, "--glue-table", "lake.events")])
    assert code == 2
    assert "--glue-table needs an s3:// --sink" in capsys.readouterr().err
