"""AWS fixtures: fake credentials, moto in-process, and moto as a real HTTP server."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from moto import mock_aws
from moto.dynamodb import models as dynamodb_models
from moto.server import ThreadedMotoServer

from .sfn_local import LocalStack, localstack_server

REGION = "us-east-1"


@pytest.fixture(scope="session", autouse=True)
def atomic_moto_dynamodb() -> Iterator[None]:
    """Make moto's conditional writes atomic, as DynamoDB's are.

    moto checks a ConditionExpression and then writes, with no lock between: two
    threads (or two requests to the moto server, which runs in this process) can
    both pass the check. DynamoDB guarantees that a conditional write is atomic, and
    the store's fencing relies on exactly that, so the tests emulate it.
    """
    backend = dynamodb_models.DynamoDBBackend
    lock = threading.RLock()
    originals = {
        name: getattr(backend, name)
        for name in ("put_item", "update_item", "delete_item", "transact_write_items")
    }

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return call

    for name, method in originals.items():
        setattr(backend, name, locked(method))
    yield
    for name, method in originals.items():
        setattr(backend, name, method)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials so nothing can reach a real AWS account."""
    fake_aws_env(monkeypatch)


def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set fake credentials and the test region; clear profiles and endpoints."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # moto 5.1 (the newest on Python 3.9) returns a multipart object's checksum
    # without its "-N" part count, so botocore's read-side check rejects intact
    # objects; the tests' own clients check only where S3 requires it, as the sink's
    # do (writes are checksummed and verified either way).
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")


@pytest.fixture
def moto_in_process(aws_env: None) -> Iterator[boto3.Session]:
    """moto's in-process mock: boto3 calls never leave the process."""
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto as a real HTTP server on 127.0.0.1; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """LocalStack's Step Functions and S3, for :func:`.sfn_local.run_state_machine`."""
    with localstack_server(tmp_path_factory.mktemp("localstack")) as server:
        yield server


@pytest.fixture
def moto_over_http(
    aws_env: None, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[boto3.Session]:
    """boto3 pointed at the moto server through ``AWS_ENDPOINT_URL``: bytes cross a
    socket. The server's state is reset after each test."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    yield boto3.Session(region_name=REGION)
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10)


@pytest.fixture(params=["in_process", "over_http"])
def aws(request: pytest.FixtureRequest) -> boto3.Session:
    """Both flavours of moto, so every AWS test runs in-process and over HTTP."""
    name = "moto_in_process" if request.param == "in_process" else "moto_over_http"
    session: boto3.Session = request.getfixturevalue(name)
    return session


class _Body:
    """The raw body of an injected answer, as botocore reads it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.data


def fail_sends(
    client: Any, event: str, count: int, status: int, body: bytes
) -> list[str]:
    """Answer the first ``count`` sends of ``event`` (``"dynamodb.GetItem"``) with
    ``status`` and ``body`` at the HTTP layer, where botocore's own retries would
    act; later sends go to the server. Returns the URL of every send."""
    sends: list[str] = []

    def answer(request: Any, **kwargs: Any) -> Optional[AWSResponse]:
        sends.append(request.url)
        if len(sends) > count:
            return None
        return AWSResponse(request.url, status, HTTPHeaders(), _Body(body))

    client.meta.events.register(f"before-send.{event}", answer)
    return sends


def dynamodb_error(code: str) -> bytes:
    """A DynamoDB (JSON protocol) error body."""
    return f'{{"__type": "com.amazonaws.dynamodb.v20120810#{code}", '.encode() + (
        b'"message": "injected"}'
    )


def s3_error(code: str) -> bytes:
    """An S3 (XML protocol) error body."""
    return f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
