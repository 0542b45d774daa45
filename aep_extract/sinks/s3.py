"""The S3 sink: one object per key under ``s3://bucket/prefix``, visible when whole.

Written on boto3's own calls rather than smart_open's S3 writer: the sink needs a
single checksummed ``PutObject`` for small objects, a checksum on every part *and* in
the ``CompleteMultipartUpload`` part list, and the same SSE/ACL/storage-class arguments
on both paths. smart_open always starts a multipart upload and does not carry part
checksums into the completion, so the few calls are clearer written out here
(:mod:`._multipart`).

Every request runs under the library's one retry policy (:mod:`aep_extract._retry`,
set by the sink's :class:`~aep_extract.RetryConfig`): throttling (``SlowDown``), 5xx
answers and connection failures are retried, single PUTs and each part on its own.
A client the sink builds does not retry by itself.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Optional, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .._aws_errors import aws_config_errors, one_attempt_config
from .._retry import build_retrying
from ..config import ConcurrencyConfig, RetryConfig
from ..errors import ConfigError, MissingResourceError, SinkError
from ..layout import check_key
from ..models import ObjectInfo
from ._multipart import (
    DEFAULT_MEMORY_BUDGET,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    S3ObjectWriter,
    S3PartWriter,
    checksum_function,
    choose_part_size,
)
from ._parts import part_count
from ._s3_support import (
    SSE_ALGORITHMS,
    BodyReader,
    checked_metadata,
    full_object_sha256,
    object_args,
    parse_s3_url,
)
from .base import PartWriter, Sink

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef, MultipartUploadTypeDef

__all__ = ["SSE_ALGORITHMS", "S3Sink", "choose_part_size", "parse_s3_url"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DAY = timedelta(days=1)

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED = frozenset({"403", "AccessDenied", "Forbidden"})
_GENERIC_DENIALS = frozenset({"Access Denied", "Forbidden"})


class _NoSuchBucket(SinkError):
    """The bucket does not exist."""


class _NoSuchObject(SinkError):
    """The key does not exist (or a bare 404 from HEAD); callers may turn it to None."""


class _NoSuchUpload(SinkError):
    """The multipart upload was completed or aborted by someone else."""


class _AccessDenied(SinkError):
    """403; for a missing key when the caller may not list it (see ``_head``)."""


class S3Sink(Sink):
    """Stores each key as the S3 object ``prefix/key`` in ``bucket``.

    An object of at most one part goes up in a single ``PutObject``; a larger one as
    a multipart upload completed on a clean exit from :meth:`open_write` and aborted
    on any error, so a key never shows a partial or empty object. Every request
    carries a checksum of its bytes that S3 verifies. Memory: each open writer
    buffers one part, so a sink used by N workers holds at most N parts.

    Thread-safe: the boto3 client is shared; each writer belongs to one thread.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        client: a boto3 S3 client to use as is (not closed by :meth:`close`). Its
            own settings stay: its retries apply within each of the sink's
            attempts (pass ``Config(retries={"total_max_attempts": 1})`` to leave
            retrying to ``retry`` alone), its connection pool is its own.
        session: a boto3 session to build the client from; default a new session on
            boto3's credential chain. The client honours ``AWS_ENDPOINT_URL`` and
            ``AWS_ENDPOINT_URL_S3`` unless ``endpoint_url`` is given.
        region_name: region of the built client.
        endpoint_url: endpoint of the built client (MinIO, moto, a VPC endpoint).
        part_size: bytes per part, 5 MiB to 5 GiB; default chosen per object from
            its size: at least 8 MiB, at most ``memory_budget``, never more than
            10,000 parts.
        memory_budget: the largest part the sink chooses by itself (bytes, >= 5 MiB).
        checksum_algorithm: ``"SHA256"`` (default), ``"CRC32"`` or ``"CRC32C"``
            (needs ``awscrt``).
        sse: server-side encryption: ``"AES256"`` or ``"aws:kms"``; default the
            bucket's default encryption.
        kms_key_id: the KMS key (id, ARN or alias) for ``sse="aws:kms"``; default the
            AWS-managed ``aws/s3`` key.
        bucket_owner_full_control: send the ``bucket-owner-full-control`` ACL, for a
            bucket owned by another account that still uses ACLs.
        storage_class: e.g. ``"STANDARD_IA"``; default the bucket's (``STANDARD``).
        retry: attempts and backoff of throttled and failed requests: the library's
            one retry policy, the only retries of a client the sink builds (its
            botocore retries are off, ``total_max_attempts=1``).
        concurrency: sizes the connection pool of a client the sink builds
            (:attr:`ConcurrencyConfig.sink_connections
            <aep_extract.ConcurrencyConfig.sink_connections>`: one connection per
            worker writing at once, with room).
        sleep: how to wait between attempts (inject a recorder in tests).

    Raises:
        ConfigError: an invalid URL, option or combination of options.
    """

    uses_concurrency = True
    min_part_size = MIN_PART_SIZE

    @classmethod
    def check_url(cls, url: str) -> None:
        """``s3://BUCKET/PREFIX``: a valid bucket name and a safe prefix."""
        parse_s3_url(url)

    def __init__(
        self,
        url: str,
        *,
        client: Optional[S3Client] = None,
        session: Optional[boto3.Session] = None,
        region_name: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        part_size: Optional[int] = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        checksum_algorithm: str = "SHA256",
        sse: Optional[str] = None,
        kms_key_id: Optional[str] = None,
        bucket_owner_full_control: bool = False,
        storage_class: Optional[str] = None,
        retry: Optional[RetryConfig] = None,
        concurrency: Optional[ConcurrencyConfig] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._bucket, self._prefix = parse_s3_url(url)
        self._retrying = build_retrying(retry or RetryConfig(), sleep=sleep)
        self._root = f"{self._prefix}/" if self._prefix else ""
        if part_size is not None and not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} "
                f"bytes (5 MiB to 5 GiB), got {part_size}"
            )
        if memory_budget < MIN_PART_SIZE:
            raise ConfigError(
                f"memory_budget must be at least {MIN_PART_SIZE} bytes (5 MiB), "
                f"got {memory_budget}"
            )
        self._part_size = part_size
        self._memory_budget = memory_budget
        self._checksum_algorithm = checksum_algorithm.upper()
        checksum_function(self._checksum_algorithm)  # ConfigError if unusable
        self._object_args = object_args(
            sse, kms_key_id, bucket_owner_full_control, storage_class
        )
        self._bucket_seen = False
        self._owns_client = client is None
        if client is not None:
            if session is not None or region_name or endpoint_url:
                raise ConfigError(
                    "pass either client, or session/region_name/endpoint_url to "
                    "build one, not both"
                )
            self._client = client
        else:
            pool = (concurrency or ConcurrencyConfig()).sink_connections
            self._client = _build_client(session, region_name, endpoint_url, pool)

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix without slashes at either end; empty for the bucket root."""
        return self._prefix

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``, normalized."""
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client the sink calls."""
        return self._client

    def part_size_for(self, size: Optional[int]) -> int:
        """The part size a write of ``size`` bytes (None: unknown) would use.

        Raises:
            SinkError: the object cannot fit in 10,000 parts of an allowed size.
        """
        return choose_part_size(
            size, part_size=self._part_size, memory_budget=self._memory_budget
        )

    def open_write(
        self,
        key: str,
        *,
        size: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open ``key`` for writing; the object appears only when the block succeeds.

        ``metadata`` becomes the object's user metadata (``x-amz-meta-*``).

        Raises:
            UnsafeKeyError: the key would escape the prefix.
            SinkError: S3 refused, the object cannot fit in 10,000 parts, metadata is
                not ASCII, or ``size`` was given and a different number of bytes was
                written. Any multipart upload is aborted first.
        """
        s3_key = self._s3_key(key)
        args = dict(self._object_args)
        if metadata:
            args["Metadata"] = checked_metadata(metadata)
        writer = S3ObjectWriter(
            self._client,
            bucket=self._bucket,
            key=s3_key,
            part_size=self.part_size_for(size),
            checksum_algorithm=self._checksum_algorithm,
            object_args=args,
            send=self._send,
            label=key,
        )
        return self._write(writer, size)

    def open_parts(
        self,
        key: str,
        *,
        size: int,
        part_size: int,
        metadata: Optional[Mapping[str, str]] = None,
        resume: Optional[str] = None,
    ) -> PartWriter:
        """A multipart upload of ``key`` whose parts may be sent from many threads
        at once (``UploadPart`` with the sink's checksum algorithm), completed with
        every part's checksum. ``resume`` is an upload id: the upload is reopened
        if S3 still has it (one ``ListParts``), else a new one begins.

        Raises:
            UnsafeKeyError: the key would escape the prefix.
            SinkError: the parts are smaller than 5 MiB (but for a lone part),
                larger than 5 GiB or more than 10,000; metadata is not ASCII; or
                S3 refused.
        """
        s3_key = self._s3_key(key)
        count = part_count(size, part_size)
        if (
            count > MAX_PARTS
            or part_size > MAX_PART_SIZE
            or (count > 1 and part_size < self.min_part_size)
        ):
            raise SinkError(
                f"{self!r}: {key!r}: {count} parts of {part_size} bytes; S3 takes "
                f"at most {MAX_PARTS} parts of {self.min_part_size} bytes to 5 GiB"
            )
        writer = functools.partial(
            S3PartWriter,
            self._client,
            bucket=self._bucket,
            key=s3_key,
            size=size,
            part_size=part_size,
            checksum_algorithm=self._checksum_algorithm,
            send=self._send,
            label=key,
        )
        if resume is not None:
            try:
                self._send(
                    "list the parts of",
                    key,
                    lambda: self._client.list_parts(
                        Bucket=self._bucket, Key=s3_key, UploadId=resume, MaxParts=1
                    ),
                )
            except _NoSuchUpload:
                logger.info("%r: upload of %s is gone; starting anew", self, key)
            else:
                return writer(upload_id=resume)
        args = dict(self._object_args)
        if metadata:
            args["Metadata"] = checked_metadata(metadata)
        created = self._send(
            "start an upload of",
            key,
            lambda: self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=s3_key,
                ChecksumAlgorithm=cast("Any", self._checksum_algorithm),
                **args,
            ),
        )
        return writer(upload_id=created["UploadId"])

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Stream a stored object.

        Raises:
            UnsafeKeyError: the key would escape the prefix.
            SinkError: no such object, or S3 refused (also while streaming).
        """
        s3_key = self._s3_key(key)
        answer = self._send(
            "read",
            key,
            lambda: self._client.get_object(Bucket=self._bucket, Key=s3_key),
        )
        # Errors while streaming are mapped, not retried: the bytes read so far
        # are the caller's.
        reader = BodyReader(
            answer["Body"], lambda: self._map_botocore_errors("read", key)
        )
        return cast("BinaryIO", reader)

    def check(self) -> None:
        """Fail early when the bucket does not exist or cannot be reached.

        Lists at most one key under the sink's prefix (``ListObjectsV2``): unlike
        ``HeadBucket``, which carries no prefix, this is allowed by a
        ``s3:ListBucket`` grant limited to the prefix.

        Raises:
            ConfigError: no AWS credentials (or another AWS configuration error).
            MissingResourceError: no such bucket.
            SinkError: S3 refused (e.g. access denied) or cannot be reached.
        """
        try:
            self._listed(self._root)
        except _NoSuchBucket as exc:
            raise MissingResourceError(
                f"S3 bucket {self._bucket!r} does not exist"
            ) from exc.__cause__
        except _AccessDenied as exc:
            scope = f"s3:prefix {self._root!r}" if self._root else "the whole bucket"
            raise SinkError(
                f"{self!r}: access denied listing {self.url}/: the role needs "
                f"s3:ListBucket on arn:aws:s3:::{self._bucket} for {scope} (see "
                "the least-privilege policy in the S3 sink docs)"
            ) from exc.__cause__

    def stat(self, key: str) -> Optional[ObjectInfo]:
        """Size and user metadata of a stored object (``HeadObject``), or None when
        there is none.

        Raises:
            UnsafeKeyError: the key would escape the prefix.
            SinkError: the bucket does not exist, or S3 refused.
        """
        head = self._head(key, checksums=False)
        if head is None:
            return None
        return ObjectInfo(
            key=key, size=head["ContentLength"], metadata=dict(head.get("Metadata", {}))
        )

    def sha256(self, key: str) -> str:
        """Hex SHA-256 of a stored object.

        An object stored in one ``PutObject`` with SHA-256 carries a full-object
        checksum that S3 verified on arrival: it is returned without reading the
        body. Other objects (multipart, other algorithms) are read back.

        Raises:
            SinkError: no such object, or S3 refused.
        """
        head = self._head(key, checksums=True)
        if head is None:
            raise SinkError(f"{self!r}: no object {key!r}")
        stored = full_object_sha256(head)
        return stored if stored is not None else super().sha256(key)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored key starting with ``prefix``, in S3's (lexicographic) order.

        Lazy: pages are fetched as the iterator advances.

        Raises:
            SinkError: the bucket does not exist, or S3 refused (while iterating).
        """
        return self._list_keys(prefix)

    def cleanup_incomplete(self, prefix: str = "", older_than: timedelta = DAY) -> int:
        """Abort multipart uploads under the sink's prefix (and ``prefix`` below it)
        begun more than ``older_than`` ago.

        Uploads a crashed process left behind are invisible but billed. A writer
        aborts its own upload on any error it sees, so these come only from killed
        processes. Do not pass a short ``older_than`` while a run may be writing:
        its uploads in progress would be aborted and their files fail.

        Returns:
            The number of uploads aborted.

        Raises:
            ConfigError: ``older_than`` is negative.
            SinkError: the bucket does not exist, or S3 refused.
        """
        if older_than < timedelta(0):
            raise ConfigError(f"older_than must not be negative, got {older_than}")
        cutoff = _utcnow() - older_than
        root = self._root + prefix
        aborted = 0
        for upload in self._incomplete_uploads(root):
            if upload["Initiated"] > cutoff:
                continue
            try:
                self._send(
                    "abort the upload of",
                    upload["Key"],
                    functools.partial(
                        self._client.abort_multipart_upload,
                        Bucket=self._bucket,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    ),
                )
            except _NoSuchUpload:
                continue  # completed or aborted meanwhile
            aborted += 1
            logger.debug(
                "aborted upload %s of s3://%s/%s started %s",
                upload["UploadId"],
                self._bucket,
                upload["Key"],
                upload["Initiated"],
            )
        logger.info("%r: aborted %d incomplete upload(s)", self, aborted)
        return aborted

    def close(self) -> None:
        """Close the client if the sink built it."""
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- helpers ------------------------------------------------------------------

    def _s3_key(self, key: str) -> str:
        return self._root + check_key(key)

    def _send(self, action: str, key: Optional[str], request: Callable[[], _T]) -> _T:
        """One S3 request under the retry policy, botocore's errors mapped."""

        def attempt() -> _T:
            with self._map_botocore_errors(action, key):
                return request()

        # copy(): a Retrying keeps per-call state, and threads share the sink.
        return self._retrying.copy()(attempt)

    @contextlib.contextmanager
    def _map_botocore_errors(
        self, action: str, key: Optional[str] = None
    ) -> Iterator[None]:
        """The one place where botocore's errors become SinkError (AWS
        configuration errors become ConfigError, see :mod:`.._aws_errors`)."""
        what = action if key is None else f"{action} {key!r}"
        try:
            with aws_config_errors():
                yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchBucket":
                raise _NoSuchBucket(
                    f"{self!r}: bucket {self._bucket!r} does not exist"
                ) from exc
            if code == "NoSuchUpload":
                raise _NoSuchUpload(
                    f"{self!r}: cannot {what}: the upload no longer exists "
                    "(aborted by another process?)"
                ) from exc
            if code in _MISSING:
                raise _NoSuchObject(f"{self!r}: no object {key!r}") from exc
            message = str(error.get("Message", ""))
            if code in _DENIED:
                # S3's text is a bare "Access Denied", except when it names what
                # is missing (a KMS permission, say): then it is worth showing.
                generic = not message or message in _GENERIC_DENIALS
                said = "" if generic else f" ({message})"
                raise _AccessDenied(
                    f"{self!r}: access denied: cannot {what}{said}; check the IAM "
                    "and bucket policies (the S3 sink docs list what each call needs)"
                ) from exc
            detail = message or str(exc)
            raise SinkError(f"{self!r}: cannot {what}: {code}: {detail}") from exc
        except BotoCoreError as exc:
            raise SinkError(f"{self!r}: cannot {what}: {exc}") from exc

    @contextlib.contextmanager
    def _write(self, writer: S3ObjectWriter, size: Optional[int]) -> Iterator[BinaryIO]:
        try:
            yield cast("BinaryIO", writer)
            writer.finish(size)
        except BaseException:
            # Also on KeyboardInterrupt: an abandoned upload is billed until aborted.
            writer.abort()
            raise

    def _head(self, key: str, *, checksums: bool) -> Optional[HeadObjectOutputTypeDef]:
        s3_key = self._s3_key(key)
        extra: dict[str, Any] = {"ChecksumMode": "ENABLED"} if checksums else {}
        try:
            return self._send(
                "stat",
                key,
                lambda: self._client.head_object(
                    Bucket=self._bucket, Key=s3_key, **extra
                ),
            )
        except _NoSuchObject:
            # A HEAD answer has no body: a missing bucket is a bare 404 as well.
            self._require_bucket()
            return None
        except _AccessDenied:
            # S3 answers 403, not 404, for a missing key when the caller may not
            # list it, which a prefix-conditioned s3:ListBucket grant can cause.
            if self._listed(s3_key):
                raise
            return None

    def _listed(self, s3_key: str) -> bool:
        page = self._send(
            "list",
            s3_key,
            lambda: self._client.list_objects_v2(
                Bucket=self._bucket, Prefix=s3_key, MaxKeys=1
            ),
        )
        self._bucket_seen = True
        # A key sorts before every longer key it prefixes: if it exists it is first.
        contents = page.get("Contents", [])
        return bool(contents) and contents[0]["Key"] == s3_key

    def _require_bucket(self) -> None:
        if not self._bucket_seen:
            self._listed(self._root)

    def _list_keys(self, prefix: str) -> Iterator[str]:
        # Pages by hand, not with a paginator: a paginator that raised is over, so
        # a retried page must be a request of its own.
        request: dict[str, Any] = {
            "Bucket": self._bucket,
            "Prefix": self._root + prefix,
        }
        while True:
            page = self._send(
                "list keys under",
                prefix,
                lambda: self._client.list_objects_v2(**request),
            )
            for item in page.get("Contents", []):
                yield item["Key"][len(self._root) :]
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    def _incomplete_uploads(self, root: str) -> Iterator[MultipartUploadTypeDef]:
        request: dict[str, Any] = {"Bucket": self._bucket, "Prefix": root}
        while True:
            page = self._send(
                "list incomplete uploads under",
                root,
                lambda: self._client.list_multipart_uploads(**request),
            )
            yield from page.get("Uploads", [])
            if not page.get("IsTruncated"):
                return
            request["KeyMarker"] = page["NextKeyMarker"]
            request["UploadIdMarker"] = page["NextUploadIdMarker"]


def _build_client(
    session: Optional[boto3.Session],
    region_name: Optional[str],
    endpoint_url: Optional[str],
    max_pool_connections: int,
) -> S3Client:
    # Client creation only reads configuration; a bad profile or region is the
    # caller's configuration, hence ConfigError rather than SinkError.
    try:
        with aws_config_errors():
            chosen = session if session is not None else boto3.session.Session()
            return chosen.client(
                "s3",
                region_name=region_name,
                endpoint_url=endpoint_url,
                config=_client_config(max_pool_connections),
            )
    except BotoCoreError as exc:
        raise ConfigError(f"cannot create an S3 client: {exc}") from exc


def _client_config(max_pool_connections: int) -> Config:
    config = one_attempt_config(
        max_pool_connections=max_pool_connections, user_agent_extra="aep-extract"
    )
    # Reads are not checksum-validated by botocore (its default since 1.36): a
    # multipart object's checksum is a checksum of part checksums, which cannot be
    # checked on read, and some S3-compatible stores (moto before 5.2 among them)
    # send it without its "-N" marker, so botocore would reject intact objects.
    # S3 verified every byte on upload, and TLS protects the read.
    try:
        return config.merge(Config(response_checksum_validation="when_required"))
    except TypeError:  # pragma: no cover - botocore < 1.36 never validates unasked
        return config


def _utcnow() -> datetime:
    """The current time; a function so tests can move it."""
    return datetime.now(timezone.utc)
