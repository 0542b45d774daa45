"""aep_credentials: the AEP settings from a Secrets Manager secret (moto), and
errors that never show the secret's value."""

from __future__ import annotations

import json

import pytest

from aep_extract import ConfigError, HttpAepSource
from aep_extract.aws.secrets import aep_credentials, aep_source

VALUE = "SENTINEL-client-secret-51c2"
GOOD = {
    "AEP_CLIENT_ID": "client",
    "AEP_CLIENT_SECRET": VALUE,
    "AEP_ORG_ID": "ORG@AdobeOrg",
    "AEP_SANDBOX": "dev",
    "AEP_PLATFORM_URL": "https://platform.example",
}


def put(session, name, text):
    session.client("secretsmanager").create_secret(Name=name, SecretString=text)


def test_a_good_secret_gives_its_aep_settings(aws):
    put(aws, "aep", json.dumps({**GOOD, "Note": "not ours"}))
    assert aep_credentials("aep") == GOOD
    client = aws.client("secretsmanager")
    assert aep_credentials("aep", client=client) == GOOD
    with aep_source("aep") as source:
        assert isinstance(source, HttpAepSource)
        assert source.config.sandbox == "dev"
        assert source.config.platform_url == "https://platform.example"


def test_a_missing_secret_is_a_config_error(aws):
    with pytest.raises(ConfigError, match=r"cannot read secret nope \(Resource"):
        aep_credentials("nope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"client={VALUE}", "is not JSON"),
        (json.dumps([VALUE]), "is not a JSON object"),
        (
            json.dumps({"AEP_CLIENT_ID": "c", "AEP_CLIENT_SECRET": VALUE}),
            "lacks a text value for AEP_ORG_ID",
        ),
        (
            json.dumps({**GOOD, "AEP_CLIENT_SECRET": ""}),
            "lacks a text value for AEP_CLIENT_SECRET",
        ),
        (
            json.dumps({**GOOD, "AEP_SANDBOX": 7, "AEP_ORG_ID": [VALUE]}),
            "lacks a text value for AEP_ORG_ID, AEP_SANDBOX",
        ),
    ],
)
def test_a_malformed_secret_is_a_config_error_without_its_value(aws, text, message):
    put(aws, "aep", text)
    with pytest.raises(ConfigError, match=message) as caught:
        aep_credentials("aep")
    assert VALUE not in str(caught.value)
    assert caught.value.__cause__ is None  # a JSONDecodeError would hold the text


def test_a_binary_secret_is_a_config_error(aws):
    aws.client("secretsmanager").create_secret(Name="aep", SecretBinary=VALUE.encode())
    with pytest.raises(ConfigError, match="holds binary data") as caught:
        aep_credentials("aep")
    assert VALUE not in str(caught.value)
