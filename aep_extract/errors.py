"""The exception tree of aep_extract: every error derives from one base.

::

    AepExtractError
    ├── ConfigError                 bad arguments, settings or window
    │   └── MissingResourceError    the table or bucket named does not exist
    ├── SourceError                 anything from the AEP side
    │   ├── AuthError               token request refused (wrong id/secret/scope)
    │   ├── ApiError(status)        an HTTP answer the client cannot use
    │   │   ├── NotFoundError       unknown dataset, batch or file (404)
    │   │   ├── ThrottledError      429; retryable, carries ``retry_after``
    │   │   └── ServerError         5xx; retryable
    │   ├── TransientNetworkError   connection reset, timeout; retryable
    │   ├── IncompleteDownload      fewer bytes than announced; retryable
    │   └── InvalidResponse         malformed JSON, missing fields, unsafe names
    ├── CheckpointError             the checkpoint store failed
    │   └── CheckpointConflict      a conditional write lost (lease taken over)
    ├── SinkError                   the sink failed
    │   └── UnsafeKeyError          a name from the API would escape its prefix
    │       └── KeyCollisionError   two files (or a file and a manifest) share a key
    └── ExtractionFailed            raised by ``RunReport.raise_for_failures()``

Retryable errors (``RETRYABLE``) are retried by the source's retry policy before they
reach the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


class AepExtractError(Exception):
    """Base class of every error raised by aep_extract."""


class ConfigError(AepExtractError):
    """Invalid configuration, arguments or time window."""


class MissingResourceError(ConfigError):
    """The DynamoDB table or S3 bucket the configuration names does not exist."""


class SourceError(AepExtractError):
    """An error while talking to Adobe Experience Platform."""


class AuthError(SourceError):
    """The IMS token request was refused (wrong client id, secret, org or scope)."""


class ApiError(SourceError):
    """An HTTP response the client cannot use.

    Attributes:
        status: HTTP status code.
        url: request URL without query secrets (the client sends none in URLs).
        request_id: Adobe's ``x-request-id`` header, when present.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str = "",
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.request_id = request_id


class NotFoundError(ApiError):
    """The dataset, batch or file does not exist (HTTP 404)."""


class ThrottledError(ApiError):
    """HTTP 429. ``retry_after`` is the server's hint in seconds, if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        url: str = "",
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message, status=status, url=url, request_id=request_id)
        self.retry_after = retry_after


class ServerError(ApiError):
    """HTTP 5xx from the platform or its gateway."""


class TransientNetworkError(SourceError):
    """The connection failed or timed out before a complete answer arrived."""


class IncompleteDownload(SourceError):
    """A body was shorter than announced, or a range came back wrong."""


class InvalidResponse(SourceError):
    """A response that does not have the documented shape (bad JSON, missing fields)."""


class CheckpointError(AepExtractError):
    """The checkpoint store failed."""


class CheckpointConflict(CheckpointError):
    """A conditional write lost: another worker owns the unit, or it changed."""


class SinkError(AepExtractError):
    """The sink failed to store or read an object."""


class UnsafeKeyError(SinkError):
    """A name from the API would escape its prefix (``..``, absolute, control chars)."""


class KeyCollisionError(UnsafeKeyError):
    """Two files of a batch, or a file and a manifest, map to one object of the sink.

    Raised before any file of the unit is copied: one of them would overwrite the
    other. Keys collide when they are equal, or when the sink stores them as one
    object (a case-insensitive or Unicode-normalising filesystem, see
    :meth:`Sink.key_identity <aep_extract.Sink.key_identity>`).

    Attributes:
        sources: what maps there, e.g. ``dataSetFileId 'a/b' name 'c'``, each
            spelled so that two different sources never read alike.
        keys: the key of each source (equal, or equal to the sink).
    """

    def __init__(self, sources: tuple[str, str], keys: tuple[str, str]) -> None:
        self.sources = sources
        self.keys = keys
        where = (
            f"sink key {keys[0]!r}"
            if keys[0] == keys[1]
            else f"sink keys {keys[0]!r} and {keys[1]!r}, one object in this sink"
        )
        super().__init__(f"{sources[0]} and {sources[1]} both map to {where}")


class ExtractionFailed(AepExtractError):
    """Some units failed; ``failures`` lists ``(unit_id, error)`` pairs."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        lines = "; ".join(f"{unit}: {error}" for unit, error in self.failures[:5])
        more = len(self.failures) - 5
        suffix = f" (+{more} more)" if more > 0 else ""
        super().__init__(f"{len(self.failures)} unit(s) failed: {lines}{suffix}")


RETRYABLE: tuple[type[AepExtractError], ...] = (
    ThrottledError,
    ServerError,
    TransientNetworkError,
    IncompleteDownload,
)
"""Errors the retry policy retries before giving up."""
