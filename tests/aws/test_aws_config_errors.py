"""AWS misconfiguration (no credentials, no region, unknown profile ...) is a
configuration error: exit 2 with one line saying what to set, before any work."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import (
    ConfigParseError,
    CredentialRetrievalError,
    EndpointConnectionError,
    InvalidConfigError,
    InvalidRegionError,
    UnauthorizedSSOTokenError,
    UnknownCredentialError,
)

from aep_extract import MetricsError, open_sink
from aep_extract._aws_errors import aws_config_errors
from aep_extract.checkpoints.dynamodb import DynamoDBCheckpointStore
from aep_extract.cli import main
from aep_extract.errors import ConfigError
from aep_extract.metrics import CloudWatchMetrics

from ..e2e.helpers import DATASET, run_args
from .test_metrics import REPORT

S3_URL, DYNAMODB_URL = "s3://aep-landing/raw/aep", "dynamodb://aep-extract-state"
NO_CREDENTIALS = (
    "aep-extract: error: no AWS credentials found: set AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role"
)


@pytest.fixture
def bare_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment where boto3 finds no AWS configuration at all: no variables,
    no ~/.aws files, no instance metadata. Returns the (absent) config file."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-creds"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Should a request go out after all, it fails at once rather than reach AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    return config


@pytest.fixture
def region(bare_aws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


@pytest.fixture
def credentials(bare_aws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err  # no traceback, no log noise
    return lines[0]


@pytest.mark.parametrize(
    ("sink", "store"),
    [(S3_URL, DYNAMODB_URL), ("local", DYNAMODB_URL), (S3_URL, "sqlite")],
    ids=["s3-dynamodb", "local-dynamodb", "s3-sqlite"],
)
def test_run_without_credentials_exits_2_naming_the_variables(
    sink, store, fake_aep_env, region, tmp_path, capsys
):
    sink = str(tmp_path / "out") if sink == "local" else sink
    store = f"sqlite:///{tmp_path / 'state.db'}" if store == "sqlite" else store
    assert main(run_args(sink, store)) == 2
    assert one_error_line(capsys) == NO_CREDENTIALS
    assert not (tmp_path / "out").exists()


def test_status_without_credentials_exits_2(region, capsys):
    assert main(["status", "--dataset", DATASET, "--store", DYNAMODB_URL]) == 2
    assert one_error_line(capsys) == NO_CREDENTIALS


def test_run_without_region_exits_2_naming_the_variable(
    fake_aep_env, credentials, bare_aws, capsys
):
    assert main(run_args(S3_URL, DYNAMODB_URL)) == 2
    assert one_error_line(capsys) == (
        "aep-extract: error: no AWS region: set AWS_DEFAULT_REGION, or region in "
        f"{bare_aws}"
    )


def test_aws_region_alone_is_named_as_not_read_by_boto3(
    credentials, monkeypatch, capsys
):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert main(["status", "--dataset", DATASET, "--store", DYNAMODB_URL]) == 2
    assert one_error_line(capsys).endswith(
        "(AWS_REGION is set, but boto3 reads AWS_DEFAULT_REGION)"
    )


def test_unknown_profile_exits_2_naming_it(
    fake_aep_env, region, bare_aws, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("AWS_PROFILE", "etl")
    assert main(run_args(S3_URL, f"sqlite:///{tmp_path / 'state.db'}")) == 2
    assert one_error_line(capsys) == (
        f"aep-extract: error: AWS profile 'etl' not found in {bare_aws} or "
        f"{tmp_path / 'aws-creds'}: fix AWS_PROFILE, or add the profile"
    )


def test_partial_credentials_exit_2_naming_the_missing_half(
    fake_aep_env, region, monkeypatch, capsys
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    assert main(run_args(S3_URL, DYNAMODB_URL)) == 2
    line = one_error_line(capsys)
    assert line.startswith(
        "aep-extract: error: incomplete AWS credentials in the environment: "
        "AWS_SECRET_ACCESS_KEY is missing"
    )


def test_cloudwatch_metrics_without_region_stop_the_run_before_any_work(
    fake_aep_env, bare_aws, tmp_path, capsys
):
    db = tmp_path / "state.db"
    argv = run_args(str(tmp_path / "out"), f"sqlite:///{db}", "--metrics", "cloudwatch")
    assert main(argv) == 2
    assert one_error_line(capsys).startswith("aep-extract: error: no AWS region")
    assert not (tmp_path / "out").exists()
    assert not db.exists()  # the store was not even opened


def test_store_and_sink_raise_config_errors(region):
    with pytest.raises(ConfigError, match="no AWS credentials found") as caught:
        DynamoDBCheckpointStore("any-table")
    assert type(caught.value) is ConfigError
    with open_sink(S3_URL) as sink, pytest.raises(ConfigError, match="AWS_PROFILE"):
        sink.check()


def test_metrics_without_credentials_are_not_published_and_say_why(region):
    metrics = CloudWatchMetrics(session=boto3.Session())
    with pytest.raises(MetricsError, match="no AWS credentials found: set AWS_PROFILE"):
        metrics.publish(REPORT)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            CredentialRetrievalError(provider="custom-process", error_msg="exit 1"),
            "cannot get AWS credentials: Error when retrieving credentials from "
            "custom-process: exit 1",
        ),
        (
            UnauthorizedSSOTokenError(),
            "cannot get AWS credentials: The SSO session associated with this "
            "profile has expired",
        ),
        (
            UnknownCredentialError(name="Ec2Instance"),
            "unknown AWS credential source 'Ec2Instance': fix credential_source of "
            "the profile in",
        ),
        (
            InvalidRegionError(region_name="eu west 1"),
            "invalid AWS region 'eu west 1': set AWS_DEFAULT_REGION, or region in",
        ),
        (
            InvalidConfigError(error_msg="bad retry mode"),
            "invalid AWS configuration: bad retry mode",
        ),
        (
            ConfigParseError(path="/x/config"),
            "invalid AWS configuration: Unable to parse config file: /x/config",
        ),
    ],
)
def test_other_configuration_errors_name_the_fix(region, error, message):
    with pytest.raises(ConfigError) as caught, aws_config_errors():
        raise error
    assert str(caught.value).startswith(message)
    assert caught.value.__cause__ is error


def test_other_botocore_errors_pass_through(region):
    error = EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")
    with pytest.raises(EndpointConnectionError), aws_config_errors():
        raise error
