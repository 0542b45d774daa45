"""The retry policy: what is retried, how long it waits, what it logs."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from aep_extract._retry import (
    THROTTLED,
    TRANSIENT,
    build_retrying,
    classify,
    parse_retry_after,
)
from aep_extract._run import RunScope, within
from aep_extract.config import RetryConfig
from aep_extract.errors import (
    ApiError,
    AuthError,
    IncompleteDownload,
    InvalidResponse,
    NotFoundError,
    ServerError,
    SinkError,
    ThrottledError,
    TransientNetworkError,
)

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


class Flaky:
    """Raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def server_error() -> ServerError:
    return ServerError("GET /x: HTTP 503", status=503)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date():
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=NOW) == pytest.approx(90.0)


@pytest.mark.parametrize(
    "value",
    [
        "Sat, 01 Jun 2024 12:01:30 GMT",  # IMF-fixdate, what servers send
        "Saturday, 01-Jun-24 12:01:30 GMT",  # obsolete RFC 850 form
        "Sat Jun  1 12:01:30 2024",  # obsolete asctime form
    ],
)
def test_parse_retry_after_accepts_every_http_date_form(value):
    assert parse_retry_after(value, now=NOW) == pytest.approx(90.0)


def test_parse_retry_after_date_in_the_past_is_zero():
    earlier = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(earlier, now=NOW) == 0.0


def test_parse_retry_after_date_defaults_to_system_clock():
    later = format_datetime(
        datetime.now(timezone.utc) + timedelta(seconds=300), usegmt=True
    )
    wait = parse_retry_after(later)
    assert wait is not None
    assert 290 < wait <= 300


@pytest.mark.parametrize(
    "error",
    [
        ThrottledError("429", retry_after=None),
        server_error(),
        TransientNetworkError("reset"),
        IncompleteDownload("short"),
    ],
)
def test_retryable_errors_are_retried(error):
    waits: list[float] = []
    fn = Flaky(error)
    assert build_retrying(RetryConfig(attempts=3), sleep=waits.append)(fn) == "ok"
    assert fn.calls == 2
    assert len(waits) == 1


@pytest.mark.parametrize(
    "error",
    [
        ApiError("400", status=400),
        ApiError("403", status=403),
        NotFoundError("404", status=404),
        AuthError("refused"),
        InvalidResponse("bad json"),
        ValueError("a bug"),
    ],
)
def test_other_errors_are_not_retried(error):
    waits: list[float] = []
    fn = Flaky(error)
    with pytest.raises(type(error)):
        build_retrying(RetryConfig(attempts=5), sleep=waits.append)(fn)
    assert fn.calls == 1
    assert waits == []


def test_gives_up_after_attempts_and_reraises_the_last_error():
    waits: list[float] = []
    last = ServerError("third", status=500)
    fn = Flaky(server_error(), server_error(), last, server_error())
    with pytest.raises(ServerError) as info:
        build_retrying(RetryConfig(attempts=3), sleep=waits.append)(fn)
    assert info.value is last
    assert fn.calls == 3
    assert len(waits) == 2


def test_backoff_is_jittered_exponential_and_capped():
    waits: list[float] = []
    config = RetryConfig(attempts=8, initial_wait=1.0, max_wait=5.0)
    fn = Flaky(*(server_error() for _ in range(7)))
    assert build_retrying(config, sleep=waits.append)(fn) == "ok"
    assert len(waits) == 7
    for n, wait in enumerate(waits):
        assert 0.0 <= wait <= min(1.0 * 2**n, 5.0)


def test_retry_after_is_honoured_exactly():
    waits: list[float] = []
    fn = Flaky(
        ThrottledError("429", retry_after=7.0), ThrottledError("429", retry_after=0)
    )
    config = RetryConfig(attempts=3, initial_wait=100.0, max_wait=60.0)
    assert build_retrying(config, sleep=waits.append)(fn) == "ok"
    assert waits == [7.0, 0.0]


def test_retry_after_is_capped_at_max_wait():
    waits: list[float] = []
    fn = Flaky(ThrottledError("429", retry_after=3600.0))
    config = RetryConfig(attempts=2, max_wait=30.0)
    build_retrying(config, sleep=waits.append)(fn)
    assert waits == [30.0]


def test_each_retry_is_logged_and_reported(caplog):
    waits: list[float] = []
    seen: list[int] = []
    fn = Flaky(TransientNetworkError("GET /data: ConnectionError: reset"))
    retrying = build_retrying(
        RetryConfig(attempts=2),
        sleep=waits.append,
        on_retry=lambda state: seen.append(state.attempt_number),
    )
    with caplog.at_level(logging.WARNING, logger="aep_extract._retry"):
        retrying(fn)
    assert seen == [1]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "TransientNetworkError" in record.getMessage()
    assert "GET /data: ConnectionError: reset" in record.getMessage()


def aws_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


def mapped(cause: BaseException) -> SinkError:
    """A store's or sink's error raised from a botocore error, as their mappers do."""
    try:
        raise SinkError("cannot write") from cause
    except SinkError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (ThrottledError("429"), THROTTLED),
        (server_error(), TRANSIENT),
        (mapped(aws_error("SlowDown", 503)), THROTTLED),
        (mapped(aws_error("ThrottlingException", 400)), THROTTLED),
        (mapped(aws_error("Whatever", 502)), TRANSIENT),
        (mapped(ConnectionClosedError(endpoint_url="http://s3")), TRANSIENT),
        (mapped(aws_error("AccessDenied", 403)), None),
        (SinkError("no cause"), None),
        (ApiError("400", status=400), None),
    ],
)
def test_classify_judges_aep_errors_and_mapped_aws_errors(error, verdict):
    assert classify(error) == verdict


def test_retries_and_throttles_are_counted_for_the_run():
    waits: list[float] = []
    fn = Flaky(
        ThrottledError("429", retry_after=1.0),
        mapped(aws_error("SlowDown", 503)),
        server_error(),
    )
    scope = RunScope()
    with within(scope):
        build_retrying(RetryConfig(attempts=4), sleep=waits.append)(fn)
    counters = scope.counters()
    assert (counters["retries"], counters["throttled"]) == (3, 2)


def test_an_aborting_run_stops_retrying_unless_told_otherwise():
    scope = RunScope()
    scope.abort.set()
    with within(scope):
        with pytest.raises(ServerError):
            build_retrying(RetryConfig(attempts=3), sleep=lambda s: None)(
                Flaky(server_error())
            )
        fn = Flaky(server_error())
        retrying = build_retrying(
            RetryConfig(attempts=3), sleep=lambda s: None, stop_on_abort=False
        )
        assert retrying(fn) == "ok"
