"""botocore's errors, classified in one place: configuration errors and transient ones.

No credentials, no region, an unknown profile and their kin are the caller's
configuration, not a failure of S3, DynamoDB or CloudWatch: the S3 sink, the DynamoDB
store and the CloudWatch metrics run their calls inside :func:`aws_config_errors`
(within their own error mappers), so these become a
:class:`~aep_extract.errors.ConfigError` (exit 2 on the command line) whose message
says what to set. botocore raises them when a client is created (region, profile,
partial keys) or on its first request (no credentials at all).

:func:`transient_kind` says which botocore errors are worth another try: throttling
codes, 5xx answers and connection failures. The retry policy
(:mod:`aep_extract._retry`) asks it about the cause of a store's or sink's error, so
the one policy retries AWS calls too; botocore's own retries are switched off on the
clients the library creates.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Optional

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    CredentialRetrievalError,
    HTTPClientError,
    InvalidConfigError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    UnknownCredentialError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from .errors import ConfigError

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or run with an IAM role"
)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
"""Error codes by which an AWS service says "slow down" (botocore's standard mode's
list, whatever the HTTP status: S3's ``SlowDown`` comes as a 503)."""

TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
"""Error codes of failures that may pass; any 5xx status counts as well."""

THROTTLED = "throttled"
TRANSIENT = "transient"


def one_attempt_config(**options: Any) -> Config:
    """The botocore ``Config`` of every client the library creates: ``options`` and
    one send per attempt (``retries={"total_max_attempts": 1}``). The retry policy
    is ours (:mod:`aep_extract._retry`); botocore's would multiply its attempts.
    (botocore's ``max_attempts`` counts retries: 1 would mean two sends.)"""
    return Config(retries={"total_max_attempts": 1, "mode": "standard"}, **options)


class Unprocessed(Exception):
    """A request AWS answered only in part (DynamoDB's ``UnprocessedKeys``): its
    way of throttling a batch. Raise a mapped error ``from`` it to have it retried."""


_PROVIDERS = {
    "env": "the environment",
    "shared-credentials-file": "the shared credentials file",
    "config-file": "the AWS config file",
    "custom-process": "credential_process",
}
"""botocore's credential provider names, as a user knows them."""


@contextlib.contextmanager
def aws_config_errors() -> Iterator[None]:
    """Turn botocore's configuration errors into :class:`ConfigError`; other errors
    pass through untouched for the caller's own mapper.

    Raises:
        ConfigError: no or partial credentials, no or an invalid region, an unknown
            profile, an unreadable or invalid AWS configuration.
    """
    try:
        yield
    except BotoCoreError as exc:
        problem = config_problem(exc)
        if problem is None:
            raise
        raise ConfigError(problem) from exc


def config_problem(exc: BaseException) -> Optional[str]:
    """What to fix when ``exc`` is one of botocore's configuration errors, else None."""
    kwargs = getattr(exc, "kwargs", {})
    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, PartialCredentialsError):
        provider = str(kwargs.get("provider"))
        where = _PROVIDERS.get(provider, provider)
        return (
            f"incomplete AWS credentials in {where}: {kwargs.get('cred_var')} is "
            "missing; AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile's "
            "aws_access_key_id and aws_secret_access_key) go together"
        )
    if isinstance(exc, NoRegionError):
        return f"no AWS region: {_region_fix()}"
    if isinstance(exc, InvalidRegionError):
        return f"invalid AWS region {kwargs.get('region_name')!r}: {_region_fix()}"
    if isinstance(exc, ProfileNotFound):
        return (
            f"AWS profile {kwargs.get('profile')!r} not found in {_config_file()} "
            f"or {_credentials_file()}: fix AWS_PROFILE, or add the profile"
        )
    if isinstance(exc, (CredentialRetrievalError, SSOError)):
        return f"cannot get AWS credentials: {exc}"
    if isinstance(exc, UnknownCredentialError):
        return (
            f"unknown AWS credential source {kwargs.get('name')!r}: fix "
            f"credential_source of the profile in {_config_file()}"
        )
    if isinstance(exc, (InvalidConfigError, ConfigParseError)):
        return f"invalid AWS configuration: {exc}"
    return None


def transient_kind(exc: BaseException) -> Optional[str]:
    """:data:`THROTTLED`, :data:`TRANSIENT` or None (not worth another try) for a
    botocore error.

    Throttled: a throttling error code (:data:`THROTTLING_CODES`) or
    :class:`Unprocessed`. Transient: a 5xx status, a code of
    :data:`TRANSIENT_CODES`, a connection failure or a timeout (a request that may
    or may not have been applied: every write the library retries is idempotent or
    conditional).
    """
    if isinstance(exc, Unprocessed):
        return THROTTLED
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in THROTTLING_CODES:
            return THROTTLED
        if code in TRANSIENT_CODES or status >= 500:
            return TRANSIENT
        return None
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return TRANSIENT
    return None


def _region_fix() -> str:
    fix = f"set AWS_DEFAULT_REGION, or region in {_config_file()}"
    if os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        fix += " (AWS_REGION is set, but boto3 reads AWS_DEFAULT_REGION)"
    return fix


def _config_file() -> str:
    return os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def _credentials_file() -> str:
    return os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
