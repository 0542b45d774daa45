"""The AEP credentials from an AWS Secrets Manager secret.

The secret's value is a JSON object with the keys of the ``AEP_*`` variables::

    {"AEP_CLIENT_ID": "...", "AEP_CLIENT_SECRET": "...", "AEP_ORG_ID": "...@AdobeOrg",
     "AEP_SANDBOX": "prod"}

``AEP_CLIENT_ID``, ``AEP_CLIENT_SECRET`` and ``AEP_ORG_ID`` are required;
``AEP_SANDBOX``, ``AEP_SCOPES``, ``AEP_PLATFORM_URL`` and ``AEP_IMS_URL`` optional. No
message of this module shows a value of the secret.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

from .._aws_errors import aws_config_errors, transient_kind
from ..config import ConcurrencyConfig
from ..errors import ConfigError, SourceError
from ..sources import AepSource, HttpAepSource, open_source

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["OPTIONAL_KEYS", "REQUIRED_KEYS", "aep_credentials", "aep_source"]

REQUIRED_KEYS = ("AEP_CLIENT_ID", "AEP_CLIENT_SECRET", "AEP_ORG_ID")
OPTIONAL_KEYS = ("AEP_SANDBOX", "AEP_SCOPES", "AEP_PLATFORM_URL", "AEP_IMS_URL")


def aep_credentials(
    secret_id: str, *, client: Optional[SecretsManagerClient] = None
) -> dict[str, str]:
    """The ``AEP_*`` settings kept in a secret, for
    :meth:`HttpAepSource.from_env <aep_extract.HttpAepSource.from_env>`.

    Args:
        secret_id: the secret's name or ARN.
        client: a boto3 Secrets Manager client (default: one on boto3's chain).

    Raises:
        ConfigError: the secret does not exist or may not be read, is not a JSON
            object, or lacks a required key (or has a value that is not text).
        SourceError: Secrets Manager throttled or failed; a retry may pass.
    """
    if not secret_id:
        raise ConfigError("no secret id given for the AEP credentials")
    text = _secret_string(secret_id, client)
    try:
        data: Any = json.loads(text)
    except ValueError:
        raise ConfigError(
            f"secret {secret_id} is not JSON: store the AEP credentials as a JSON "
            f"object with the keys {', '.join(REQUIRED_KEYS)}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"secret {secret_id} is not a JSON object")
    wrong = [
        key
        for key in REQUIRED_KEYS + OPTIONAL_KEYS
        if (key in REQUIRED_KEYS or key in data)
        and not (isinstance(data.get(key), str) and data[key])
    ]
    if wrong:
        raise ConfigError(
            f"secret {secret_id} lacks a text value for {', '.join(wrong)}"
        )
    return {key: data[key] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in data}


def aep_source(
    secret_id: Optional[str], *, concurrency: Optional[ConcurrencyConfig] = None
) -> AepSource:
    """The AEP source of a secret, or, without a secret id, of the ``AEP_*``
    environment variables (as the command line reads them).

    Raises:
        ConfigError, SourceError: see :func:`aep_credentials` and
            :meth:`HttpAepSource.from_env <aep_extract.HttpAepSource.from_env>`.
    """
    if not secret_id:
        return open_source("aep://", concurrency=concurrency)
    options = {} if concurrency is None else {"concurrency": concurrency}
    return HttpAepSource.from_env(aep_credentials(secret_id), **options)


def _secret_string(secret_id: str, client: Optional[SecretsManagerClient]) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with aws_config_errors():
            if client is None:
                import boto3

                client = boto3.client("secretsmanager")
            answer = client.get_secret_value(SecretId=secret_id)
    except (BotoCoreError, ClientError) as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if transient_kind(exc) is not None:
            raise SourceError(
                f"reading secret {secret_id} failed ({code or type(exc).__name__}); "
                "a retry may pass"
            ) from exc
        raise ConfigError(
            f"cannot read secret {secret_id} ({code or type(exc).__name__}): it must "
            "exist and the role needs secretsmanager:GetSecretValue on it"
        ) from exc
    text = answer.get("SecretString")
    if text is None:
        raise ConfigError(
            f"secret {secret_id} holds binary data: store the AEP credentials as a "
            "JSON text"
        )
    return text
