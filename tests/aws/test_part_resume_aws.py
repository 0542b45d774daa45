"""Files in parts on S3 and DynamoDB over moto's server (real HTTP): kill -9 at
about 90 % of a large file then a rerun; resumed parts S3 no longer holds intact
are sent again."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import moto.s3.models

from aep_extract import FileRef, S3Sink, SQLiteCheckpointStore
from aep_extract.testing import FakeAepPlatform

from ..e2e.helpers import (
    DATASET,
    END,
    START,
    expected_tree,
    manifests,
    run_args,
    sink_tree,
)
from ..part_resume import (
    BANDWIDTH,
    CATALOG,
    LARGE_FILE,
    MANY_IN_PARTS,
    PART_SIZE,
    extractor_in_parts,
    kill_at_90_then_rerun,
    large_name,
)

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

    with FakeAepPlatform.generate(**CATALOG, bandwidth=BANDWIDTH) as platform:
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
    assert "took over the lease of" in result.final.stderr
    assert "resuming upload" in result.final.stderr
    print(
        f"\nkill at {result.recorded_at_kill} parts recorded: "
        f"{result.transferred_again} bytes served again, "
        f"{result.large_asked_again} of the large file (parts of {PART_SIZE})"
    )
    assert result.transferred_again <= 2 * PART_SIZE  # bytes_served
    assert result.large_asked_again <= 2 * PART_SIZE
    for key, content in expected.items():
        body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")["Body"].read()
        assert body == content, key
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert progress() is None


def small_parts_sink(session) -> S3Sink:
    """An S3 sink taking the tests' small parts (moto is told to accept them)."""
    sink = S3Sink(f"s3://{BUCKET}/{PREFIX}", client=session.client("s3"))
    sink.min_part_size = 1
    return sink


def test_files_in_parts_land_byte_exact_with_bounded_parts_in_memory(
    moto_over_http, monkeypatch, tmp_path
):
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1)
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    sink = small_parts_sink(moto_over_http)
    with FakeAepPlatform.generate(**MANY_IN_PARTS) as platform:
        extractor, reads = extractor_in_parts(
            platform,
            SQLiteCheckpointStore(tmp_path / "state.db"),
            sink,
            part_size=64 * 1024,
            max_parts_per_file=2,
            max_parts_in_flight=3,
        )
        with extractor:
            report = extractor.run(DATASET, START, END)
        expected = expected_tree(platform)

    assert report.ok
    assert len(reads.starts) > 10
    assert reads.peak_per_file == 2
    assert reads.peak_total == 3
    assert sink_tree(sink) == expected
    for manifest in manifests(sink).values():
        for entry in manifest["files"]:
            assert entry["sha256"] == hashlib.sha256(expected[entry["key"]]).hexdigest()
    s3 = moto_over_http.client("s3")
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_resumed_parts_s3_lost_or_holds_damaged_are_sent_again(
    moto_over_http, monkeypatch, tmp_path
):
    """A stopped run leaves an upload and its record. Before the next run, part 1
    is overwritten with other bytes (wrong checksum), part 2 with fewer bytes
    (wrong size), and the record claims a part S3 never got: the next run sends
    exactly those again, plus the parts never recorded, and the object is exact."""
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1)
    s3 = moto_over_http.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sink = small_parts_sink(moto_over_http)
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    with FakeAepPlatform.generate(**CATALOG) as platform:
        name = large_name(platform)
        first, reads = extractor_in_parts(platform, store, sink, max_parts_per_file=1)

        def stop_at_ten(file: FileRef) -> None:
            if len(reads.starts[name]) == 10:
                first.stop()

        reads.on_part = stop_at_ten
        with first:
            assert first.run(DATASET, START, END).stopped
        (unit,) = [cp for cp in store.list(DATASET) if cp.progress]
        assert unit.progress is not None
        record = json.loads(unit.progress)
        (entry,) = record["files"]
        assert sorted(map(int, entry["d"])) == list(range(1, 11))
        s3_key = f"{PREFIX}/{entry['k']}"
        for number, body in ((1, b"x" * PART_SIZE), (2, b"y" * 100)):
            s3.upload_part(
                Bucket=BUCKET, Key=s3_key, UploadId=entry["t"], PartNumber=number,
                Body=body,
            )  # fmt: skip
        entry["d"]["20"] = entry["d"]["3"]  # never uploaded
        lease = store.claim(DATASET, "tamperer", 60)
        while lease is not None and lease.unit != unit.unit:
            store.release(lease)
            lease = store.claim(DATASET, "tamperer", 60)
        assert lease is not None
        store.release(store.save_progress(lease, json.dumps(record), 60))

        second, reads = extractor_in_parts(platform, store, sink, max_parts_per_file=1)
        with second:
            assert second.run(DATASET, START, END).ok
        expected = expected_tree(platform)

    sent_again = {start // PART_SIZE + 1 for start in reads.starts[name]}
    kept = {3, 4, 5, 6, 7, 8, 9, 10}
    assert sent_again == set(range(1, LARGE_FILE // PART_SIZE + 1)) - kept
    assert sink_tree(sink) == expected
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
