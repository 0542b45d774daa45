"""The seed's whole path with a transform: XDM Parquet over HTTP from the fake
platform, projected on the way, into S3 and a Glue table over moto's server (bytes
cross a socket), then ``verify`` with the table."""

from __future__ import annotations

from pathlib import Path

from aep_extract.cli import main
from aep_extract.sinks.s3 import S3Sink

from ..transform_scenario import (
    DATASET,
    END,
    PROJECT,
    START,
    expected_outputs,
    xdm_platform,
)

BUCKET, DATABASE, TABLE = "landing", "analytics", "events"
PROJECTED = {
    "_id": "string",
    "timestamp": "timestamp",
    "eventType": "string",
    "productListItems": "array<struct<SKU:string>>",
}
"""The table's columns after ``PROJECT``, as Hive types."""


def test_a_projected_run_lands_queryable_with_the_projected_columns(
    moto_over_http, monkeypatch, tmp_path, capsys
):
    aws = moto_over_http
    aws.client("s3").create_bucket(Bucket=BUCKET)
    glue = aws.client("glue")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    sink_url = f"s3://{BUCKET}/aep"
    common = ["--dataset", DATASET, "--start", START, "--end", END,
              "--sink", sink_url, "--store", f"sqlite:///{tmp_path / 'state.db'}",
              "--glue-table", f"{DATABASE}.{TABLE}"]  # fmt: skip
    with xdm_platform(batches=3) as platform:
        for name, value in platform.env().items():
            monkeypatch.setenv(name, value)
        assert main(["-q", "run", *common, "--transform", PROJECT]) == 0, (
            capsys.readouterr().err
        )
        assert main(["verify", *common]) == 0, capsys.readouterr().out
        expected = expected_outputs(platform, [PROJECT])

    table = glue.get_table(DatabaseName=DATABASE, Name=TABLE)["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns == PROJECTED
    days = glue.get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]
    assert [p["Values"] for p in days] == [["2024-07-01"]]
    sink = S3Sink(sink_url, session=aws)
    data = {k: sink.read_bytes(k) for k in sink.list_keys() if "_manifest" not in k}
    assert data == expected


def test_the_docs_athena_ddl_has_the_columns_such_a_run_creates():
    """docs/transforms.rst shows the DDL of the table the run above creates, for
    the same projection: its columns must stay those of the test's table."""
    text = (Path(__file__).parents[2] / "docs" / "transforms.rst").read_text()
    assert f"--transform '{PROJECT}'" in text
    ddl = text.split("CREATE EXTERNAL TABLE analytics.events (", 1)[1]
    lines = ddl.split("\n   )", 1)[0].strip().splitlines()
    columns = dict(line.strip().rstrip(",").split(" ", 1) for line in lines)
    assert {name.strip("`"): kind for name, kind in columns.items()} == PROJECTED
