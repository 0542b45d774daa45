"""Pieces of the S3 sink that hold no state: URL and option checks, the read body.

:mod:`aep_extract.sinks.s3` builds on these; none of them sends a request.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._validators import text_arg
from ..errors import ConfigError, SinkError
from ..layout import check_key

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer  # exists only for type checkers
    from botocore.response import StreamingBody
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

SSE_ALGORITHMS = ("AES256", "aws:kms")
"""Server-side encryption the sink can request (``sse=``)."""

# Current S3 naming rules: 3-63 characters of a-z, 0-9, '.' and '-', starting and
# ending with a letter or digit, no '..' and not shaped like an IP address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
# RFC 9110 token characters: what an x-amz-meta-* header name may hold.
_METADATA_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into bucket and prefix (slashes stripped).

    The prefix is taken literally: no percent-decoding, and ``?``/``#`` are ordinary
    key characters, as they are in S3.

    Raises:
        ConfigError: not an ``s3://`` URL, an invalid bucket name, or a prefix with
            empty, ``.`` or ``..`` segments or control characters.
    """
    scheme, sep, rest = text_arg(url, "S3 URL").partition("://")
    if not sep or scheme.lower() != "s3":
        raise ConfigError(f"not an S3 URL: {url!r}; expected s3://BUCKET/PREFIX")
    bucket, _, prefix = rest.partition("/")
    if (
        not _BUCKET.match(bucket)
        or ".." in bucket
        or ".-" in bucket
        or "-." in bucket
        or _IP_ADDRESS.match(bucket)
    ):
        raise ConfigError(
            f"S3 URL {url!r}: invalid bucket name {bucket!r} (3-63 characters of "
            "a-z, 0-9, '.', '-', starting and ending with a letter or digit)"
        )
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except SinkError as exc:
            raise ConfigError(f"S3 URL {url!r}: invalid prefix: {exc}") from None
    return bucket, prefix


def object_args(
    sse: Optional[str],
    kms_key_id: Optional[str],
    bucket_owner_full_control: bool,
    storage_class: Optional[str],
) -> dict[str, Any]:
    """Arguments shared by PutObject and CreateMultipartUpload."""
    args: dict[str, Any] = {}
    if sse is not None:
        if sse not in SSE_ALGORITHMS:
            raise ConfigError(
                f"unsupported sse {sse!r}; expected one of {', '.join(SSE_ALGORITHMS)}"
            )
        args["ServerSideEncryption"] = sse
    if kms_key_id is not None:
        if sse != "aws:kms":
            raise ConfigError("kms_key_id needs sse='aws:kms'")
        args["SSEKMSKeyId"] = kms_key_id
    if bucket_owner_full_control:
        args["ACL"] = "bucket-owner-full-control"
    if storage_class is not None:
        if not storage_class:
            raise ConfigError("storage_class must not be empty")
        args["StorageClass"] = storage_class
    return args


def checked_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``metadata`` after checking it can travel as HTTP headers.

    Raises:
        SinkError: a name that is not an HTTP token, or a value that is not
            printable ASCII.
    """
    # HTTP headers carry metadata: anything but printable ASCII would fail in
    # http.client with an error no mapper sees, so it is refused here.
    for name, value in metadata.items():
        if not _METADATA_NAME.match(name) or not all(" " <= ch <= "~" for ch in value):
            raise SinkError(
                f"metadata {name!r}: {value!r}: S3 metadata must be printable ASCII"
            )
    return dict(metadata)


def full_object_sha256(head: HeadObjectOutputTypeDef) -> Optional[str]:
    """The hex SHA-256 S3 stored for a single-PUT object, or None."""
    value = head.get("ChecksumSHA256")
    # A multipart object's checksum is of its parts' checksums ("...-N"); its ETag
    # also ends in "-N", which catches stores that omit the suffix on HEAD.
    if (
        not value
        or "-" in value
        or "-" in head.get("ETag", "")
        or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT"
    ):
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 32 else None


class BodyReader(io.RawIOBase):
    """A GetObject body as a file; errors while streaming become SinkError."""

    def __init__(
        self,
        body: StreamingBody,
        errors: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> None:
        super().__init__()
        self._body = body
        self._errors = errors

    def readable(self) -> bool:
        return True

    def read(self, size: Optional[int] = -1, /) -> bytes:
        if self.closed:
            raise ValueError("read from a closed S3 object")
        with self._errors():
            return self._body.read(None if size is None or size < 0 else size)

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
