"""botocore's configuration errors, in one place, as ConfigError naming the fix.

No credentials, no region, an unknown profile and their kin are the caller's
configuration, not a failure of S3, DynamoDB or CloudWatch: the S3 sink, the DynamoDB
store and the CloudWatch metrics run their calls inside :func:`aws_config_errors`
(within their own error mappers), so these become a
:class:`~aep_extract.errors.ConfigError` (exit 2 on the command line) whose message
says what to set. botocore raises them when a client is created (region, profile,
partial keys) or on its first request (no credentials at all).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Optional

from botocore.exceptions import (
    BotoCoreError,
    ConfigParseError,
    CredentialRetrievalError,
    InvalidConfigError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    UnknownCredentialError,
)

from .errors import ConfigError

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or run with an IAM role"
)

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


def _region_fix() -> str:
    fix = f"set AWS_DEFAULT_REGION, or region in {_config_file()}"
    if os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        fix += " (AWS_REGION is set, but boto3 reads AWS_DEFAULT_REGION)"
    return fix


def _config_file() -> str:
    return os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def _credentials_file() -> str:
    return os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
