"""One S3 object written through a bounded buffer: a single PUT or a multipart upload.

Kept apart from :mod:`aep_extract.sinks.s3` so the part sizing and the upload state
machine can be read (and tested) on their own. botocore errors are not handled here:
every request goes through the ``send`` function the sink passes in, which runs it
under the retry policy and turns botocore's errors into
:class:`~aep_extract.errors.SinkError`. A part or a single PUT that is retried sends
its buffer again from the start.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import logging
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar, cast

from ..errors import ConfigError, SinkError
from ._chunked import ChunkedWriter
from ._parts import Part, check_complete, check_part, part_range
from .base import PartWriter

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer  # exists only for type checkers
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import ChecksumAlgorithmType
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB

MIN_PART_SIZE = 5 * MiB
"""S3's smallest part (every part but the last)."""

MAX_PART_SIZE = 5 * GiB
"""S3's largest part."""

MAX_PARTS = 10_000
"""S3's largest part number."""

DEFAULT_PART_SIZE = 8 * MiB
"""Smallest part size the sink chooses by itself (the AWS CLI's default)."""

DEFAULT_MEMORY_BUDGET = 64 * MiB
"""Default ceiling of one writer's buffer, hence of the parts the sink chooses."""

CHECKSUM_ALGORITHMS = ("SHA256", "CRC32", "CRC32C")
"""Checksum algorithms the sink computes locally and S3 verifies."""

_T = TypeVar("_T")


class Sender(Protocol):
    """``send(action, key, request)``: runs ``request`` (one S3 call) under the retry
    policy, botocore's errors turned into SinkError naming ``action`` and ``key``."""

    def __call__(self, action: str, key: str, request: Callable[[], _T]) -> _T: ...


def choose_part_size(
    size: Optional[int],
    *,
    part_size: Optional[int] = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> int:
    """The part size for an object of ``size`` bytes (None: unknown).

    An explicit ``part_size`` wins. Otherwise the smallest whole number of MiB that
    fits the object in 10,000 parts (S3's limit), at least 8 MiB and at most
    ``memory_budget``. An unknown size gets the whole budget, the choice
    that allows the largest object; the buffer still grows only as bytes arrive.

    Raises:
        SinkError: ``size`` is negative, or the object needs more than 10,000
            parts of the allowed size.
    """
    if size is not None and size < 0:
        raise SinkError(f"object size must be >= 0, got {size}")
    if part_size is not None:
        if size is not None and _ceil_div(size, part_size) > MAX_PARTS:
            raise SinkError(
                f"an object of {size} bytes needs more than {MAX_PARTS} parts of "
                f"{part_size} bytes; raise part_size"
            )
        return part_size
    ceiling = min(memory_budget, MAX_PART_SIZE)
    if size is None:
        return ceiling
    needed = _ceil_div(_ceil_div(size, MAX_PARTS), MiB) * MiB
    if needed > ceiling:
        limit = "memory_budget" if ceiling == memory_budget else "S3's part size limit"
        raise SinkError(
            f"an object of {size} bytes needs parts of at least {needed // MiB} MiB "
            f"to fit in {MAX_PARTS} parts, above {limit} ({ceiling // MiB} MiB)"
            + ("; raise memory_budget" if limit == "memory_budget" else "")
        )
    return min(max(DEFAULT_PART_SIZE, needed), ceiling)


def _ceil_div(numerator: int, denominator: int) -> int:
    # Integer arithmetic: a float quotient loses exactness for sizes near 2**53.
    return -(-numerator // denominator)


def checksum_function(algorithm: str) -> Callable[[ReadableBuffer], str]:
    """The function giving the base64 checksum S3 expects for ``algorithm``.

    Raises:
        ConfigError: an unsupported algorithm, or CRC32C without ``awscrt``.
    """
    if algorithm == "SHA256":
        return lambda data: _b64(hashlib.sha256(data).digest())
    if algorithm == "CRC32":
        return lambda data: _b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "CRC32C":
        # No stdlib CRC32C; awscrt is what botocore itself uses for it.
        try:
            crt = importlib.import_module("awscrt.checksums")
        except ImportError as exc:
            raise ConfigError(
                "checksum_algorithm='CRC32C' needs the awscrt package "
                "(pip install 'botocore[crt]'); or use 'SHA256' or 'CRC32'"
            ) from exc
        crc32c = crt.crc32c
        return lambda data: _b64(int(crc32c(data)).to_bytes(4, "big"))
    raise ConfigError(
        f"unsupported checksum_algorithm {algorithm!r}; "
        f"expected one of {', '.join(CHECKSUM_ALGORITHMS)}"
    )


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class S3ObjectWriter(ChunkedWriter):
    """Writes one object, holding at most one part in memory.

    Bytes collect in a buffer of ``part_size``. When the whole object fits in it,
    :meth:`finish` stores it with one ``PutObject``. When more arrives, the full
    buffer becomes part 1 of a multipart upload (created then, so an object that
    fails early leaves no upload behind), and so on; :meth:`finish` sends the last
    part and completes the upload, which makes the object visible atomically.
    Every request carries the checksum of its bytes, computed here, so S3 rejects
    bytes damaged on the way. :meth:`abort` drops the upload after a failure.

    Not thread-safe: one writer belongs to one ``with`` block.
    """

    def __init__(
        self,
        client: S3Client,
        *,
        bucket: str,
        key: str,
        part_size: int,
        checksum_algorithm: str,
        object_args: Mapping[str, Any],
        send: Sender,
        label: str,
    ) -> None:
        super().__init__(part_size, label)
        self._client = client
        self._bucket = bucket
        self._key = key
        self._checksum = checksum_function(checksum_algorithm)
        self._algorithm = cast("ChecksumAlgorithmType", checksum_algorithm)
        self._checksum_param = f"Checksum{checksum_algorithm}"
        self._object_args = dict(object_args)
        self._send = send
        self._upload_id: Optional[str] = None
        self._parts: list[dict[str, Any]] = []

    def finish(self, expected_size: Optional[int]) -> None:
        """Store the object: one PUT, or the last part and CompleteMultipartUpload.

        Raises:
            SinkError: the byte count differs from ``expected_size``, or S3 refused.
        """
        self._check_size(expected_size)
        if self._upload_id is None:
            self._put()
        else:
            if self._buffer.tell():
                self._send_chunk()
            parts = cast("list[CompletedPartTypeDef]", self._parts)
            upload_id = self._upload_id
            self._send(
                "complete the upload of",
                self._label,
                lambda: self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
            self._upload_id = None
            logger.debug("completed s3://%s/%s", self._bucket, self._key)
        self.close()

    def abort(self) -> None:
        """Drop the multipart upload, if one was started; never raises SinkError.

        Called while another error propagates, so a failed abort is logged, not
        raised: the original error matters more, and the leftover upload is found by
        ``S3Sink.cleanup_incomplete`` or a bucket lifecycle rule.
        """
        upload_id, self._upload_id = self._upload_id, None
        self.close()
        if upload_id is None:
            return
        try:
            self._send(
                "abort the upload of",
                self._label,
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload_id
                ),
            )
        except SinkError as exc:
            logger.warning(
                "could not abort upload %s of s3://%s/%s: %s",
                upload_id,
                self._bucket,
                self._key,
                exc,
            )
        else:
            logger.debug(
                "aborted upload %s of s3://%s/%s", upload_id, self._bucket, self._key
            )

    # -- requests -----------------------------------------------------------------

    def _checksum_args(self) -> dict[str, Any]:
        with self._buffer.getbuffer() as view:
            value = self._checksum(view)
        return {"ChecksumAlgorithm": self._algorithm, self._checksum_param: value}

    def _body(self) -> io.BytesIO:
        """The buffer from its start: each try of a request sends all of it."""
        self._buffer.seek(0)
        return self._buffer

    def _put(self) -> None:
        args = self._checksum_args()
        self._send(
            "write",
            self._label,
            lambda: self._client.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=self._body(),
                **args,
                **self._object_args,
            ),
        )
        logger.debug("put s3://%s/%s (%d bytes)", self._bucket, self._key, self.written)

    def _send_chunk(self) -> None:
        """Upload the buffer as the next part (starting the upload at the first)."""
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise SinkError(
                f"{self._label!r}: more than {MAX_PARTS} parts of {self._chunk_size} "
                "bytes; pass size= to open_write or raise part_size/memory_budget"
            )
        if self._upload_id is None:
            created = self._send(
                "start an upload of",
                self._label,
                lambda: self._client.create_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    ChecksumAlgorithm=self._algorithm,
                    **self._object_args,
                ),
            )
            self._upload_id = created["UploadId"]
        args = self._checksum_args()
        upload_id = self._upload_id
        answer = self._send(
            "upload a part of",
            self._label,
            lambda: self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                Body=self._body(),
                **args,
            ),
        )
        self._parts.append(
            {
                "PartNumber": number,
                "ETag": answer["ETag"],
                self._checksum_param: args[self._checksum_param],
            }
        )
        logger.debug("uploaded part %d of s3://%s/%s", number, self._bucket, self._key)


class S3PartWriter(PartWriter):
    """The parts of one multipart upload, sent from many threads at once.

    Every part carries its checksum (of the sink's algorithm), which S3 verifies
    and keeps. The checksum :meth:`write_part` returns is that checksum and the
    part's ETag, separated by a space: :meth:`resumable_parts` compares the size
    and the checksum ``ListParts`` reports (every page), or the ETag where the
    store lists no checksums (some S3-compatible stores), and :meth:`complete`
    hands both to ``CompleteMultipartUpload``. The token is the upload id.
    """

    def __init__(
        self,
        client: S3Client,
        *,
        bucket: str,
        key: str,
        upload_id: str,
        size: int,
        part_size: int,
        checksum_algorithm: str,
        send: Sender,
        label: str,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._upload_id = upload_id
        self._size = size
        self._part_size = part_size
        self._checksum = checksum_function(checksum_algorithm)
        self._algorithm = cast("ChecksumAlgorithmType", checksum_algorithm)
        self._checksum_param = f"Checksum{checksum_algorithm}"
        self._send = send
        self._label = label

    @property
    def token(self) -> str:
        """The multipart upload's id."""
        return self._upload_id

    def write_part(self, number: int, data: Part) -> str:
        check_part(self._label, number, data, self._size, self._part_size)
        checksum = self._checksum(data)
        args: dict[str, Any] = {
            "ChecksumAlgorithm": self._algorithm,
            self._checksum_param: checksum,
        }
        answer = self._send(
            "upload a part of",
            self._label,
            lambda: self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=cast("bytes", data),  # botocore sends a bytearray as is
                **args,
            ),
        )
        return f"{checksum} {answer['ETag']}"

    def resumable_parts(self, recorded: Mapping[int, str]) -> set[int]:
        kept: set[int] = set()
        request: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "UploadId": self._upload_id,
        }
        while True:
            page = self._send(
                "list the parts of",
                self._label,
                lambda: self._client.list_parts(**request),
            )
            for part in page.get("Parts", []):
                number = part["PartNumber"]
                if number not in recorded or not 1 <= number <= MAX_PARTS:
                    continue
                checksum, _, etag = recorded[number].partition(" ")
                listed = part.get(self._checksum_param)
                start, end = part_range(number, self._size, self._part_size)
                if part.get("Size") == end - start and (
                    listed == checksum if listed else part.get("ETag") == etag
                ):
                    kept.add(number)
            if not page.get("IsTruncated"):
                return kept
            request["PartNumberMarker"] = page["NextPartNumberMarker"]

    def complete(self, checksums: Mapping[int, str]) -> None:
        check_complete(self._label, checksums, self._size, self._part_size)
        parts = []
        for number in sorted(checksums):
            checksum, _, etag = checksums[number].partition(" ")
            parts.append(
                {"PartNumber": number, "ETag": etag, self._checksum_param: checksum}
            )
        completed = cast("list[CompletedPartTypeDef]", parts)
        self._send(
            "complete the upload of",
            self._label,
            lambda: self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": completed},
            ),
        )
        logger.debug("completed s3://%s/%s in parts", self._bucket, self._key)

    def abort(self) -> None:
        try:
            self._send(
                "abort the upload of",
                self._label,
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                ),
            )
        except SinkError as exc:
            logger.warning(
                "could not abort upload %s of s3://%s/%s: %s",
                self._upload_id,
                self._bucket,
                self._key,
                exc,
            )
