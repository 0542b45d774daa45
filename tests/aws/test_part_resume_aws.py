"""Files in parts on S3 and DynamoDB over moto's server (real HTTP): kill -9 at
about 90 % of a large file then a rerun; resumed parts S3 no longer holds intact
are sent again."""

from __future__ import annotations

import os
from typing import Optional

import moto.s3.models

from aep_extract.testing import FakeAepPlatform

from ..e2e.helpers import expected_tree, run_args
from ..part_resume import CATALOG, PART_SIZE, kill_at_90_then_rerun

BUCKET, PREFIX, TABLE = "parts-landing", "aep", "parts-state"


def test_a_rerun_after_kill_9_at_90_percent_fetches_only_missing_parts(
    moto_over_http, moto_server, monkeypatch
):
    """The rerun takes the dead process's unit over once its lease expires and
    completes the same multipart upload: at most 2 parts' worth of the file is
    served again; the object is exact and no upload is left."""
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1)  # small parts
    s3 = moto_over_http.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    dynamodb = moto_over_http.client("dynamodb")

    def progress() -> Optional[str]:
        try:
            items = dynamodb.scan(TableName=TABLE)["Items"]
        except dynamodb.exceptions.ResourceNotFoundException:
            return None
        return next((i["Progress"]["S"] for i in items if "Progress" in i), None)

    with FakeAepPlatform.generate(**CATALOG) as platform:
        args = run_args(
            f"s3://{BUCKET}/{PREFIX}",
            f"dynamodb://{TABLE}",
            "--create-table",
            "--lease-seconds",
            "2",
        )
        env = {**os.environ, **platform.env(), "AWS_ENDPOINT_URL": moto_server}
        result = kill_at_90_then_rerun(platform, args, env, progress)
        expected = expected_tree(platform)

    assert result.final is not None
    assert result.final.returncode == 0, result.final.stderr
    assert result.recorded_at_kill >= result.kill_at_parts
    assert "took over expired lease" in result.final.stderr
    assert "resuming upload" in result.final.stderr
    print(
        f"\nkill at {result.recorded_at_kill} parts recorded: "
        f"{result.transferred_again} bytes served again (parts of {PART_SIZE})"
    )
    assert result.transferred_again <= 2 * PART_SIZE
    for key, content in expected.items():
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read()
        assert body == content, key
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert progress() is None
