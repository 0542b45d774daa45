"""S3Sink on moto, in-process and over HTTP: contract, multipart, options, errors."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import sys
import threading
import types
import uuid
import zlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Optional, cast

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.response import StreamingBody

from aep_extract import ConcurrencyConfig, RetryConfig
from aep_extract._run import RunScope, within
from aep_extract.errors import (
    ConfigError,
    MissingResourceError,
    SinkError,
    UnsafeKeyError,
)
from aep_extract.sinks import _multipart, _s3_support, open_sink, s3
from aep_extract.sinks.s3 import S3Sink, choose_part_size
from aep_extract.testing.contracts import SinkContract

from .conftest import fail_sends, s3_error

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB
PART = 5 * MiB
FAST_RETRY = RetryConfig(attempts=3, initial_wait=0.5, max_wait=4.0)


class Boom(Exception):
    """Raised inside a write block to make it fail."""


@pytest.fixture
def bucket(aws: boto3.Session) -> str:
    name = f"aep-test-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def client(aws: boto3.Session) -> Any:
    """A plain client for looking at what the sink stored."""
    return aws.client("s3")


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def sink(aws: boto3.Session, bucket: str, sleeps: list[float]) -> Iterator[S3Sink]:
    with S3Sink(
        f"s3://{bucket}/root",
        session=aws,
        part_size=PART,
        retry=FAST_RETRY,
        sleep=sleeps.append,
    ) as opened:
        yield opened


def payload(size: int, seed: int = 7) -> bytes:
    """Deterministic bytes that differ from part to part."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def write_in_chunks(sink: S3Sink, key: str, data: bytes, **kwargs: Any) -> None:
    with sink.open_write(key, **kwargs) as out:
        for start in range(0, len(data), MiB):
            out.write(data[start : start + MiB])


def write_then_fail(sink: S3Sink, key: str, data: bytes, **kwargs: Any) -> None:
    with sink.open_write(key, **kwargs) as out:
        out.write(data)
        out.write(b"x")
        raise Boom


def size_of(sink: S3Sink, key: str) -> int:
    info = sink.stat(key)
    assert info is not None, f"{key} is not stored"
    return info.size


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class Recorder:
    """Records the parameters of every call of some operations on a client."""

    def __init__(self, client: Any, *operations: str) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for operation in operations:
            client.meta.events.register(
                f"before-parameter-build.s3.{operation}", self._record
            )

    def _record(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        body = params.get("Body")
        size = body.getbuffer().nbytes if isinstance(body, io.BytesIO) else None
        self.calls.append((model.name, {**params, "BodySize": size}))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


def fail_call(
    client: Any,
    operation: str,
    code: str,
    status: int,
    *,
    on_call: int = 1,
    message: str = "injected",
) -> list[int]:
    """Make the ``on_call``-th call of ``operation`` fail; returns the call count."""
    seen: list[int] = []

    def answer(**kwargs: Any) -> Optional[tuple[AWSResponse, dict[str, Any]]]:
        seen.append(1)
        if len(seen) != on_call:
            return None  # send the real request
        return AWSResponse("", status, HTTPHeaders(), None), {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    client.meta.events.register(f"before-call.s3.{operation}", answer)
    return seen


def uploads(client: Any, bucket: str) -> list[str]:
    return [
        u["Key"]
        for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]


def exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


# -- the contract ---------------------------------------------------------------------


class TestS3SinkContract(SinkContract):
    @pytest.fixture(params=["", "exports/aep"], ids=["bucket-root", "prefix"])
    def sink(
        self, request: pytest.FixtureRequest, aws: boto3.Session, bucket: str
    ) -> Iterator[S3Sink]:
        with S3Sink(f"s3://{bucket}/{request.param}", session=aws) as opened:
            yield opened


# -- multipart ------------------------------------------------------------------------


def test_large_object_goes_up_in_parts_with_checksums(sink, client, bucket):
    data = payload(12 * MiB + 123)
    calls = Recorder(
        sink.client,
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    )
    write_in_chunks(sink, "big.bin", data, size=len(data))

    assert calls.names() == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert calls.of("CreateMultipartUpload")[0]["ChecksumAlgorithm"] == "SHA256"
    parts = calls.of("UploadPart")
    assert [p["PartNumber"] for p in parts] == [1, 2, 3]
    # One part in memory at a time: every part but the last is exactly part_size.
    assert [p["BodySize"] for p in parts] == [PART, PART, len(data) - 2 * PART]
    expected = [
        b64(hashlib.sha256(data[i * PART : (i + 1) * PART]).digest()) for i in range(3)
    ]
    assert [p["ChecksumAlgorithm"] for p in parts] == ["SHA256"] * 3
    assert [p["ChecksumSHA256"] for p in parts] == expected
    completed = calls.of("CompleteMultipartUpload")[0]["MultipartUpload"]["Parts"]
    assert [p["ChecksumSHA256"] for p in completed] == expected

    head = client.head_object(Bucket=bucket, Key="root/big.bin", PartNumber=1)
    assert head["PartsCount"] == 3
    assert sink.read_bytes("big.bin") == data
    assert size_of(sink, "big.bin") == len(data)


def test_object_of_exactly_one_part_is_a_single_put(sink, client, bucket):
    calls = Recorder(sink.client, "PutObject", "CreateMultipartUpload", "UploadPart")
    write_in_chunks(sink, "one.bin", payload(PART), size=PART)
    assert calls.names() == ["PutObject"]
    assert sink.read_bytes("one.bin") == payload(PART)


def test_object_of_whole_parts_has_no_empty_last_part(sink):
    calls = Recorder(sink.client, "UploadPart")
    data = payload(2 * PART)
    write_in_chunks(sink, "two.bin", data, size=len(data))
    assert [p["BodySize"] for p in calls.of("UploadPart")] == [PART, PART]
    assert sink.read_bytes("two.bin") == data


def test_small_object_stores_its_sha256_and_sha256_skips_the_read(sink, client, bucket):
    data = b"a small file\n"
    calls = Recorder(sink.client, "PutObject", "GetObject")
    sink.write_bytes("small.txt", data)
    put = calls.of("PutObject")[0]
    assert put["ChecksumAlgorithm"] == "SHA256"
    assert put["ChecksumSHA256"] == b64(hashlib.sha256(data).digest())
    head = client.head_object(
        Bucket=bucket, Key="root/small.txt", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == b64(hashlib.sha256(data).digest())

    assert sink.sha256("small.txt") == hashlib.sha256(data).hexdigest()
    assert "GetObject" not in calls.names()


def test_sha256_of_a_multipart_object_reads_it_back(sink):
    data = payload(PART + 10)
    write_in_chunks(sink, "big.bin", data)
    calls = Recorder(sink.client, "GetObject")
    assert sink.sha256("big.bin") == hashlib.sha256(data).hexdigest()
    assert calls.names() == ["GetObject"]


def test_reads_do_not_ask_for_checksum_validation(sink):
    # A multipart object's composite checksum cannot be checked on read.
    headers: list[dict[str, Any]] = []
    sink.client.meta.events.register(
        "before-call.s3.GetObject",
        lambda params, **kwargs: headers.append(dict(params["headers"])),
    )
    write_in_chunks(sink, "big.bin", payload(PART + 1))
    assert sink.read_bytes("big.bin") == payload(PART + 1)
    assert len(headers) == 1
    assert "x-amz-checksum-mode" not in {name.lower() for name in headers[0]}


def test_sha256_of_a_missing_object_fails(sink):
    with pytest.raises(SinkError, match="no object"):
        sink.sha256("missing")


def test_multipart_object_is_invisible_until_complete(sink):
    with sink.open_write("pending.bin") as out:
        out.write(payload(PART + 1))
        out.write(b"more")  # part 1 is uploaded by now
        assert sink.stat("pending.bin") is None
        assert list(sink.list_keys()) == []
    assert size_of(sink, "pending.bin") == PART + 5


def test_part_size_follows_the_announced_size(aws, bucket):
    with S3Sink(f"s3://{bucket}", session=aws) as sink:
        assert sink.part_size_for(None) == 64 * MiB
        assert sink.part_size_for(3 * MiB) == 8 * MiB
        assert sink.part_size_for(100 * GiB) == 11 * MiB
        calls = Recorder(sink.client, "UploadPart")
        data = payload(9 * MiB)
        write_in_chunks(sink, "nine.bin", data, size=len(data))
        assert [p["BodySize"] for p in calls.of("UploadPart")] == [8 * MiB, MiB]


# -- failures -------------------------------------------------------------------------


def test_failure_inside_the_block_aborts_the_upload(sink, client, bucket):
    calls = Recorder(sink.client, "UploadPart", "AbortMultipartUpload")
    with pytest.raises(Boom):
        write_then_fail(sink, "broken.bin", payload(2 * PART + 1), size=20 * MiB)
    assert calls.names() == ["UploadPart", "UploadPart", "AbortMultipartUpload"]
    assert uploads(client, bucket) == []
    assert not exists(client, bucket, "root/broken.bin")
    assert sink.stat("broken.bin") is None


def test_size_mismatch_aborts_and_leaves_nothing(sink, client, bucket):
    data = payload(2 * PART + 7)
    with pytest.raises(SinkError, match="expected"):
        write_in_chunks(sink, "short.bin", data, size=len(data) + 1)
    with pytest.raises(SinkError, match="expected"):
        write_in_chunks(sink, "long.bin", data, size=len(data) - 1)
    assert uploads(client, bucket) == []
    assert not exists(client, bucket, "root/short.bin")
    assert not exists(client, bucket, "root/long.bin")


def test_failed_part_upload_aborts_and_raises_sink_error(sink, client, bucket):
    fail_call(sink.client, "UploadPart", "InvalidRequest", 400, on_call=2)
    with pytest.raises(SinkError, match=r"upload a part of 'p\.bin'") as caught:
        write_in_chunks(sink, "p.bin", payload(3 * PART))
    assert isinstance(caught.value.__cause__, ClientError)
    assert uploads(client, bucket) == []
    assert not exists(client, bucket, "root/p.bin")


def test_failed_completion_aborts_and_raises_sink_error(sink, client, bucket):
    fail_call(sink.client, "CompleteMultipartUpload", "InvalidPart", 400)
    with pytest.raises(SinkError, match="InvalidPart"):
        write_in_chunks(sink, "c.bin", payload(PART + 1))
    assert uploads(client, bucket) == []
    assert not exists(client, bucket, "root/c.bin")


def test_failed_put_is_a_sink_error(sink, client, bucket):
    fail_call(sink.client, "PutObject", "AccessDenied", 403)
    with pytest.raises(SinkError, match="access denied") as caught:
        sink.write_bytes("denied.txt", b"x")
    assert isinstance(caught.value.__cause__, ClientError)
    assert not exists(client, bucket, "root/denied.txt")


def test_failed_abort_keeps_the_original_error_and_is_logged(
    sink, client, bucket, caplog
):
    fail_call(sink.client, "AbortMultipartUpload", "AccessDenied", 403)
    logs = caplog.at_level(logging.WARNING, logger="aep_extract.sinks._multipart")
    with logs, pytest.raises(Boom):
        write_then_fail(sink, "left.bin", payload(PART + 1))
    assert "could not abort upload" in caplog.text
    assert uploads(client, bucket) == ["root/left.bin"]
    assert sink.cleanup_incomplete(older_than=timedelta(0)) == 1
    assert uploads(client, bucket) == []


def test_too_many_parts_fails_and_aborts(sink, client, bucket, monkeypatch):
    monkeypatch.setattr(_multipart, "MAX_PARTS", 2)
    with pytest.raises(SinkError, match="more than 2 parts"):
        write_in_chunks(sink, "huge.bin", payload(2 * PART + 1))
    assert uploads(client, bucket) == []
    assert not exists(client, bucket, "root/huge.bin")


def test_writer_refuses_writes_after_the_block(sink):
    with sink.open_write("done.txt") as out:
        out.write(b"x")
    with pytest.raises(ValueError, match="finished"):
        out.write(b"y")
    assert sink.read_bytes("done.txt") == b"x"


def test_non_ascii_metadata_is_refused_before_any_request(sink, client, bucket):
    with pytest.raises(SinkError, match="printable ASCII"):
        sink.write_bytes("m.txt", b"x", metadata={"aep-batch-id": "bätch"})
    with pytest.raises(SinkError, match="printable ASCII"):
        sink.write_bytes("m.txt", b"x", metadata={"bad name": "v"})
    assert not exists(client, bucket, "root/m.txt")


# -- missing bucket, missing keys, denied HEAD ----------------------------------------


def test_missing_bucket_is_a_clear_sink_error(aws):
    with S3Sink("s3://no-such-bucket-here/p", session=aws, part_size=PART) as sink:
        attempts = [
            lambda: sink.write_bytes("k", b"x"),
            lambda: write_in_chunks(sink, "k", payload(PART + 1)),
            lambda: sink.stat("k"),
            lambda: sink.read_bytes("k"),
            lambda: list(sink.list_keys()),
            lambda: sink.cleanup_incomplete(),
        ]
        for attempt in attempts:
            with pytest.raises(
                SinkError, match="bucket 'no-such-bucket-here' does not exist"
            ) as caught:
                attempt()
            assert isinstance(caught.value.__cause__, ClientError)


def test_check_lists_one_key_under_the_prefix(sink, bucket):
    # Not HeadBucket: a s3:ListBucket grant limited to the prefix refuses it.
    recorder = Recorder(sink.client, "HeadBucket", "ListObjectsV2")
    sink.check()
    assert recorder.names() == ["ListObjectsV2"]
    (params,) = recorder.of("ListObjectsV2")
    assert (params["Bucket"], params["Prefix"], params["MaxKeys"]) == (
        bucket,
        "root/",
        1,
    )


def test_check_of_a_missing_bucket_is_a_missing_resource_error(aws):
    sink = S3Sink("s3://no-such-bucket-here/p", session=aws)
    with sink, pytest.raises(MissingResourceError, match="'no-such-bucket-here'"):
        sink.check()


def test_check_denied_names_the_permission_it_needs(sink, bucket):
    fail_call(sink.client, "ListObjectsV2", "AccessDenied", 403)
    with pytest.raises(SinkError) as caught:
        sink.check()
    assert not isinstance(caught.value, MissingResourceError)
    assert (
        f"access denied listing s3://{bucket}/root/: the role needs s3:ListBucket "
        f"on arn:aws:s3:::{bucket} for s3:prefix 'root/'"
    ) in str(caught.value)


def test_access_denied_shows_what_s3_says_is_missing(sink):
    reason = (
        "User: arn:aws:sts::123456789012:assumed-role/etl/job is not authorized to "
        "perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:"
        "123456789012:key/k1"
    )
    fail_call(sink.client, "PutObject", "AccessDenied", 403, message=reason)
    with pytest.raises(SinkError, match="kms:GenerateDataKey"):
        sink.write_bytes("k", b"x")
    fail_call(sink.client, "PutObject", "AccessDenied", 403, message="Access Denied")
    with pytest.raises(SinkError) as caught:
        sink.write_bytes("k", b"x")
    assert str(caught.value) == (
        "S3Sink('s3://" + sink.bucket + "/root'): access denied: cannot write 'k'; "
        "check the IAM and bucket policies (the S3 sink docs list what each call "
        "needs)"
    )


def test_read_of_a_missing_key_is_a_sink_error(sink):
    with pytest.raises(SinkError, match="no object 'nothing'") as caught:
        sink.open_read("nothing")
    assert isinstance(caught.value.__cause__, ClientError)


def test_head_denied_for_a_missing_key_means_missing(sink):
    # S3 answers 403 instead of 404 when the caller may not list the key.
    sink.write_bytes("there", b"x")
    fail_call(sink.client, "HeadObject", "403", 403)
    assert sink.stat("absent") is None
    fail_call(sink.client, "HeadObject", "403", 403)
    with pytest.raises(SinkError, match="access denied"):
        sink.stat("there")


def test_streaming_errors_become_sink_errors(sink):
    class BrokenBody:
        def read(self, amt: Optional[int] = None) -> bytes:
            raise ReadTimeoutError(endpoint_url="http://s3")

        def close(self) -> None:
            pass

    reader = _s3_support.BodyReader(
        cast("StreamingBody", BrokenBody()),
        lambda: sink._map_botocore_errors("read", "k"),
    )
    with pytest.raises(SinkError, match="cannot read 'k'"):
        reader.read(10)


# -- options --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, PART + 100], ids=["single-put", "multipart"])
def test_sse_s3_acl_storage_class_and_metadata(aws, bucket, client, size):
    metadata = {
        "aep-dataset-id": "ds-1",
        "aep-batch-id": "batch-1",
        "aep-dataset-file-id": "file-1",
    }
    with S3Sink(
        f"s3://{bucket}/root",
        session=aws,
        part_size=PART,
        sse="AES256",
        bucket_owner_full_control=True,
        storage_class="STANDARD_IA",
    ) as sink:
        calls = Recorder(sink.client, "PutObject", "CreateMultipartUpload")
        write_in_chunks(sink, "f.bin", payload(size), size=size, metadata=metadata)
    ((name, params),) = calls.calls
    assert name == ("PutObject" if size < PART else "CreateMultipartUpload")
    assert params["ACL"] == "bucket-owner-full-control"
    head = client.head_object(Bucket=bucket, Key="root/f.bin")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["Metadata"] == metadata


@pytest.mark.parametrize("size", [100, PART + 100], ids=["single-put", "multipart"])
def test_sse_kms_with_a_key(aws, bucket, client, size):
    key_arn = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    with S3Sink(
        f"s3://{bucket}/root",
        session=aws,
        part_size=PART,
        sse="aws:kms",
        kms_key_id=key_arn,
    ) as sink:
        write_in_chunks(sink, "k.bin", payload(size), size=size)
        assert sink.read_bytes("k.bin") == payload(size)
    head = client.head_object(Bucket=bucket, Key="root/k.bin")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn


def test_crc32_checksums(aws, bucket, client):
    data = payload(PART + 3)
    with S3Sink(
        f"s3://{bucket}", session=aws, part_size=PART, checksum_algorithm="crc32"
    ) as sink:
        calls = Recorder(sink.client, "PutObject", "UploadPart")
        sink.write_bytes("small", b"123456789")
        write_in_chunks(sink, "big", data)
        assert sink.sha256("small") == hashlib.sha256(b"123456789").hexdigest()
        assert sink.read_bytes("big") == data
    # The standard check value of CRC-32 for "123456789".
    assert calls.of("PutObject")[0]["ChecksumCRC32"] == b64(bytes.fromhex("cbf43926"))
    assert [p["ChecksumCRC32"] for p in calls.of("UploadPart")] == [
        b64(zlib.crc32(chunk).to_bytes(4, "big"))
        for chunk in (data[:PART], data[PART:])
    ]
    head = client.head_object(Bucket=bucket, Key="small", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == b64(bytes.fromhex("cbf43926"))


def _crc32c(data: Any, previous: int = 0) -> int:
    """Bitwise CRC-32C, standing in for awscrt's in the test."""
    crc = previous ^ 0xFFFFFFFF
    for byte in bytes(data):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def test_crc32c_uses_awscrt(aws, bucket, monkeypatch):
    fake = types.ModuleType("awscrt.checksums")
    fake.crc32c = _crc32c  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "awscrt.checksums", fake)
    with S3Sink(f"s3://{bucket}", session=aws, checksum_algorithm="CRC32C") as sink:
        calls = Recorder(sink.client, "PutObject")
        sink.write_bytes("c", b"123456789")
        assert sink.read_bytes("c") == b"123456789"
    # The standard check value of CRC-32C for "123456789".
    assert calls.of("PutObject")[0]["ChecksumCRC32C"] == b64(bytes.fromhex("e3069283"))


def test_crc32c_without_awscrt_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "awscrt.checksums", None)
    with pytest.raises(ConfigError, match="awscrt"):
        S3Sink("s3://bucket-name", checksum_algorithm="CRC32C")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checksum_algorithm": "MD5"}, "unsupported checksum_algorithm"),
        ({"part_size": PART - 1}, "part_size"),
        ({"part_size": 5 * GiB + 1}, "part_size"),
        ({"memory_budget": PART - 1}, "memory_budget"),
        ({"sse": "aws:fsx"}, "unsupported sse"),
        ({"kms_key_id": "alias/x"}, "kms_key_id needs sse='aws:kms'"),
        ({"sse": "AES256", "kms_key_id": "alias/x"}, "kms_key_id needs"),
        ({"storage_class": ""}, "storage_class"),
        ({"client": object(), "region_name": "eu-west-1"}, "either client"),
        ({"client": object(), "session": object()}, "either client"),
    ],
)
def test_invalid_options_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        S3Sink("s3://bucket-name", **kwargs)


def test_unknown_profile_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match="no-such-profile"):
        S3Sink("s3://bucket-name")


# -- clients, endpoints ---------------------------------------------------------------


def test_given_client_is_used_and_not_closed(aws, bucket):
    client = aws.client("s3")
    with S3Sink(f"s3://{bucket}/x", client=client) as sink:
        assert sink.client is client
        sink.write_bytes("k", b"v")
    # Still usable: the sink did not close a client it was lent.
    assert client.get_object(Bucket=bucket, Key="x/k")["Body"].read() == b"v"


def test_aws_endpoint_url_is_honoured(moto_over_http, moto_server):
    moto_over_http.client("s3").create_bucket(Bucket="endpoint-test")
    with S3Sink("s3://endpoint-test/p") as sink:
        assert sink.client.meta.endpoint_url == moto_server
        sink.write_bytes("k", b"over http")
        assert sink.read_bytes("k") == b"over http"


def test_aws_endpoint_url_s3_is_honoured(moto_over_http, moto_server, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    boto3.session.Session().client("s3").create_bucket(Bucket="endpoint-s3-test")
    with S3Sink("s3://endpoint-s3-test") as sink:
        assert sink.client.meta.endpoint_url == moto_server
        sink.write_bytes("k", b"v")
        assert list(sink.list_keys()) == ["k"]


def test_endpoint_url_argument(moto_over_http, moto_server, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with S3Sink("s3://endpoint-arg-test", endpoint_url=moto_server) as sink:
        assert sink.client.meta.endpoint_url == moto_server
        sink.client.create_bucket(Bucket="endpoint-arg-test")
        sink.write_bytes("k", b"v")
        assert size_of(sink, "k") == 1


def test_concurrent_writers_share_one_sink(sink):
    datas = {f"t{n}.bin": payload(PART + n, seed=n) for n in range(4)}
    errors: list[BaseException] = []

    def work(key: str) -> None:
        try:
            write_in_chunks(sink, key, datas[key], size=len(datas[key]))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(key,)) for key in datas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for key, data in datas.items():
        assert sink.read_bytes(key) == data


# -- listing and cleanup --------------------------------------------------------------


def test_list_keys_stays_inside_the_prefix(aws, bucket, client):
    for key in ("root/a", "root/b/c", "rootless/x", "other/y", "top"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    with S3Sink(f"s3://{bucket}/root", session=aws) as sink:
        assert list(sink.list_keys()) == ["a", "b/c"]
        assert list(sink.list_keys("b")) == ["b/c"]
    with S3Sink(f"s3://{bucket}", session=aws) as whole:
        assert list(whole.list_keys("root")) == ["root/a", "root/b/c", "rootless/x"]


def test_cleanup_incomplete_under_the_prefix(sink, client, bucket):
    for key in ("root/a/old.bin", "rootless/x.bin", "other/y.bin"):
        client.create_multipart_upload(Bucket=bucket, Key=key)
    assert sink.cleanup_incomplete(older_than=timedelta(0)) == 1
    assert sorted(uploads(client, bucket)) == ["other/y.bin", "rootless/x.bin"]
    assert sink.cleanup_incomplete(older_than=timedelta(0)) == 0


def test_cleanup_incomplete_spares_recent_ones(sink, client, bucket, monkeypatch):
    client.create_multipart_upload(Bucket=bucket, Key="root/recent.bin")
    (upload,) = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    started = upload["Initiated"]
    monkeypatch.setattr(s3, "_utcnow", lambda: started + timedelta(hours=1))
    assert sink.cleanup_incomplete(older_than=timedelta(hours=2)) == 0
    assert sink.cleanup_incomplete() == 0  # default: a day
    assert uploads(client, bucket) == ["root/recent.bin"]
    assert sink.cleanup_incomplete(older_than=timedelta(minutes=30)) == 1
    assert uploads(client, bucket) == []


def test_cleanup_incomplete_refuses_a_negative_age(sink):
    with pytest.raises(ConfigError, match="negative"):
        sink.cleanup_incomplete(older_than=timedelta(seconds=-1))


# -- part sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "budget", "expected"),
    [
        (0, 64 * MiB, 8 * MiB),
        (MiB, 64 * MiB, 8 * MiB),
        (100 * GiB, 64 * MiB, 11 * MiB),
        (TiB, 128 * MiB, 105 * MiB),
        (5 * TiB, 5 * GiB, 525 * MiB),
        (3 * MiB, 5 * MiB, 5 * MiB),  # a budget under 8 MiB caps the default
        (None, 64 * MiB, 64 * MiB),  # unknown size: the largest allowed part
        (None, 8 * GiB, 5 * GiB),
    ],
)
def test_choose_part_size(size, budget, expected):
    chosen = choose_part_size(size, memory_budget=budget)
    assert chosen == expected
    assert chosen % MiB == 0
    if size is not None:
        assert -(-size // chosen) <= 10_000


def test_choose_part_size_refuses_what_the_budget_cannot_hold():
    with pytest.raises(SinkError, match=r"at least 105 MiB.*raise memory_budget"):
        choose_part_size(TiB)
    with pytest.raises(SinkError, match="S3's part size limit"):
        choose_part_size(60 * TiB, memory_budget=8 * GiB)
    with pytest.raises(SinkError, match=">= 0"):
        choose_part_size(-1)


def test_explicit_part_size_wins_within_the_part_limit():
    assert choose_part_size(TiB, part_size=200 * MiB) == 200 * MiB
    assert choose_part_size(None, part_size=PART) == PART
    assert choose_part_size(10_000 * PART, part_size=PART) == PART
    with pytest.raises(SinkError, match="more than 10000 parts"):
        choose_part_size(10_000 * PART + 1, part_size=PART)


# -- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "shown"),
    [
        (
            "s3://my-bucket/some/prefix",
            "my-bucket",
            "some/prefix",
            "s3://my-bucket/some/prefix",
        ),
        (
            "s3://my-bucket/some/prefix/",
            "my-bucket",
            "some/prefix",
            "s3://my-bucket/some/prefix",
        ),
        ("S3://my.bucket.01", "my.bucket.01", "", "s3://my.bucket.01"),
        ("s3://my-bucket/", "my-bucket", "", "s3://my-bucket"),
        ("s3://abc/a?b#c%20", "abc", "a?b#c%20", "s3://abc/a?b#c%20"),
    ],
)
def test_open_sink_parses_s3_urls(url, bucket, prefix, shown):
    sink = open_sink(url, part_size=PART)
    assert isinstance(sink, S3Sink)
    assert (sink.bucket, sink.prefix, sink.url) == (bucket, prefix, shown)
    assert repr(sink) == f"S3Sink({shown!r})"


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://ab",
        "s3://Bad_Bucket",
        "s3://UPPER",
        "s3://-bucket",
        "s3://bucket-",
        "s3://a..b",
        "s3://a.-b",
        "s3://192.168.1.1",
        f"s3://{'b' * 64}",
        "s3://bucket/a//b",
        "s3://bucket/../x",
        "s3://bucket/a/./b",
        "s3://bucket/a\nb",
        "http://bucket/x",
    ],
)
def test_invalid_s3_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        S3Sink(url)


def test_open_sink_passes_options(aws, bucket):
    sink = open_sink(f"s3://{bucket}/p", session=aws, sse="AES256")
    assert isinstance(sink, S3Sink)
    sink.write_bytes("k", b"v")
    assert sink.read_bytes("k") == b"v"
    with pytest.raises(ConfigError, match="unsupported sse"):
        open_sink(f"s3://{bucket}/p", session=aws, sse="nope")


def test_unsafe_keys_never_reach_s3(sink):
    calls = Recorder(sink.client, "PutObject", "HeadObject", "GetObject")
    for key in ("../escape", "a//b", "/abs"):
        with pytest.raises(UnsafeKeyError):
            sink.write_bytes(key, b"x")
        with pytest.raises(UnsafeKeyError):
            sink.stat(key)
    assert calls.calls == []


def test_object_keys_are_prefixed(sink, client, bucket):
    sink.write_bytes("ds/date=2024-01-02/batch=b1/f1/part-0.parquet", b"x")
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [
        "root/ds/date=2024-01-02/batch=b1/f1/part-0.parquet"
    ]


# -- with the engine ------------------------------------------------------------------


def test_extractor_copies_a_dataset_into_s3_once(aws, bucket, fake_aep, tmp_path):
    from aep_extract import (
        Extractor,
        HttpAepSource,
        SQLiteCheckpointStore,
        ThreadPoolScheduler,
    )
    from tests.e2e.helpers import DATASET, END, START, expected_tree, manifests

    def extract(sink: S3Sink) -> Any:
        with Extractor(
            HttpAepSource.from_env(fake_aep.env()),
            store=SQLiteCheckpointStore(tmp_path / "state.db"),
            sink=sink,
            scheduler=ThreadPoolScheduler(4),
        ) as extractor:
            return extractor.run(DATASET, START, END)

    sink = S3Sink(f"s3://{bucket}/aep", session=aws)
    report = extract(sink)
    assert report.ok, str(report)
    expected = expected_tree(fake_aep)
    stored = {
        key: sink.read_bytes(key)
        for key in sink.list_keys()
        if "/_manifest." not in key
    }
    assert stored == expected
    assert manifests(sink)
    some_key = next(iter(expected))
    head = aws.client("s3").head_object(Bucket=bucket, Key=f"aep/{some_key}")
    assert set(head["Metadata"]) == {
        "aep-dataset-id",
        "aep-batch-id",
        "aep-dataset-file-id",
        "aep-file-name",
    }

    calls = Recorder(sink.client, "PutObject", "CreateMultipartUpload")
    assert extract(sink).ok
    assert calls.calls == []  # a rerun writes nothing again


# -- retries --------------------------------------------------------------------------


@pytest.fixture
def server_bucket(moto_over_http: boto3.Session) -> str:
    name = f"aep-test-{uuid.uuid4().hex[:12]}"
    moto_over_http.client("s3").create_bucket(Bucket=name)
    return name


def test_slow_down_is_retried_per_the_retry_config_for_parts_and_puts(
    moto_over_http, server_bucket
):
    sleeps: list[float] = []
    big, small = payload(2 * PART + 1), b"small object"
    with S3Sink(
        f"s3://{server_bucket}/root",
        session=moto_over_http,
        part_size=PART,
        retry=FAST_RETRY,
        sleep=sleeps.append,
    ) as sink:
        slow_down = s3_error("SlowDown")
        parts = fail_sends(sink.client, "s3.UploadPart", 2, 503, slow_down)
        puts = fail_sends(sink.client, "s3.PutObject", 2, 503, slow_down)
        scope = RunScope()
        with within(scope):
            write_in_chunks(sink, "big.bin", big)
            sink.write_bytes("small.txt", small)
        assert len(parts) == 3 + 2, "3 parts, the first sent 3 times"
        assert len(puts) == 1 + 2
        assert len(sleeps) == 4
        assert all(0 <= wait <= FAST_RETRY.max_wait for wait in sleeps)
        assert sink.read_bytes("big.bin") == big
        assert sink.read_bytes("small.txt") == small
        counters = scope.counters()
        assert (counters["retries"], counters["throttled"]) == (4, 4)

        puts = fail_sends(sink.client, "s3.PutObject", 99, 500, s3_error("Internal"))
        with pytest.raises(SinkError, match=r"cannot write 'lost\.txt'"):
            sink.write_bytes("lost.txt", b"x")
        assert len(puts) == FAST_RETRY.attempts, "botocore retries nothing itself"


def test_a_given_client_keeps_its_own_settings(aws, bucket):
    client = cast("Any", aws.client("s3"))
    own_retries = client.meta.config.retries
    with S3Sink(f"s3://{bucket}", client=client) as sink:
        assert sink.client is client
        assert sink.client.meta.config.retries == own_retries
    assert "total_max_attempts" not in own_retries


def test_a_built_client_pools_a_connection_per_worker_and_does_not_retry(aws, bucket):
    concurrency = ConcurrencyConfig(workers=32)
    with S3Sink(f"s3://{bucket}", session=aws, concurrency=concurrency) as sink:
        client: Any = sink.client
        config = client.meta.config
        manager = client._endpoint.http_session._manager  # urllib3's PoolManager
        assert config.max_pool_connections == 36
        assert manager.connection_pool_kw["maxsize"] == 36
        assert config.retries["total_max_attempts"] == 1


def test_the_cli_sizes_the_s3_pool_from_workers(aws, bucket, fake_aep, tmp_path):
    from aep_extract import cli

    args = cli.build_parser().parse_args(
        [
            "run",
            "--dataset",
            fake_aep.DEMO_DATASET_ID,
            "--start",
            "2024-01-01T00:00:00Z",
            "--end",
            "2024-01-02T00:00:00Z",
            "--sink",
            f"s3://{bucket}/p",
            "--store",
            f"sqlite:///{tmp_path}/state.db",
            "--workers",
            "24",
        ]
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in fake_aep.env().items():
            patch.setenv(name, value)
        extractor = cli._extractor(args, args.sink)
    with extractor:
        client: Any = cast("S3Sink", extractor.sink).client
        assert extractor.scheduler.max_workers == 24
        assert client.meta.config.max_pool_connections == 28
        assert extractor.source._client.limiter.max_in_flight == 48  # type: ignore[attr-defined]
