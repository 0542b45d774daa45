"""The exception tree of aep_extract: every error derives from one base.

::

    AepExtractError
    ├── ConfigError                 bad arguments, settings or window (a ValueError)
    │   ├── MissingResourceError    the table, bucket or database file does not exist
    │   ├── NothingNewToPlan        a since-last run's window would be empty
    │   └── DestinationMismatch     the store copied the dataset to another sink
    ├── SourceError                 anything from the AEP side
    │   ├── AuthError               token request refused (wrong id/secret/scope)
    │   ├── TokenUnavailable        IMS gave no token within ``token_timeout``
    │   ├── ApiError(status)        an HTTP answer the client cannot use
    │   │   ├── NotFoundError       unknown dataset, batch or file (404)
    │   │   ├── Unauthorized        401; retryable with a new token
    │   │   ├── ThrottledError      429; retryable, carries ``retry_after``
    │   │   └── ServerError         5xx; retryable
    │   ├── TransientNetworkError   connection reset, timeout; retryable
    │   │   └── DeadlineExceeded    a request outlived its total deadline, or an abort
    │   ├── IncompleteDownload      fewer bytes than announced; retryable
    │   └── InvalidResponse         malformed JSON, missing fields, unsafe names,
    │       │                       more bytes than announced, an encoding
    │       └── UntrustedLinkError  a link or redirect away from the configured origin
    ├── CheckpointError             the checkpoint store failed
    │   └── CheckpointConflict      a conditional write lost (lease taken over)
    ├── SinkError                   the sink failed
    │   └── UnsafeKeyError          a name from the API would escape its prefix
    │       └── KeyCollisionError   two files (or a file and a manifest) share a key
    ├── CatalogError                the Glue Data Catalog refused or failed a request
    ├── TransformError              a transform could not process a file (not the
    │                               format it reads, a field it needs is missing)
    ├── MetricsError                metrics could not be published (a run goes on)
    ├── DeployFailed                the pipeline's stack failed, or CloudFormation did
    └── ExtractionFailed            raised by ``RunReport.raise_for_failures()``

Retryable errors (``RETRYABLE``) are retried by the source's retry policy before they
reach the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


class AepExtractError(Exception):
    """Base class of every error raised by aep_extract."""


class ConfigError(AepExtractError, ValueError):
    """Invalid configuration, arguments or time window.

    Also a :class:`ValueError`: constructing a public class with an invalid value
    raises it, and code that catches ``ValueError`` keeps working.
    """


class MissingResourceError(ConfigError):
    """The DynamoDB table or S3 bucket the configuration names does not exist."""


class NothingNewToPlan(ConfigError):
    """A since-last window would be empty: the dataset is planned up to its end
    already (:meth:`Extractor.next_window <aep_extract.Extractor.next_window>`)."""


class DestinationMismatch(ConfigError):
    """The store recorded that the dataset was copied to another destination.

    Progress is recorded per unit, not per destination: with the same store, a run
    into a second sink would find every unit Completed and copy nothing.

    Attributes:
        dataset_id: the dataset.
        recorded: the destination its units were copied to with this store.
        destination: the destination this run writes to.
    """

    def __init__(self, dataset_id: str, recorded: str, destination: str) -> None:
        super().__init__(
            f"dataset {dataset_id} was copied with this store to {recorded}; this run "
            f"writes to {destination}. To copy it there too, use another store (e.g. "
            "--store sqlite:///other.db), or forget the dataset's recorded state "
            "first with `aep-extract reset` (its objects stay in the old sink)"
        )
        self.dataset_id = dataset_id
        self.recorded = recorded
        self.destination = destination


class UnknownHost(ConfigError):
    """A URL's host name does not exist, so the resolver says (a mistyped
    ``AEP_IMS_URL`` or ``AEP_PLATFORM_URL``): no retry could help."""


class SourceError(AepExtractError):
    """An error while talking to Adobe Experience Platform."""


class AuthError(SourceError):
    """The IMS token request was refused (wrong client id, secret, org or scope)."""


class TokenUnavailable(SourceError):
    """IMS answered no token within ``AepConfig.token_timeout`` seconds, retries
    included (unreachable, failing or too slow): a run cannot go on without one."""


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


class Unauthorized(ApiError):
    """HTTP 401: the token expired or was revoked. The token is dropped and the
    request retried with a new one; a 401 that persists through every retry means
    the API key, org id, sandbox or product profile is wrong."""


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


class DeadlineExceeded(TransientNetworkError):
    """A request was cut short: it outlived ``AepConfig.request_timeout`` (a server
    trickling its answer), or the run was aborted. Retryable."""


class IncompleteDownload(SourceError):
    """A body was shorter than announced, or a range came back wrong."""


class InvalidResponse(SourceError):
    """A response that does not have the documented shape (bad JSON, missing fields),
    or that breaks the protocol (more bytes than announced, an unasked encoding)."""


class UntrustedLinkError(InvalidResponse):
    """A link or redirect in an answer points away from the configured origin, or is
    ambiguous; nothing was sent there."""


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


class CatalogError(AepExtractError):
    """The Glue Data Catalog refused or failed a request (access denied, a table
    with another partition key, a schema with no Hive type); throttling and 5xx
    answers are retried first."""


class TransformError(AepExtractError):
    """A transform could not turn a source file into its outputs.

    The file is not in the format the transform reads (not Parquet), lacks a field
    the transform names, holds a value the output cannot represent, or the transform
    broke its contract (wrote an undeclared output, or committed one before reading
    its source to the end). Not retryable: the same bytes fail the same way.
    """


class MetricsError(AepExtractError):
    """Metrics could not be published (the run itself is unaffected)."""


class DeployFailed(AepExtractError):
    """Deploying the AWS pipeline's stack failed (``aep-extract aws deploy``): the
    stack rolled back, or CloudFormation failed and a retry may pass.

    Attributes:
        stack_name: the stack.
        status: its status after the failure (e.g. ``ROLLBACK_COMPLETE``); None
            when CloudFormation itself failed.
        failures: what failed, oldest first: ``LogicalId (Type) STATUS: reason``
            per resource, or CloudFormation's error.
    """

    def __init__(
        self,
        stack_name: str,
        status: Optional[str] = None,
        failures: Sequence[str] = (),
    ) -> None:
        self.stack_name = stack_name
        self.status = status
        self.failures = list(failures)
        what = f"stack {stack_name} is {status}" if status else f"stack {stack_name}"
        more = len(self.failures) - 5
        said = "; ".join(self.failures[:5]) or "no failed resource reported"
        suffix = f" (+{more} more)" if more > 0 else ""
        super().__init__(f"{what}: {said}{suffix}")


class ExtractionFailed(AepExtractError):
    """Some units failed; ``failures`` lists ``(unit_id, error)`` pairs."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        lines = "; ".join(f"{unit}: {error}" for unit, error in self.failures[:5])
        more = len(self.failures) - 5
        suffix = f" (+{more} more)" if more > 0 else ""
        super().__init__(f"{len(self.failures)} unit(s) failed: {lines}{suffix}")


RETRYABLE: tuple[type[AepExtractError], ...] = (
    Unauthorized,
    ThrottledError,
    ServerError,
    TransientNetworkError,
    IncompleteDownload,
)
"""Errors the retry policy retries before giving up."""
