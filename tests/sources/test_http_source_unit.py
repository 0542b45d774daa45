"""HttpAepSource against a mocked platform (``responses``): requests sent, bytes
returned, errors raised."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import types
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from aep_extract.config import AepConfig, RetryConfig
from aep_extract.errors import (
    ApiError,
    AuthError,
    ConfigError,
    IncompleteDownload,
    InvalidResponse,
    NotFoundError,
    ServerError,
    SourceError,
    ThrottledError,
    Unauthorized,
)
from aep_extract.models import FileRef, TimeWindow
from aep_extract.sources.http import HttpAepSource

PLATFORM = "https://platform.test"
IMS = "https://ims.test"
CATALOG = f"{PLATFORM}/data/foundation/catalog"
EXPORT = f"{PLATFORM}/data/foundation/export"
SECRET = "p8e-SuperSecretValue-123"
DATASET = "ds-1"
WINDOW = TimeWindow.parse("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")


class FakeTime:
    """A monotonic clock that only ``sleep`` moves; every wait lands in ``waits``."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def make_source(waits: list[float], **overrides: Any) -> HttpAepSource:
    values: dict[str, Any] = {
        "client_id": "cid",
        "client_secret": SECRET,
        "org_id": "ORG@AdobeOrg",
        "sandbox": "dev1",
        "platform_url": PLATFORM,
        "ims_url": IMS,
        "connect_timeout": 3.0,
        "read_timeout": 7.0,
        "retry": RetryConfig(attempts=3, initial_wait=0.5, max_wait=60.0),
    }
    values.update(overrides)
    time = FakeTime(waits)
    return HttpAepSource(AepConfig(**values), sleep=time.sleep, clock=time.monotonic)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def source(rsps, waits):
    issue_tokens(rsps, "tok-1")
    src = make_source(waits)
    yield src
    src.close()


def issue_tokens(rsps, *tokens: str) -> None:
    for token in tokens:
        rsps.post(
            f"{IMS}/ims/token/v3", json={"access_token": token, "expires_in": 86399}
        )


def platform_calls(rsps) -> list[Any]:
    return [c for c in rsps.calls if c.request.url.startswith(PLATFORM)]


def query(call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def route(rsps, answers: dict[str, Any]) -> None:
    """Serve JSON answers keyed by "path?query" (exactly as requested) on PLATFORM."""

    def callback(request):
        parts = urlsplit(request.url)
        key = parts.path + (f"?{parts.query}" if parts.query else "")
        if key not in answers:
            return 404, {}, json.dumps({"message": f"no route {key}"})
        return 200, {}, json.dumps(answers[key])

    rsps.add_callback(responses.GET, re.compile(re.escape(PLATFORM) + r"/.*"), callback)


# -- headers, auth, errors ---------------------------------------------------------


def test_platform_calls_carry_auth_headers_timeouts_and_tls(rsps, source):
    rsps.get(f"{CATALOG}/dataSets/{DATASET}", json={DATASET: {"name": "Web"}})
    assert source.get_dataset(DATASET) == {"name": "Web"}
    [call] = platform_calls(rsps)
    headers = call.request.headers
    assert headers["Authorization"] == "Bearer tok-1"
    assert headers["x-api-key"] == "cid"
    assert headers["x-gw-ims-org-id"] == "ORG@AdobeOrg"
    assert headers["x-sandbox-name"] == "dev1"
    assert call.request.req_kwargs["timeout"] == (3.0, 7.0)


def test_verify_tls_is_passed_to_every_request(rsps, waits):
    issue_tokens(rsps, "tok-1")
    source = make_source(waits, verify_tls=False)
    rsps.get(f"{CATALOG}/dataSets/{DATASET}", json={DATASET: {}})
    source.get_dataset(DATASET)
    assert [c.request.req_kwargs["verify"] for c in rsps.calls] == [False, False]


def test_unknown_dataset_is_not_found_and_not_retried(rsps, source, waits):
    rsps.get(
        f"{CATALOG}/dataSets/nope",
        status=404,
        json={"title": "Not Found", "detail": "no such dataset"},
        headers={"x-request-id": "req-42"},
    )
    with pytest.raises(NotFoundError) as info:
        source.get_dataset("nope")
    text = str(info.value)
    assert "dataset nope not found" in text
    assert "no such dataset" in text
    assert "req-42" in text
    assert info.value.request_id == "req-42"
    assert len(platform_calls(rsps)) == 1
    assert waits == []


def test_401_refreshes_the_token_once_and_retries(rsps, waits):
    issue_tokens(rsps, "tok-1", "tok-2")
    source = make_source(waits)
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(
        url,
        status=401,
        json={"error_code": "401013", "message": "Oauth token is not valid"},
    )
    rsps.get(url, json={DATASET: {"name": "Web"}})
    assert source.get_dataset(DATASET) == {"name": "Web"}
    sent = [c.request.headers["Authorization"] for c in platform_calls(rsps)]
    assert sent == ["Bearer tok-1", "Bearer tok-2"]
    assert waits == []


def test_a_401_that_persists_through_every_retry_is_unauthorized(rsps, waits):
    issue_tokens(rsps, "tok-1", "tok-2", "tok-3")
    source = make_source(waits)
    rsps.get(f"{CATALOG}/dataSets/{DATASET}", status=401, json={"message": "nope"})
    with pytest.raises(Unauthorized) as info:
        source.get_dataset(DATASET)
    assert info.value.status == 401
    assert "tok-" not in str(info.value)
    assert "check the API key" in str(info.value)
    # Each of the 3 tries: a 401, a new token at once, a 401 again; then a wait.
    assert len(platform_calls(rsps)) == 6
    assert len(waits) == 2
    tokens = [c.request.headers["Authorization"] for c in platform_calls(rsps)]
    assert len(set(tokens)) == 3  # the IMS mock repeats its last token


def test_a_401_after_a_token_refresh_is_retried_with_yet_another_token(rsps, waits):
    issue_tokens(rsps, "tok-1", "tok-2", "tok-3")
    source = make_source(waits)
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, status=401, json={"message": "expired"})
    rsps.get(url, status=401, json={"message": "expired"})
    rsps.get(url, json={DATASET: {"name": "Web"}})
    assert source.get_dataset(DATASET) == {"name": "Web"}
    tokens = [c.request.headers["Authorization"] for c in platform_calls(rsps)]
    assert tokens == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-3"]
    assert len(waits) == 1


def test_refused_credentials_surface_as_auth_error(rsps, waits):
    rsps.post(
        f"{IMS}/ims/token/v3",
        status=401,
        json={"error": "invalid_client", "error_description": "invalid client_id"},
    )
    source = make_source(waits)
    with pytest.raises(AuthError) as info:
        source.get_dataset(DATASET)
    assert "invalid_client" in str(info.value)
    assert SECRET not in str(info.value)
    assert platform_calls(rsps) == []


def test_429_retry_after_seconds_is_honoured(rsps, source, waits):
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, status=429, headers={"Retry-After": "3"})
    rsps.get(url, json={DATASET: {}})
    source.get_dataset(DATASET)
    assert waits == [3.0]
    counters = source.counters()
    assert counters["throttled"] == 1
    assert counters["retries"] == 1
    assert counters["requests"] == 2


def test_429_retry_after_http_date_is_honoured(rsps, source, waits):
    url = f"{CATALOG}/dataSets/{DATASET}"
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    rsps.get(
        url, status=429, headers={"Retry-After": format_datetime(when, usegmt=True)}
    )
    rsps.get(url, json={DATASET: {}})
    source.get_dataset(DATASET)
    [wait] = waits
    assert 25 < wait <= 30


def test_429_without_retry_after_backs_off(rsps, source, waits):
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, status=429)
    rsps.get(url, json={DATASET: {}})
    source.get_dataset(DATASET)
    [wait] = waits
    assert 0 <= wait <= 0.5


def test_5xx_is_retried_then_raised(rsps, source, waits):
    rsps.get(
        f"{CATALOG}/dataSets/{DATASET}",
        status=503,
        json={"message": "too many calls"},
        headers={"x-request-id": "req-7"},
    )
    with pytest.raises(ServerError) as info:
        source.get_dataset(DATASET)
    text = str(info.value)
    assert "GET /data/foundation/catalog/dataSets/ds-1" in text
    assert "503" in text
    assert "too many calls" in text
    assert "req-7" in text
    assert "tok-1" not in text
    assert len(platform_calls(rsps)) == 3  # attempts=3
    assert len(waits) == 2


@pytest.mark.parametrize(
    ("status", "error"), [(400, ApiError), (403, ApiError), (404, NotFoundError)]
)
def test_client_errors_are_not_retried(rsps, source, waits, status, error):
    rsps.get(
        f"{CATALOG}/dataSets/{DATASET}",
        status=status,
        json={"type": "x", "title": "Bad", "status": status, "detail": "Invalid limit"},
    )
    with pytest.raises(error) as info:
        source.get_dataset(DATASET)
    assert info.value.status == status
    assert "Invalid limit" in str(info.value)
    assert len(platform_calls(rsps)) == 1
    assert waits == []


def test_connection_errors_are_retried(rsps, source, waits):
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, body=requests.ConnectionError("connection reset by peer"))
    rsps.get(url, json={DATASET: {"name": "Web"}})
    assert source.get_dataset(DATASET) == {"name": "Web"}
    assert len(waits) == 1


@pytest.mark.parametrize(
    ("message", "retried"),
    [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", False),
        ("[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred", True),
    ],
)
def test_tls_failures_are_retried_unless_the_certificate_is_bad(
    rsps, source, waits, message, retried
):
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, body=requests.exceptions.SSLError(message))
    rsps.get(url, json={DATASET: {}})
    if retried:
        source.get_dataset(DATASET)
        assert len(waits) == 1
    else:
        with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
            source.get_dataset(DATASET)
        assert waits == []


def test_requests_are_logged_at_debug_without_headers(rsps, source, caplog):
    rsps.get(f"{CATALOG}/dataSets/{DATASET}", json={DATASET: {}})
    with caplog.at_level(logging.DEBUG, logger="aep_extract.sources"):
        source.get_dataset(DATASET)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "GET /data/foundation/catalog/dataSets/ds-1 -> 200" in line for line in lines
    )
    assert not any("tok-1" in line or SECRET in line for line in lines)


def test_malformed_json_is_invalid_and_not_retried(rsps, source, waits):
    rsps.get(f"{CATALOG}/dataSets/{DATASET}", body="{not json")
    with pytest.raises(InvalidResponse):
        source.get_dataset(DATASET)
    assert waits == []


def test_repr_and_close(rsps, waits):
    source = make_source(waits)
    text = repr(source)
    for shown in (PLATFORM, "ORG@AdobeOrg", "dev1"):
        assert shown in text
    for hidden in (SECRET, "cid"):
        assert hidden not in text
    source.close()


def test_close_leaves_a_callers_session_open(rsps):
    session = requests.Session()
    closed: list[bool] = []
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    config = make_source([]).config
    HttpAepSource(config, session=session).close()
    assert closed == []


def test_from_env_passes_session_sleep_and_overrides(rsps):
    env = {
        "AEP_CLIENT_ID": "cid",
        "AEP_CLIENT_SECRET": SECRET,
        "AEP_ORG_ID": "ORG@AdobeOrg",
        "AEP_PLATFORM_URL": PLATFORM,
        "AEP_IMS_URL": IMS,
    }
    waits: list[float] = []
    source = HttpAepSource.from_env(env, sleep=waits.append, chunk_size=10)
    assert source.config.chunk_size == 10
    issue_tokens(rsps, "tok-1")
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, status=500)
    rsps.get(url, json={DATASET: {}})
    source.get_dataset(DATASET)
    assert len(waits) == 1
    with pytest.raises(ConfigError):
        HttpAepSource.from_env({})


# -- Catalog: batches ----------------------------------------------------------------


def batch(
    created: int, *, dataset: str = DATASET, status: str = "success"
) -> dict[str, Any]:
    return {
        "status": status,
        "created": created,
        "relatedObjects": [{"type": "dataSet", "id": dataset}],
        "errors": [],
    }


def serve_batches(rsps, pages: list[dict[str, Any]]) -> None:
    """Answer /catalog/batches with ``pages[start // 100]`` (query ignored)."""

    def callback(request):
        start = int(request.params["start"])
        page = pages[start // 100] if start // 100 < len(pages) else {}
        return 200, {}, json.dumps(page)

    rsps.add_callback(responses.GET, f"{CATALOG}/batches", callback=callback)


def serve_catalog(rsps, everything: dict[str, dict[str, Any]]) -> None:
    """Answer /catalog/batches as the Catalog does: strict created bounds, ordered
    by created (then id), ``start``/``limit`` over the result."""

    def callback(request):
        after = int(request.params["createdAfter"])
        before = int(request.params["createdBefore"])
        start, limit = int(request.params["start"]), int(request.params["limit"])
        rows = sorted(
            (
                item
                for item in everything.items()
                if after < item[1]["created"] < before
            ),
            key=lambda item: (item[1]["created"], item[0]),
        )
        return 200, {}, json.dumps(dict(rows[start : start + limit]))

    rsps.add_callback(responses.GET, f"{CATALOG}/batches", callback=callback)


def test_batches_page_through_every_page_with_the_right_query(rsps, source):
    base = WINDOW.start_ms
    everything = {f"b{i:03d}": batch(base + i) for i in range(250)}
    serve_catalog(rsps, everything)
    found = list(source.list_batches(DATASET, WINDOW))
    assert [b.batch_id for b in found] == list(everything)
    assert (found[0].created_ms, found[0].status) == (base, "success")
    assert found[0].dataset_id == DATASET
    calls = platform_calls(rsps)
    # Paged by time: each page starts after the newest batch of the last (less 1 ms).
    assert [query(c)["createdAfter"] for c in calls] == [
        str(base - 1),
        str(base + 98),
        str(base + 197),
    ]
    for call in calls:
        assert query(call) == {
            "dataSet": DATASET,
            "createdAfter": query(call)["createdAfter"],
            "createdBefore": str(WINDOW.end_ms),
            "limit": "100",
            "start": "0",
            "orderBy": "asc:created",
        }


def test_batches_at_the_page_boundary_millisecond_come_once(rsps, source):
    base = WINDOW.start_ms
    # Three batches share the millisecond where the first page ends.
    everything = {f"b{i:03d}": batch(base + min(i, 98)) for i in range(130)}
    serve_catalog(rsps, everything)
    ids = [b.batch_id for b in source.list_batches(DATASET, WINDOW)]
    assert ids == [f"b{i:03d}" for i in range(130)]


def test_a_full_page_in_one_millisecond_is_stepped_through_by_offset(rsps, source):
    base = WINDOW.start_ms
    everything = {f"b{i:03d}": batch(base) for i in range(150)}
    serve_catalog(rsps, everything)
    ids = [b.batch_id for b in source.list_batches(DATASET, WINDOW)]
    assert ids == sorted(everything)
    assert [query(c)["start"] for c in platform_calls(rsps)] == ["0", "100"]


def test_a_batch_leaving_the_listing_between_pages_loses_no_other(rsps, source):
    base = WINDOW.start_ms
    everything = {f"b{i:03d}": batch(base + i) for i in range(150)}
    calls = []

    def callback(request):
        calls.append(request)
        if len(calls) == 2:
            everything.pop("b000")  # compacted away after the first page was read
        after = int(request.params["createdAfter"])
        rows = sorted(
            (i for i in everything.items() if i[1]["created"] > after),
            key=lambda item: item[1]["created"],
        )
        start = int(request.params["start"])
        return 200, {}, json.dumps(dict(rows[start : start + 100]))

    rsps.add_callback(responses.GET, f"{CATALOG}/batches", callback=callback)
    ids = [b.batch_id for b in source.list_batches(DATASET, WINDOW)]
    assert ids == [f"b{i:03d}" for i in range(150)]


def test_batches_are_filtered_to_the_window_and_dataset(rsps, source):
    page = {
        "before": batch(WINDOW.start_ms - 1),
        "at-start": batch(WINDOW.start_ms),
        "inside": batch(WINDOW.start_ms + 5, status="someNewStatus"),
        "other-dataset": batch(WINDOW.start_ms + 6, dataset="ds-2"),
        "at-end": batch(WINDOW.end_ms),
    }
    serve_batches(rsps, [page])
    found = list(source.list_batches(DATASET, WINDOW, status="success"))
    assert [b.batch_id for b in found] == ["at-start", "inside"]
    assert found[1].status == "someNewStatus"  # unknown statuses pass through
    assert query(platform_calls(rsps)[0])["status"] == "success"


def test_batch_errors_and_raw_object_are_kept(rsps, source):
    obj = batch(WINDOW.start_ms, status="failed")
    obj["errors"] = [{"code": "101", "description": "bad row", "rows": ["1"]}]
    serve_batches(rsps, [{"b1": obj}])
    [found] = source.list_batches(DATASET, WINDOW)
    assert found.errors == ({"code": "101", "description": "bad row", "rows": ["1"]},)
    assert found.raw == obj


@pytest.mark.parametrize(
    "obj",
    [
        {"status": "success", "relatedObjects": []},
        {"status": "success", "created": "yesterday"},
        {"status": "success", "created": True},
        {"created": 1704067200000},
        {"created": 1704067200000, "status": 3},
        "not an object",
    ],
)
def test_malformed_batches_are_invalid_and_named(rsps, source, obj):
    serve_batches(rsps, [{"bad-batch": obj}])
    with pytest.raises(InvalidResponse, match="bad-batch"):
        list(source.list_batches(DATASET, WINDOW))


def test_non_object_batch_page_is_invalid(rsps, source):
    rsps.get(f"{CATALOG}/batches", json=[1, 2])
    with pytest.raises(InvalidResponse):
        list(source.list_batches(DATASET, WINDOW))


# -- Data Access: listings ---------------------------------------------------------


def dir_item(file_id: str) -> dict[str, Any]:
    return {
        "dataSetFileId": file_id,
        "dataSetViewId": "view",
        "version": "1.0.0",
        "created": "1558522305708",
        "isValid": True,
        "_links": {"self": {"href": f"{EXPORT}/files/{file_id}"}},
    }


def file_item(file_id: str, name: str, length: Any) -> dict[str, Any]:
    return {
        "name": name,
        "length": length,
        "_links": {"self": {"href": f"{EXPORT}/files/{file_id}?path={name}"}},
    }


def page(items: list[Any], next_href: Optional[str] = None) -> dict[str, Any]:
    body: dict[str, Any] = {"data": items, "_page": {"limit": 100, "count": len(items)}}
    if next_href is not None:
        body["_links"] = {"next": {"href": next_href}}
    return body


BATCH_FILES = "/data/foundation/export/batches/batch-1/files"


def test_list_files_follows_next_links_and_directories(rsps, source):
    route(
        rsps,
        {
            f"{BATCH_FILES}?limit=100": page(
                [dir_item("f-2"), dir_item("f-1")],
                next_href=f"{EXPORT}/batches/batch-1/files?start=2&limit=100",
            ),
            f"{BATCH_FILES}?start=2&limit=100": page([dir_item("f-3")]),
            "/data/foundation/export/files/f-1?limit=100": page(
                [
                    file_item("f-1", "part-b.parquet", "20"),
                    file_item("f-1", "part-a.parquet", "10"),
                ],
                next_href="/data/foundation/export/files/f-1?start=2&limit=100",
            ),
            "/data/foundation/export/files/f-1?start=2&limit=100": page(
                [file_item("f-1", "part-c.parquet", "0")]
            ),
            "/data/foundation/export/files/f-2?limit=100": page([dir_item("f-2a")]),
            "/data/foundation/export/files/f-2a?limit=100": page(
                [file_item("f-2a", "deep.parquet", "249058")]
            ),
            "/data/foundation/export/files/f-3?limit=100": page(
                [file_item("f-3", "x.json", "5")]
            ),
        },
    )
    files = source.list_files("batch-1")
    assert [(f.dataset_file_id, f.name, f.length) for f in files] == [
        ("f-1", "part-a.parquet", 10),
        ("f-1", "part-b.parquet", 20),
        ("f-1", "part-c.parquet", 0),
        ("f-2a", "deep.parquet", 249058),
        ("f-3", "x.json", 5),
    ]
    assert files[0].url == f"{EXPORT}/files/f-1?path=part-a.parquet"


def test_list_files_survives_a_directory_cycle(rsps, source):
    route(
        rsps,
        {
            f"{BATCH_FILES}?limit=100": page([dir_item("f-1")]),
            "/data/foundation/export/files/f-1?limit=100": page(
                [dir_item("f-1"), file_item("f-1", "a.parquet", "3")]
            ),
        },
    )
    assert [f.name for f in source.list_files("batch-1")] == ["a.parquet"]


def test_list_files_stops_a_looping_next_link(rsps, source):
    route(
        rsps,
        {
            f"{BATCH_FILES}?limit=100": page(
                [dir_item("f-1")], next_href=f"{BATCH_FILES}?start=1&limit=100"
            ),
            f"{BATCH_FILES}?start=1&limit=100": page(
                [dir_item("f-2")], next_href=f"{BATCH_FILES}?limit=100"
            ),
        },
    )
    with pytest.raises(InvalidResponse, match="loop"):
        source.list_files("batch-1")


def test_next_links_to_another_host_stay_on_the_platform(rsps, source):
    route(
        rsps,
        {
            f"{BATCH_FILES}?limit=100": page(
                [], next_href=f"https://elsewhere.example{BATCH_FILES}?start=1"
            ),
            f"{BATCH_FILES}?start=1": page([]),
        },
    )
    assert source.list_files("batch-1") == []
    assert all(c.request.url.startswith(PLATFORM) for c in rsps.calls[1:])
    # Two listing pages, then the Catalog entry of the empty batch (404 here).
    assert len(platform_calls(rsps)) == 3


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (file_item("f-1", "a.parquet", "12kB"), "length"),
        (file_item("f-1", "a.parquet", "-1"), "length"),
        (file_item("f-1", "a.parquet", None), "length"),
        (file_item("f-1", "", "3"), "name"),
        ({"something": "else"}, "dataSetFileId"),
    ],
)
def test_bad_file_items_are_invalid(rsps, source, item, message):
    route(
        rsps,
        {
            f"{BATCH_FILES}?limit=100": page([dir_item("f-1")]),
            "/data/foundation/export/files/f-1?limit=100": page([item]),
        },
    )
    with pytest.raises(InvalidResponse, match=message):
        source.list_files("batch-1")


def test_length_may_be_a_number(rsps, source):
    route(
        rsps,
        {
            f"{BATCH_FILES}?limit=100": page([dir_item("f-1")]),
            "/data/foundation/export/files/f-1?limit=100": page(
                [file_item("f-1", "a.parquet", 7)]
            ),
        },
    )
    assert [f.length for f in source.list_files("batch-1")] == [7]


@pytest.mark.parametrize("body", [{"no": "data"}, {"data": "x"}, {"data": [1]}, [1]])
def test_malformed_listing_is_invalid(rsps, source, body):
    route(rsps, {f"{BATCH_FILES}?limit=100": body})
    with pytest.raises(InvalidResponse):
        source.list_files("batch-1")


def test_list_failed_files(rsps, source):
    failed = "/data/foundation/export/batches/batch-9/failed"
    route(
        rsps,
        {
            f"{failed}?limit=100": page(
                [
                    {
                        "name": "part-0.json",
                        "length": "1800",
                        "_links": {
                            "self": {"href": f"{PLATFORM}{failed}?path=part-0.json"}
                        },
                    },
                    {"name": "_SUCCESS", "length": "0"},
                ],
                next_href=f"{failed}?start=2",
            ),
            f"{failed}?start=2": page([]),
        },
    )
    files = source.list_failed_files("batch-9")
    assert [(f.name, f.length, f.url) for f in files] == [
        ("_SUCCESS", 0, f"{PLATFORM}{failed}?path=_SUCCESS"),
        ("part-0.json", 1800, f"{PLATFORM}{failed}?path=part-0.json"),
    ]


# -- Data Access: bytes ------------------------------------------------------------

CONTENT = bytes(range(35))
FILE_URL = f"{EXPORT}/files/f-1?path=part-0.parquet"
Fault = Callable[[int, int, bytes, dict[str, str]], Any]


class FileServer:
    """Serves CONTENT by Range; ``faults`` replace answers in turn (None = normal)."""

    def __init__(
        self, content: bytes = CONTENT, faults: Optional[list[Optional[Fault]]] = None
    ):
        self.content = content
        self.faults = list(faults or [])
        self.ranges: list[Optional[str]] = []

    def __call__(self, request):
        header = request.headers.get("Range")
        self.ranges.append(header)
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", header)
        assert match is not None
        first, last = int(match[1]), int(match[2])
        last = min(last, len(self.content) - 1)
        body = self.content[first : last + 1]
        headers = {
            "Content-Range": f"bytes {first}-{last}/{len(self.content)}",
            "Content-Length": str(len(body)),
        }
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            return fault(first, last, body, headers)
        return 206, headers, body


def serve_file(rsps, server: FileServer) -> None:
    rsps.add_callback(
        responses.GET, re.compile(re.escape(f"{EXPORT}/files/") + ".*"), server
    )


def small_chunks(rsps, waits, chunk_size: int = 10) -> HttpAepSource:
    issue_tokens(rsps, "tok-1")
    return make_source(waits, chunk_size=chunk_size)


def ref(length: int = len(CONTENT), url: str = FILE_URL) -> FileRef:
    return FileRef(dataset_file_id="f-1", name="part-0.parquet", length=length, url=url)


def test_read_file_in_ranges_is_byte_identical(rsps, waits):
    source = small_chunks(rsps, waits)
    server = FileServer()
    serve_file(rsps, server)
    pieces = list(source.read_file(ref()))
    assert b"".join(pieces) == CONTENT
    assert all(len(p) <= 10 for p in pieces)
    assert server.ranges == ["bytes=0-9", "bytes=10-19", "bytes=20-29", "bytes=30-34"]
    call = platform_calls(rsps)[0]
    assert call.request.headers["Authorization"] == "Bearer tok-1"
    assert call.request.headers["Accept-Encoding"] == "identity"
    assert source.counters()["bytes"] == 35
    assert waits == []


def test_read_file_from_an_offset(rsps, waits):
    source = small_chunks(rsps, waits)
    server = FileServer()
    serve_file(rsps, server)
    assert b"".join(source.read_file(ref(), start=12)) == CONTENT[12:]
    assert server.ranges[0] == "bytes=12-21"


def truncated_keeping_length(first, last, body, headers):
    return 206, headers, body[:4]  # Content-Length still says 10


def truncated_without_length(first, last, body, headers):
    headers.pop("Content-Length")
    return 206, headers, body[:4]


@pytest.mark.parametrize("fault", [truncated_without_length, truncated_keeping_length])
def test_a_broken_body_resumes_from_the_last_byte_received(rsps, waits, fault):
    source = small_chunks(rsps, waits)
    server = FileServer(faults=[None, fault])
    serve_file(rsps, server)
    pieces = list(source.read_file(ref()))
    assert b"".join(pieces) == CONTENT
    # The 4 bytes that came are kept; the rest is asked for at once (progress was
    # made, so no backoff), with a fresh retry budget.
    assert server.ranges[:3] == ["bytes=0-9", "bytes=10-19", "bytes=14-23"]
    assert waits == []
    assert source.counters()["retries"] == 1


class _Resetting(io.RawIOBase):
    """A socket that delivers ``data`` and then is reset by the peer."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.data:
            raise ConnectionResetError("connection reset by peer")
        n = min(len(buffer), len(self.data))
        buffer[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def test_a_connection_reset_resumes_after_the_last_piece_yielded(rsps, waits):
    mib = 1024 * 1024
    content = bytes(i % 251 for i in range(3 * mib))
    source = small_chunks(rsps, waits, chunk_size=2 * mib)

    def reset_mid_second_piece(first, last, body, headers):
        return 206, headers, io.BufferedReader(_Resetting(body[: mib + 100]))

    server = FileServer(content, faults=[reset_mid_second_piece])
    serve_file(rsps, server)
    received = bytearray()
    for piece in source.read_file(ref(length=len(content))):
        received += piece
    assert received == content
    assert server.ranges == [
        f"bytes=0-{2 * mib - 1}",
        f"bytes={mib}-{3 * mib - 1}",  # the first MiB was yielded: not asked again
    ]
    assert waits == []  # progress was made: resumed at once


def test_resume_never_repeats_bytes_already_yielded(rsps, waits):
    source = small_chunks(rsps, waits)
    serve_file(rsps, FileServer(faults=[truncated_without_length] * 2))
    received = bytearray()
    for piece in source.read_file(ref()):
        received += piece
    assert bytes(received) == CONTENT


def test_a_body_that_stays_short_fails_after_the_attempts(rsps, waits):
    source = small_chunks(rsps, waits)
    server = FileServer(
        faults=[lambda a, b, body, h: (206, {"Content-Range": h["Content-Range"]}, b"")]
        * 5
    )
    serve_file(rsps, server)
    with pytest.raises(IncompleteDownload):
        list(source.read_file(ref()))
    assert len(server.ranges) == 3
    assert len(waits) == 2


def test_content_range_starting_elsewhere_is_retried(rsps, waits):
    source = small_chunks(rsps, waits)

    def wrong_start(first, last, body, headers):
        headers["Content-Range"] = f"bytes 5-14/{len(CONTENT)}"
        return 206, headers, CONTENT[5:15]

    server = FileServer(faults=[wrong_start])
    serve_file(rsps, server)
    assert b"".join(source.read_file(ref())) == CONTENT
    assert server.ranges[:2] == ["bytes=0-9", "bytes=0-9"]
    assert len(waits) == 1


def test_content_range_with_another_total_is_invalid(rsps, waits):
    source = small_chunks(rsps, waits)

    def other_total(first, last, body, headers):
        headers["Content-Range"] = f"bytes {first}-{last}/999"
        return 206, headers, body

    serve_file(rsps, FileServer(faults=[other_total]))
    with pytest.raises(InvalidResponse, match="999"):
        list(source.read_file(ref()))
    assert waits == []


def test_a_body_longer_than_announced_is_invalid_not_retried(rsps, waits):
    source = small_chunks(rsps, waits)

    def too_long(first, last, body, headers):
        headers.pop("Content-Length")
        return 206, headers, body + b"EXTRA"

    serve_file(rsps, FileServer(faults=[too_long]))
    with pytest.raises(InvalidResponse, match="longer than"):
        b"".join(source.read_file(ref()))
    assert source.counters()["retries"] == 0


def test_whole_body_200_is_accepted_from_byte_zero(rsps, waits):
    source = small_chunks(rsps, waits)
    serve_file(rsps, FileServer(faults=[lambda a, b, body, h: (200, {}, CONTENT)]))
    assert b"".join(source.read_file(ref())) == CONTENT
    assert len(platform_calls(rsps)) == 1


def test_whole_body_200_is_refused_after_byte_zero(rsps, waits):
    source = small_chunks(rsps, waits)
    serve_file(rsps, FileServer(faults=[lambda a, b, body, h: (200, {}, CONTENT)]))
    with pytest.raises(InvalidResponse, match="Range"):
        list(source.read_file(ref(), start=10))


def test_whole_body_200_of_another_length_is_invalid(rsps, waits):
    source = small_chunks(rsps, waits)

    def shorter_file(first, last, body, headers):
        return 200, {"Content-Length": "30"}, CONTENT[:30]

    serve_file(rsps, FileServer(faults=[shorter_file]))
    with pytest.raises(InvalidResponse, match="Content-Length 30"):
        list(source.read_file(ref()))


def test_server_errors_during_a_read_are_retried(rsps, waits):
    source = small_chunks(rsps, waits)
    server = FileServer(faults=[None, lambda a, b, body, h: (503, {}, b"")])
    serve_file(rsps, server)
    assert b"".join(source.read_file(ref())) == CONTENT
    assert server.ranges[:3] == ["bytes=0-9", "bytes=10-19", "bytes=10-19"]


def test_missing_file_is_not_found(rsps, waits):
    source = small_chunks(rsps, waits)
    serve_file(rsps, FileServer(faults=[lambda a, b, body, h: (404, {}, b"")]))
    with pytest.raises(NotFoundError):
        list(source.read_file(ref()))
    assert waits == []


def test_zero_length_file_sends_no_request(rsps, waits):
    source = small_chunks(rsps, waits)
    assert list(source.read_file(ref(length=0))) == []
    assert list(source.read_file(ref(), start=35)) == []
    assert len(rsps.calls) == 0


def test_start_outside_the_file_is_refused(rsps, waits):
    source = small_chunks(rsps, waits)
    with pytest.raises(ConfigError):
        list(source.read_file(ref(), start=36))


def test_url_is_built_when_the_listing_gave_none(rsps, waits):
    source = small_chunks(rsps, waits, chunk_size=100)
    serve_file(rsps, FileServer())
    file = FileRef(dataset_file_id="f 1", name="a b/c.parquet", length=35)
    assert b"".join(source.read_file(file)) == CONTENT
    [call] = platform_calls(rsps)
    assert call.request.url == f"{EXPORT}/files/f%201?path=a%20b%2Fc.parquet"


def test_pieces_are_at_most_one_mebibyte(rsps, waits):
    content = bytes(3 * 1024 * 1024 + 5)
    source = small_chunks(rsps, waits, chunk_size=4 * 1024 * 1024)
    serve_file(rsps, FileServer(content))
    sizes = [len(p) for p in source.read_file(ref(length=len(content)))]
    assert sum(sizes) == len(content)
    assert max(sizes) <= 1024 * 1024
    assert len(platform_calls(rsps)) == 1


# -- rate limiting ------------------------------------------------------------------


def test_every_permit_is_given_back_after_answers_and_errors(rsps, waits):
    source = small_chunks(rsps, waits)
    serve_file(rsps, FileServer())
    rsps.get(f"{CATALOG}/dataSets/{DATASET}", json={DATASET: {}})
    rsps.get(f"{CATALOG}/dataSets/gone", status=404)
    rsps.get(f"{CATALOG}/dataSets/down", body=requests.ConnectionError("refused"))
    source.get_dataset(DATASET)
    assert b"".join(source.read_file(ref())) == CONTENT
    with pytest.raises(NotFoundError):
        source.get_dataset("gone")
    with pytest.raises(SourceError):
        source.get_dataset("down")
    assert source.rate_limiter.in_flight == 0


def test_a_download_holds_its_slot_until_its_range_is_read_or_closed(rsps, waits):
    source = small_chunks(rsps, waits, chunk_size=20)
    serve_file(rsps, FileServer())
    pieces = source.read_file(ref())
    assert isinstance(pieces, types.GeneratorType)
    assert len(next(pieces)) == 20  # suspended in the middle of the first range
    assert source.rate_limiter.in_flight == 1
    pieces.close()
    assert source.rate_limiter.in_flight == 0


def test_a_401_refresh_gives_back_both_slots(rsps, waits, caplog):
    issue_tokens(rsps, "tok-1", "tok-2")
    source = make_source(waits)
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, status=401, json={"message": "Oauth token is not valid"})
    rsps.get(url, json={DATASET: {}})
    with caplog.at_level(logging.INFO, logger="aep_extract.sources"):
        source.get_dataset(DATASET)
    assert source.rate_limiter.in_flight == 0
    assert "-> 401: fetching a new token" in caplog.text


def test_a_429_cuts_the_rate_and_other_errors_do_not(rsps, source):
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, status=500)
    rsps.get(url, status=502)
    rsps.get(url, json={DATASET: {}})
    source.get_dataset(DATASET)
    assert source.rate_limiter.slow_start  # 500 and 502 cut nothing
    before = source.rate_limiter.rate  # grown by a success at most (it is unused)
    assert 50.0 <= before < 51.0
    rsps.get(f"{CATALOG}/dataSets/x", status=429)
    rsps.get(f"{CATALOG}/dataSets/x", json={"x": {}})
    source.get_dataset("x")
    assert not source.rate_limiter.slow_start
    # A client sending a trickle is cut from its rate, not from the trickle.
    assert 0.7 * before <= source.rate_limiter.rate < 0.7 * before + 1.0
    assert source.counters()["throttled"] == 1


def test_a_503_with_retry_after_cuts_the_rate_and_pauses(rsps, source, waits):
    url = f"{CATALOG}/dataSets/{DATASET}"
    rsps.get(url, status=503, headers={"Retry-After": "10"})
    rsps.get(url, json={DATASET: {}})
    source.get_dataset(DATASET)
    # The retry's own backoff (at most 0.5 s), then the rest of the pause.
    backoff, rest = waits
    assert backoff <= 0.5
    assert backoff + rest == pytest.approx(10.0)
    assert source.rate_limiter.rate < 50.0
    assert source.counters()["throttled"] == 0  # only 429s count as throttled


def test_retry_after_holds_the_next_request_of_any_kind(rsps, waits):
    issue_tokens(rsps, "tok-1")
    source = make_source(waits, retry=RetryConfig(attempts=1))
    rsps.get(f"{CATALOG}/dataSets/a", status=429, headers={"Retry-After": "7"})
    rsps.get(f"{CATALOG}/dataSets/b", json={"b": {}})
    with pytest.raises(ThrottledError):
        source.get_dataset("a")  # no retry left: this request waits no more
    assert waits == []
    source.get_dataset("b")  # another request, but the pause holds it too
    assert waits == [7.0]


def test_token_requests_are_not_held_by_a_pause(rsps, waits):
    clock = FakeTime(waits)
    times: dict[str, float] = {}

    def token(request):
        times["token"] = clock.now
        return 200, {}, json.dumps({"access_token": "tok-1", "expires_in": 86399})

    def dataset(request):
        times["platform"] = clock.now
        return 200, {}, json.dumps({DATASET: {}})

    rsps.add_callback(responses.POST, f"{IMS}/ims/token/v3", token)
    rsps.add_callback(responses.GET, f"{CATALOG}/dataSets/{DATASET}", dataset)
    config = make_source([]).config
    source = HttpAepSource(config, sleep=clock.sleep, clock=clock.monotonic)
    source.rate_limiter.pause(20.0)
    source.get_dataset(DATASET)
    assert times == {"token": 1000.0, "platform": 1020.0}


def test_max_in_flight_bounds_platform_requests(rsps, waits):
    issue_tokens(rsps, "tok-1")
    source = make_source(waits, chunk_size=10, max_in_flight=1)
    serve_file(rsps, FileServer())
    rsps.get(f"{CATALOG}/dataSets/{DATASET}", json={DATASET: {}})
    pieces = source.read_file(ref())
    assert isinstance(pieces, types.GeneratorType)
    next(pieces)  # the only slot is held by this suspended download
    answers: list[Any] = []
    thread = threading.Thread(
        target=lambda: answers.append(source.get_dataset(DATASET))
    )
    thread.start()
    thread.join(0.05)
    assert answers == []  # blocked: nothing was sent
    assert len(platform_calls(rsps)) == 1
    pieces.close()
    thread.join(10)
    assert answers == [{}]
    assert source.rate_limiter.in_flight == 0
