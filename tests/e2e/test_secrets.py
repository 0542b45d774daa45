"""No secret leaks: the client secret and every access token stay out of logs,
exceptions, reprs, the checkpoint store and the sink.

Each scenario runs real extractions against the fake platform (S3 through moto, so
botocore logs too) with every logger at DEBUG, then searches everything a user or an
operator could see for the sentinels. The tokens are the ones the platform actually
received (read from its request records), also searched by their first 16
characters so that a truncated token is caught too.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, quote_plus

import attrs
import boto3
import pytest
from moto import mock_aws

from aep_extract import (
    AepConfig,
    AuthError,
    Extractor,
    HttpAepSource,
    RetryConfig,
    SQLiteCheckpointStore,
    ThreadPoolScheduler,
)
from aep_extract.cli import main
from aep_extract.sinks.s3 import S3Sink
from aep_extract.testing import FakeAepPlatform, FakeRequest, FaultPlan, FaultRule

from .helpers import DATASET, END, START, expected_tree, run_args

SECRET = "SENTINEL-SECRET-4f1c"
WRONG_SECRET = "SENTINEL-WRONG-SECRET-9a7e"
ODD_SECRET = "SENTINEL s3cr+t/&=%?#-7e1d"
"""A secret whose URL-encoded forms (in a query or a form body) differ from it."""


def secret_forms(secret: str) -> tuple[str, ...]:
    """The secret as IMS receives it in a form body, and %-encoded."""
    return secret, quote(secret, safe=""), quote_plus(secret)


BUCKET = "secrets-test"
LOGGERS = ("aep_extract", "urllib3", "requests", "botocore", "boto3", "s3transfer")


@attrs.define
class Run:
    """One scenario's world and everything it left behind."""

    platform: FakeAepPlatform
    tmp_path: Path
    caplog: pytest.LogCaptureFixture
    capfd: pytest.CaptureFixture[str]
    objects: list[object] = attrs.Factory(list)
    errors: list[BaseException] = attrs.Factory(list)
    texts: list[str] = attrs.Factory(list)

    def source(self, secret: Optional[str] = None, **options: Any) -> HttpAepSource:
        secret = self.platform.client_secret if secret is None else secret
        env = {**self.platform.env(), "AEP_CLIENT_SECRET": secret}
        source = HttpAepSource.from_env(
            env,
            chunk_size=64 * 1024,
            retry=RetryConfig(initial_wait=0.01, max_wait=0.05),
            **options,
        )
        self.objects += [source, source.config, source.rate_limiter]
        return source

    def extractor(self, source: HttpAepSource) -> Extractor:
        store = SQLiteCheckpointStore(self.tmp_path / "state.db")
        sink = S3Sink(f"s3://{BUCKET}/out", session=boto3.Session())
        extractor = Extractor(
            source, store=store, sink=sink, scheduler=ThreadPoolScheduler(4)
        )
        self.objects += [extractor, store, sink]
        return extractor

    def tokens(self) -> set[str]:
        """Every bearer token the platform received."""
        found = set()
        for request in self.platform.requests:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme == "Bearer" and token:
                found.add(token)
        return found

    def assert_no_leaks(self, *secrets: str) -> None:
        needles = {s for secret in secrets for s in (secret, secret[:16])}
        assert all(len(n) >= 16 for n in needles)
        hits = [
            (where, needle)
            for where, text in self._haystacks()
            for needle in needles
            if needle in text
        ]
        assert hits == []

    def _haystacks(self) -> Iterator[tuple[str, str]]:
        yield from _log_texts(self.caplog.records)
        out, err = self.capfd.readouterr()
        yield "stdout", out
        yield "stderr", err
        for error in self.errors:
            yield from _exception_texts(error)
        for obj in self.objects:
            yield f"repr({type(obj).__name__})", repr(obj)
            yield f"str({type(obj).__name__})", str(obj)
        for index, text in enumerate(self.texts):
            yield f"text {index}", text
        yield from _store_texts(self.tmp_path)
        yield from _sink_texts()


def _log_texts(records: list[logging.LogRecord]) -> Iterator[tuple[str, str]]:
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"
    )
    for record in records:
        where = f"log {record.name}:{record.lineno}"
        yield where, str(record.msg)
        yield where, repr(record.args)
        yield where, record.getMessage()
        yield where, formatter.format(record)  # with the traceback, if any
        yield where, repr(vars(record))  # extra fields too


def _exception_texts(error: BaseException) -> Iterator[tuple[str, str]]:
    where = f"exception {type(error).__name__}"
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    yield where, "".join(lines)
    chained: Optional[BaseException] = error
    while chained is not None:
        yield where, str(chained)
        yield where, repr(chained)
        yield where, repr(vars(chained))
        chained = chained.__cause__ or chained.__context__


def _store_texts(tmp_path: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(tmp_path.glob("state.db*")):  # the database, -wal, -shm
        yield f"file {path.name}", path.read_bytes().decode("latin-1")
    db = tmp_path / "state.db"
    if db.exists():
        store = SQLiteCheckpointStore(db)
        for checkpoint in store.list(DATASET):
            yield "checkpoint", repr(attrs.asdict(checkpoint))
        store.close()
        with sqlite3.connect(db) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            ]
            for table in tables:
                if not table.startswith("sqlite_"):
                    for row in conn.execute(f'SELECT * FROM "{table}"'):
                        yield f"row of {table}", repr(row)


def _sink_texts() -> Iterator[tuple[str, str]]:
    client = boto3.client("s3")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            key = item["Key"]
            obj = client.get_object(Bucket=BUCKET, Key=key)
            yield f"key {key}", key
            yield f"object {key}", obj["Body"].read().decode("latin-1")
            yield f"metadata {key}", repr(obj.get("Metadata"))


@pytest.fixture
def world(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Run]:
    yield from _world(tmp_path, caplog, capfd, monkeypatch, SECRET)


@pytest.fixture
def odd_world(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Run]:
    """A world whose secret changes when URL-encoded."""
    yield from _world(tmp_path, caplog, capfd, monkeypatch, ODD_SECRET)


def _world(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> Iterator[Run]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    platform = FakeAepPlatform.generate(
        client_secret=secret, large_file_size=300 * 1024, max_file_size=16 * 1024
    )
    with platform, mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield Run(platform, tmp_path, caplog, capfd)


def test_a_full_extraction_leaks_nothing(world: Run) -> None:
    echoed = threading.Event()

    def proxy_echoing_the_token(request: FakeRequest) -> Any:
        # A misbehaving proxy that quotes the request's Authorization header in a
        # JSON error body, once: the message is logged and raised, never the token.
        if "/export/files/" not in request.path or echoed.is_set():
            return None
        echoed.set()
        body = f'{{"message": "bad gateway for {request.headers["Authorization"]}"}}'
        return 502, {"Content-Type": "application/json"}, body.encode()

    world.platform.add_fault(proxy_echoing_the_token)
    with world.extractor(world.source()) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok, str(report)
    assert report.retries >= 1
    world.texts += [str(report), repr(report.to_dict())]
    world.objects.append(report)

    tokens = world.tokens()
    assert len(tokens) == world.platform.tokens_issued == 1
    # The logs were really captured, urllib3's and botocore's DEBUG lines included.
    names = {record.name for record in world.caplog.records}
    assert {"urllib3.connectionpool", "aep_extract._retry"} <= names
    assert any(name.startswith("botocore") for name in names)
    assert any(
        "bad gateway for Bearer ***" in r.getMessage() for r in world.caplog.records
    )
    # urllib3 logs request lines, not headers.
    urllib3_lines = [
        r.getMessage() for r in world.caplog.records if r.name.startswith("urllib3")
    ]
    assert any('"GET /data/foundation/export/files/' in line for line in urllib3_lines)
    assert not any(
        "Authorization" in line or "Bearer" in line for line in urllib3_lines
    )
    world.assert_no_leaks(SECRET, *tokens)


def test_a_wrong_secret_leaks_nothing(world: Run) -> None:
    extractor = world.extractor(world.source(WRONG_SECRET))
    with extractor, pytest.raises(AuthError) as info:
        extractor.run(DATASET, START, END)
    world.errors.append(info.value)
    assert "invalid_client" in str(info.value)
    # A wrong secret on a run that plans fine: the units record the failure.
    with world.extractor(world.source()) as extractor:
        extractor.plan(DATASET, START, END)
    with world.extractor(world.source(WRONG_SECRET)) as extractor:
        try:
            report = extractor.execute(DATASET)
        except AuthError as exc:
            world.errors.append(exc)
        else:
            assert "AuthError" in str(report)  # recorded in the store, too
            world.texts += [str(report), repr(report.to_dict())]
            world.objects.append(report)
    assert world.platform.tokens_issued == 1  # only the planning run's
    world.assert_no_leaks(SECRET, WRONG_SECRET, *world.tokens())


def test_a_token_refresh_after_401_leaks_nothing(world: Run) -> None:
    downloads = 0
    lock = threading.Lock()

    def expire_on_the_fifth_download(request: FakeRequest) -> None:
        nonlocal downloads
        if "/export/files/" in request.path and "Range" in request.headers:
            with lock:
                downloads += 1
                if downloads == 5:
                    world.platform.expire_tokens()  # this very request gets 401

    world.platform.add_fault(expire_on_the_fifth_download)
    with world.extractor(world.source()) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok, str(report)
    world.texts += [str(report), repr(report.to_dict())]
    tokens = world.tokens()
    assert len(tokens) == world.platform.tokens_issued == 2
    assert any(
        "-> 401: fetching a new token" in r.getMessage() for r in world.caplog.records
    )
    world.assert_no_leaks(SECRET, *tokens)


def test_config_and_platform_objects_hide_the_secret(world: Run) -> None:
    config = AepConfig.from_env(world.platform.env())
    assert config.client_secret == SECRET
    world.objects += [config, world.platform]
    world.texts.append(repr(attrs.evolve(config, client_secret=WRONG_SECRET)))
    world.assert_no_leaks(SECRET, WRONG_SECRET)


def test_the_search_finds_a_leak(world: Run) -> None:
    """The checks above can fail: a secret in any haystack is found."""
    logging.getLogger("aep_extract.test").debug("oops %s", SECRET[:16] + "...")
    with pytest.raises(AssertionError):
        world.assert_no_leaks(SECRET)
    world.caplog.clear()
    world.texts.append(f"token {WRONG_SECRET}")
    with pytest.raises(AssertionError):
        world.assert_no_leaks(WRONG_SECRET)
    assert expected_tree(world.platform)  # the platform has data to copy


def test_ims_errors_echoing_the_secret_leak_it_nowhere(odd_world: Run) -> None:
    """IMS answers 500 and 429 whose bodies quote the secret, raw and URL-encoded;
    the retries log those answers, and the secret is blanked out of every form."""
    odd_world.platform.set_faults(
        FaultPlan(
            rules=[
                FaultRule("echo_secret", status=500, max_faults=1),
                FaultRule("echo_secret", status=429, max_faults=1),
            ]
        )
    )
    with odd_world.extractor(odd_world.source()) as extractor:
        report = extractor.run(DATASET, START, END)
    assert report.ok, str(report)
    assert odd_world.platform.faults_served["echo_secret"] == 2
    retries = [
        r.getMessage()
        for r in odd_world.caplog.records
        if r.name == "aep_extract._retry"
    ]
    assert len(retries) == 2
    assert all("***" in line for line in retries)
    odd_world.texts += [str(report), repr(report.to_dict())]
    odd_world.assert_no_leaks(*secret_forms(ODD_SECRET), *odd_world.tokens())


def test_an_ims_that_keeps_echoing_the_secret_fails_the_cli_without_it(
    odd_world: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd_world.platform.set_faults(FaultPlan(rules=[FaultRule("echo_secret")]))
    for name, value in odd_world.platform.env().items():
        monkeypatch.setenv(name, value)
    waits: list[float] = []  # the retries' backoff, recorded instead of slept
    with_waits = functools.partial(HttpAepSource.from_env, sleep=waits.append)
    monkeypatch.setattr(HttpAepSource, "from_env", with_waits)
    store = f"sqlite:///{odd_world.tmp_path / 'state.db'}"
    assert main(run_args(str(odd_world.tmp_path / "out"), store)) == 1
    assert len(waits) == RetryConfig().attempts - 1  # it retried, then gave up
    err = odd_world.capfd.readouterr().err
    odd_world.texts.append(err)
    assert "no IMS token" in err
    assert "***" in err
    odd_world.assert_no_leaks(*secret_forms(ODD_SECRET))
