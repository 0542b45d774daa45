"""The fake AEP platform over real HTTP, exercised with plain ``requests``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests

from aep_extract.config import AepConfig
from aep_extract.models import parse_timestamp, to_epoch_ms
from aep_extract.testing import (
    FakeAepPlatform,
    FakeBatch,
    FakeDataSetFile,
    FakeFile,
    FakeRequest,
    pytest_plugin,
)

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
DS = "5e8f81cf7a4ecb28a8d85b22"
OTHER = "0a0a0a0a0a0a0a0a0a0a0a0a"
T0 = 1_718_000_000_000
# The plugin's fixtures, made visible to this module (pytest_plugins is root-only).
fake_aep = pytest_plugin.fake_aep
fake_aep_env = pytest_plugin.fake_aep_env

ODD_NAMES = (
    "part 0001+a.snappy.parquet",
    "a&b=c;d.parquet",
    "100% #1?.csv",
    "données é+ü.json",
)


@pytest.fixture(scope="module")
def demo() -> Iterator[FakeAepPlatform]:
    """The default generated platform, shared by read-only tests."""
    with FakeAepPlatform.generate() as platform:
        yield platform


def get(
    platform: FakeAepPlatform, path: str, http: Any = requests, **kwargs: Any
) -> requests.Response:
    """GET a platform path with valid headers (plus ``headers=`` overrides)."""
    headers = {**platform.auth_headers(), **kwargs.pop("headers", {})}
    url = path if path.startswith("http") else platform.url + path
    response: requests.Response = http.get(url, headers=headers, timeout=10, **kwargs)
    return response


def batch(
    batch_id: str, created: int, *, status: str = "success", **kw: Any
) -> FakeBatch:
    files = kw.pop("files", [FakeDataSetFile(f"{batch_id}-1", [FakeFile("f", b"x")])])
    return FakeBatch(batch_id, kw.pop("dataset", DS), status, created, files, **kw)


@pytest.fixture
def window_platform() -> Iterator[FakeAepPlatform]:
    """Batches around the window [T0, T0 + 1000) of DS, plus one of OTHER."""
    offsets = {"b0": -1, "b1": 0, "b2": 1, "b3": 999, "b4": 1000, "b5": 1001}
    batches = [batch(bid, T0 + offset) for bid, offset in offsets.items()]
    batches.append(batch("b6", T0 + 500, status="failed", files=[]))
    batches.append(batch("o1", T0 + 500, dataset=OTHER))
    datasets = {DS: {"name": "main"}, OTHER: {"name": "other"}}
    with FakeAepPlatform(datasets, batches) as platform:
        yield platform


def catalog_batches(platform: FakeAepPlatform, **params: Any) -> dict[str, Any]:
    response = get(platform, f"{CATALOG}/batches", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def follow(platform: FakeAepPlatform, url: str, http: Any = requests) -> list[Any]:
    """Every ``data`` item of a Data Access listing, following ``_links.next``."""
    items: list[Any] = []
    next_url: str | None = url
    while next_url:
        body = get(platform, next_url, http).json()
        items.extend(body["data"])
        next_url = body.get("_links", {}).get("next", {}).get("href")
    return items


def token_request(platform: FakeAepPlatform, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": platform.client_id,
        "client_secret": platform.client_secret,
        "scope": "openid,AdobeID",
    }
    form.update(overrides)
    data = {key: value for key, value in form.items() if value != "<absent>"}
    return requests.post(f"{platform.url}/ims/token/v3", data=data, timeout=10)


# -- IMS -----------------------------------------------------------------------------


def test_token_is_issued_and_accepted(window_platform: FakeAepPlatform) -> None:
    before = window_platform.tokens_issued
    response = token_request(window_platform)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    assert isinstance(body["access_token"], str)
    assert len(body["access_token"]) >= 20
    assert window_platform.tokens_issued == before + 1
    headers = {
        "Authorization": f"Bearer {body['access_token']}",
        "x-api-key": "fake-client",
        "x-gw-ims-org-id": "FAKEORG@AdobeOrg",
        "x-sandbox-name": "prod",
    }
    url = f"{window_platform.url}{CATALOG}/batches/b1"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200


def test_each_token_is_different(window_platform: FakeAepPlatform) -> None:
    tokens = {token_request(window_platform).json()["access_token"] for _ in range(3)}
    assert len(tokens) == 3


@pytest.mark.parametrize(
    ("overrides", "status", "error", "description"),
    [
        ({"client_id": "nope"}, 400, "invalid_client", "invalid client_id parameter"),
        ({"client_secret": "nope"}, 401, "invalid_client", None),
        ({"grant_type": "<absent>"}, 400, "invalid_request", None),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", None),
        ({"client_id": "<absent>"}, 400, "invalid_request", None),
        ({"scope": "<absent>"}, 400, "invalid_scope", None),
    ],
)
def test_token_refused(
    window_platform: FakeAepPlatform,
    overrides: dict[str, str],
    status: int,
    error: str,
    description: str | None,
) -> None:
    response = token_request(window_platform, **overrides)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    if description:
        assert response.json()["error_description"] == description
    assert window_platform.tokens_issued == 0


def test_token_request_in_query_string(window_platform: FakeAepPlatform) -> None:
    params = {
        "grant_type": "client_credentials",
        "client_id": "fake-client",
        "client_secret": "fake-secret",
        "scope": "openid",
    }
    url = f"{window_platform.url}/ims/token/v3"
    assert requests.post(url, params=params, timeout=10).status_code == 200


# -- gateway -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "status", "code"),
    [
        ("Authorization", None, 403, "403010"),
        ("Authorization", "Bearer not-a-token", 401, "401013"),
        ("Authorization", "Basic abc", 401, "401013"),
        ("x-api-key", None, 403, "403000"),
        ("x-api-key", "other-client", 403, "403003"),
        ("x-gw-ims-org-id", None, 400, "400003"),
        ("x-gw-ims-org-id", "OTHER@AdobeOrg", 403, "403025"),
    ],
)
def test_gateway_errors(
    window_platform: FakeAepPlatform,
    header: str,
    value: str | None,
    status: int,
    code: str,
) -> None:
    headers = window_platform.auth_headers()
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    url = f"{window_platform.url}{CATALOG}/batches"
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == status
    assert response.json() == {
        "error_code": code,
        "message": response.json()["message"],
    }
    assert response.json()["message"]
    assert window_platform.requests[-1].status == status


@pytest.mark.parametrize("sandbox", [None, "dev", "PROD"])
def test_wrong_or_missing_sandbox_is_forbidden(
    window_platform: FakeAepPlatform, sandbox: str | None
) -> None:
    headers = window_platform.auth_headers()
    if sandbox is None:
        del headers["x-sandbox-name"]
    else:
        headers["x-sandbox-name"] = sandbox
    url = f"{window_platform.url}{EXPORT}/batches/b1/files"
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 403
    assert response.json()["status"] == 403


def test_header_names_are_case_insensitive(window_platform: FakeAepPlatform) -> None:
    headers = {k.upper(): v for k, v in window_platform.auth_headers().items()}
    url = f"{window_platform.url}{CATALOG}/batches/b1"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200


def test_expire_tokens(window_platform: FakeAepPlatform) -> None:
    headers = window_platform.auth_headers()
    url = f"{window_platform.url}{CATALOG}/batches/b1"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    window_platform.expire_tokens()
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error_code"] == "401013"
    assert get(window_platform, f"{CATALOG}/batches/b1").status_code == 200


def test_token_ttl_is_enforced() -> None:
    with FakeAepPlatform({DS: {}}, token_ttl=0) as platform:
        token = token_request(platform).json()
        assert token["expires_in"] == 0
        response = get(platform, f"{CATALOG}/dataSets/{DS}")
        assert response.status_code == 401


# -- Catalog -------------------------------------------------------------------------


def test_window_bounds_are_strict(window_platform: FakeAepPlatform) -> None:
    body = catalog_batches(
        window_platform, dataSet=DS, createdAfter=T0, createdBefore=T0 + 1000
    )
    assert list(body) == ["b2", "b6", "b3"]
    body = catalog_batches(
        window_platform, dataSet=DS, createdAfter=T0 - 1, createdBefore=T0 + 1001
    )
    assert list(body) == ["b1", "b2", "b6", "b3", "b4"]


def test_dataset_and_status_filters(window_platform: FakeAepPlatform) -> None:
    everything = catalog_batches(window_platform, limit=100)
    assert set(everything) == {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "o1"}
    mine = catalog_batches(window_platform, dataSet=DS, limit=100)
    assert "o1" not in mine
    for obj in mine.values():
        assert {"type": "dataSet", "id": DS} in obj["relatedObjects"]
    assert list(catalog_batches(window_platform, dataSet=OTHER)) == ["o1"]
    assert list(catalog_batches(window_platform, dataSet=DS, status="failed")) == ["b6"]
    assert catalog_batches(window_platform, status="loading") == {}
    assert catalog_batches(window_platform, dataSet="unknown") == {}


def test_batch_shape(window_platform: FakeAepPlatform) -> None:
    obj = catalog_batches(window_platform, batch="b1")["b1"]
    assert obj["id"] == "b1"
    assert obj["status"] == "success"
    assert obj["created"] == T0
    assert obj["imsOrg"] == "FAKEORG@AdobeOrg"
    assert obj["updated"] >= obj["created"]
    assert obj["completed"] >= obj["started"] >= obj["created"]
    assert obj["errors"] == []
    assert obj["metrics"]["outputFileCount"] == 1
    assert obj["metrics"]["outputByteSize"] == 1
    assert all(isinstance(v, list) for v in obj["tags"].values())


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", ""])
def test_limit_out_of_range_is_400(
    window_platform: FakeAepPlatform, limit: str
) -> None:
    response = get(window_platform, f"{CATALOG}/batches", params={"limit": limit})
    assert response.status_code == 400
    problem = response.json()
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert "limit" in problem["detail"]
    assert problem["type"].startswith("https://ns.adobe.com/aep/errors/")


def test_default_limit_is_20_and_start_pages() -> None:
    with FakeAepPlatform.generate(batches=40, other_batches=0) as platform:
        assert len(catalog_batches(platform)) == 20
        assert len(catalog_batches(platform, limit=100)) == 42
        seen: list[str] = []
        start = 0
        while True:
            page = catalog_batches(
                platform, dataSet=DS, orderBy="asc:created", start=start, limit=7
            )
            seen.extend(page)
            if len(page) < 7:
                break
            start += 7
        expected = [b.batch_id for b in platform.batches_of(DS)]
        assert seen == expected
        assert catalog_batches(platform, start=1000) == {}
        response = get(platform, f"{CATALOG}/batches", params={"start": "-1"})
        assert response.status_code == 400


def test_order_by(window_platform: FakeAepPlatform) -> None:
    ascending = list(catalog_batches(window_platform, dataSet=DS, orderBy="created"))
    assert ascending == ["b0", "b1", "b2", "b6", "b3", "b4", "b5"]
    descending = catalog_batches(window_platform, dataSet=DS, orderBy="desc:created")
    assert list(descending) == ascending[::-1]
    by_id = catalog_batches(window_platform, orderBy="desc:id", limit=3)
    assert list(by_id) == ["o1", "b6", "b5"]
    response = get(window_platform, f"{CATALOG}/batches", params={"orderBy": "up:x"})
    assert response.status_code == 400


def test_properties(window_platform: FakeAepPlatform) -> None:
    body = catalog_batches(window_platform, dataSet=DS, properties="status, created")
    assert body["b1"] == {"status": "success", "created": T0}
    assert all(set(obj) == {"status", "created"} for obj in body.values())
    body = catalog_batches(window_platform, dataSet=DS, properties="metrics")
    assert body["b6"] == {}  # a failed batch has no metrics
    assert "outputByteSize" in body["b1"]["metrics"]
    body = catalog_batches(window_platform, properties="noSuchField")
    assert all(obj == {} for obj in body.values())
    assert len(body) == 8


def test_one_batch(window_platform: FakeAepPlatform) -> None:
    response = get(window_platform, f"{CATALOG}/batches/b3")
    assert response.status_code == 200
    assert list(response.json()) == ["b3"]
    assert response.json()["b3"]["created"] == T0 + 999
    missing = get(window_platform, f"{CATALOG}/batches/nope")
    assert missing.status_code == 404
    assert missing.json()["status"] == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")


def test_dataset(demo: FakeAepPlatform) -> None:
    response = get(demo, f"{CATALOG}/dataSets/{DS}")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [DS]
    dataset = body[DS]
    assert dataset["name"] == "Web events (demo)"
    assert dataset["files"] == f"@/dataSets/{DS}/views/{dataset['viewId']}/files"
    assert isinstance(dataset["created"], int)
    assert dataset["updated"] >= dataset["created"]
    batches = demo.batches_of(DS)
    assert dataset["lastBatchId"] == batches[-1].batch_id
    failed = [b.batch_id for b in batches if b.status == "failed"]
    assert dataset["lastFailedBatch"] == failed[-1]
    only = get(demo, f"{CATALOG}/dataSets/{DS}", params={"properties": "name"})
    assert only.json() == {DS: {"name": "Web events (demo)"}}
    assert get(demo, f"{CATALOG}/dataSets/nope").status_code == 404
    listing = get(demo, f"{CATALOG}/dataSets").json()
    assert set(listing) == set(demo.dataset_ids)


def test_dataset_classification(demo: FakeAepPlatform) -> None:
    # aepp's getDataSets reads classification.dataBehavior without a default.
    for dataset in get(demo, f"{CATALOG}/dataSets").json().values():
        assert dataset["classification"] == {
            "dataBehavior": "time-series",
            "managedBy": "CUSTOMER",
        }


def test_last_batches(window_platform: FakeAepPlatform) -> None:
    body = get(window_platform, f"{CATALOG}/lastBatches").json()
    assert set(body) == {DS, OTHER}
    main = body[DS]
    assert (main["lastBatchId"], main["lastBatchStatus"]) == ("b5", "success")
    assert (main["lastSuccessfulBatchId"], main["lastFailedBatchId"]) == ("b5", "b6")
    assert main["created"] == T0 + 1001
    assert main["imsOrg"] == window_platform.org_id
    assert "lastFailedBatchId" not in body[OTHER]
    for params, expected in [
        ({"dataSetId": f"{OTHER},{DS}"}, {DS, OTHER}),
        ({"dataSetId": OTHER}, {OTHER}),
        ({"lastFailedBatchId": "b6"}, {DS}),
        ({"lastBatchId": "o1", "lastBatchStatus": "success"}, {OTHER}),
        ({"lastBatchStatus": "failed"}, set()),
        ({"limit": "1", "orderBy": "desc:created"}, {DS}),
    ]:
        found = get(window_platform, f"{CATALOG}/lastBatches", params=params).json()
        assert set(found) == expected, params
    only = get(
        window_platform, f"{CATALOG}/lastBatches", params={"properties": "lastBatchId"}
    )
    assert only.json() == {DS: {"lastBatchId": "b5"}, OTHER: {"lastBatchId": "o1"}}


def test_last_batches_follow_changes(window_platform: FakeAepPlatform) -> None:
    window_platform.set_batch_status("b5", "failed")
    main = get(window_platform, f"{CATALOG}/lastBatches").json()[DS]
    assert main["lastBatchStatus"] == "failed"
    assert (main["lastSuccessfulBatchId"], main["lastFailedBatchId"]) == ("b4", "b5")


def test_dataset_overrides_are_served() -> None:
    datasets = {DS: {"name": "n", "description": "d", "tags": {"k": ["v"]}}}
    with FakeAepPlatform(datasets) as platform:
        body = get(platform, f"{CATALOG}/dataSets/{DS}").json()[DS]
        assert (body["name"], body["description"], body["tags"]) == (
            "n",
            "d",
            {"k": ["v"]},
        )


def test_unknown_route_and_method(window_platform: FakeAepPlatform) -> None:
    assert get(window_platform, f"{CATALOG}/nothing").status_code == 404
    assert get(window_platform, "/somewhere/else").status_code == 404
    url = f"{window_platform.url}{CATALOG}/batches"
    headers = window_platform.auth_headers()
    response = requests.post(url, headers=headers, json={}, timeout=10)
    assert response.status_code == 405


# -- Data Access: listings -----------------------------------------------------------


def test_batch_files_paging_over_100() -> None:
    with FakeAepPlatform.generate(
        batches=1, other_batches=0, files_per_batch=150, max_file_size=8
    ) as platform:
        first = platform.batches_of(DS)[1]  # [0] is the batch before the window
        url = f"{EXPORT}/batches/{first.batch_id}/files"
        page = get(platform, url).json()
        assert len(page["data"]) == 100
        assert page["_page"] == {"limit": 100, "count": 150}
        next_href = page["_links"]["next"]["href"]
        assert next_href == f"{platform.url}{url}?start=100&limit=100"
        second = get(platform, next_href).json()
        assert len(second["data"]) == 50
        assert "next" not in second.get("_links", {})
        ids = [item["dataSetFileId"] for item in follow(platform, url + "?limit=30")]
        assert ids == [node.dataset_file_id for node in first.dataset_files]
        item = page["data"][0]
        assert item["_links"]["self"]["href"] == (
            f"{platform.url}{EXPORT}/files/{item['dataSetFileId']}"
        )
        assert isinstance(item["created"], str)
        assert int(item["created"]) > first.created_ms
        assert len(get(platform, url, params={"limit": 500}).json()["data"]) == 100
        for bad in ("0", "x", "-5"):
            assert get(platform, url, params={"limit": bad}).status_code == 400
        assert get(platform, url, params={"start": "x"}).status_code == 400


def test_physical_files_paging_over_100() -> None:
    with FakeAepPlatform.generate(
        batches=1, other_batches=0, files_per_dataset_file=120, max_file_size=4
    ) as platform:
        first = platform.batches_of(DS)[1]
        node = first.dataset_files[0]
        url = f"{EXPORT}/files/{node.dataset_file_id}"
        page = get(platform, url).json()
        assert len(page["data"]) == 100
        assert page["_links"]["next"]["href"].endswith("?start=100&limit=100")
        items = follow(platform, url)
        assert [item["name"] for item in items] == [f.name for f in node.files]
        assert [item["length"] for item in items] == [str(f.length) for f in node.files]


def test_directory_dataset_file_recursion(demo: FakeAepPlatform) -> None:
    batch = next(
        b for b in demo.batches_of(DS) if any(n.is_directory for n in b.dataset_files)
    )
    found: list[tuple[str, str, bytes]] = []

    def walk(href: str) -> None:
        for item in follow(demo, href):
            if "dataSetFileId" in item:
                walk(item["_links"]["self"]["href"])
            else:
                leaf = href.rsplit("/", 1)[1]
                content = get(demo, item["_links"]["self"]["href"]).content
                assert len(content) == int(item["length"])
                found.append((leaf, item["name"], content))

    walk(f"{demo.url}{EXPORT}/batches/{batch.batch_id}/files")
    expected = [(leaf, f.name, f.content) for leaf, f in batch.leaf_files()]
    assert sorted(found) == expected
    depth = max(len(leaf.split("-")) for leaf, _, _ in found)
    assert depth >= 4  # {batch}-{n}-{k}-{j}: a directory inside a directory


def test_unknown_ids_are_404(demo: FakeAepPlatform) -> None:
    leaf = demo.expected_files(DS, 0, 2**62)[0][1]
    for path in (
        f"{EXPORT}/batches/nope/files",
        f"{EXPORT}/batches/nope/failed",
        f"{EXPORT}/files/nope",
        f"{EXPORT}/files/{leaf}?path=no-such-file",
    ):
        assert get(demo, path).status_code == 404, path


# -- Data Access: bytes --------------------------------------------------------------


@pytest.fixture
def bytes_platform() -> Iterator[FakeAepPlatform]:
    content = bytes(range(256)) * 4  # 1024 bytes
    files = [
        FakeFile("data.parquet", content),
        FakeFile("empty.parquet", b""),
        FakeFile("notes.txt", b"hello"),
    ]
    with FakeAepPlatform(
        {DS: {}}, [batch("b1", T0, files=[FakeDataSetFile("f1", files)])]
    ) as p:
        yield p


def file_url(name: str, dataset_file_id: str = "f1") -> str:
    return f"{EXPORT}/files/{dataset_file_id}?path={quote(name, safe='')}"


def test_whole_file(bytes_platform: FakeAepPlatform) -> None:
    response = get(bytes_platform, file_url("data.parquet"))
    assert response.status_code == 200
    assert response.content == bytes(range(256)) * 4
    assert response.headers["Content-Length"] == "1024"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Type"] == "application/parquet"
    assert "Content-Range" not in response.headers
    other = get(bytes_platform, file_url("notes.txt"))
    assert other.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-1023", 1000, 1023),
        ("bytes=1000-5000", 1000, 1023),
        ("bytes=512-", 512, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=-5000", 0, 1023),
        ("bytes=7-7", 7, 7),
    ],
)
def test_range(
    bytes_platform: FakeAepPlatform, header: str, first: int, last: int
) -> None:
    response = get(bytes_platform, file_url("data.parquet"), headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/1024"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == (bytes(range(256)) * 4)[first : last + 1]


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("data.parquet", "bytes=1024-"),
        ("data.parquet", "bytes=2000-3000"),
        ("data.parquet", "bytes=-0"),
        ("empty.parquet", "bytes=0-"),
    ],
)
def test_unsatisfiable_range_is_416(
    bytes_platform: FakeAepPlatform, name: str, header: str
) -> None:
    response = get(bytes_platform, file_url(name), headers={"Range": header})
    assert response.status_code == 416
    size = 1024 if name == "data.parquet" else 0
    assert response.headers["Content-Range"] == f"bytes */{size}"


@pytest.mark.parametrize("header", ["items=0-5", "bytes=5-2", "bytes=0-1,5-6", "junk"])
def test_unusable_range_is_ignored(
    bytes_platform: FakeAepPlatform, header: str
) -> None:
    response = get(bytes_platform, file_url("data.parquet"), headers={"Range": header})
    assert response.status_code == 200
    assert len(response.content) == 1024


def test_zero_byte_file(bytes_platform: FakeAepPlatform) -> None:
    response = get(bytes_platform, file_url("empty.parquet"))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "0"
    listing = get(bytes_platform, f"{EXPORT}/files/f1").json()["data"]
    assert {"name": "empty.parquet", "length": "0"}.items() <= listing[1].items()


def test_head(bytes_platform: FakeAepPlatform) -> None:
    headers = bytes_platform.auth_headers()
    url = bytes_platform.url + file_url("data.parquet")
    response = requests.head(url, headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "1024"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Type"] == "application/parquet"
    missing = bytes_platform.url + file_url("nope")
    assert requests.head(missing, headers=headers, timeout=10).status_code == 404
    # the connection stays usable after a HEAD (no body expected, none sent)
    with requests.Session() as http:
        for _ in range(3):
            assert http.head(url, headers=headers, timeout=10).status_code == 200
            assert len(http.get(url, headers=headers, timeout=10).content) == 1024


def test_large_file_streams_intact(demo: FakeAepPlatform) -> None:
    _, leaf, big = max(
        demo.expected_files(DS, 0, 2**62), key=lambda item: item[2].length
    )
    assert big.length >= 5 * 1024 * 1024
    with requests.get(
        demo.url + file_url(big.name, leaf),
        headers=demo.auth_headers(),
        stream=True,
        timeout=10,
    ) as response:
        digest = hashlib.sha256()
        for chunk in response.iter_content(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == big.sha256()


@pytest.mark.slow
def test_concurrent_downloads(demo: FakeAepPlatform) -> None:
    files = demo.expected_files(DS, 0, 2**62)
    errors: list[str] = []

    def fetch(leaf: str, file: FakeFile) -> None:
        with requests.Session() as http:
            got = get(demo, file_url(file.name, leaf), http).content
        if got != file.content:
            errors.append(file.name)

    threads = [threading.Thread(target=fetch, args=(leaf, f)) for _, leaf, f in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(threads) > 20


# -- failed batches ------------------------------------------------------------------


def test_failed_files(demo: FakeAepPlatform) -> None:
    failed = next(b for b in demo.batches_of(DS) if b.status == "failed")
    assert failed.failed_files
    url = f"{EXPORT}/batches/{failed.batch_id}/failed"
    body = get(demo, url).json()
    assert body["_page"]["count"] == len(failed.failed_files)
    for item, file in zip(body["data"], failed.failed_files):
        assert item["name"] == file.name
        assert item["length"] == str(file.length)
        href = item["_links"]["self"]["href"]
        assert href == f"{demo.url}{url}?path={quote(file.name, safe='')}"
        assert get(demo, href).content == file.content
    catalog = get(demo, f"{CATALOG}/batches/{failed.batch_id}").json()
    errors = catalog[failed.batch_id]["errors"]
    assert errors
    assert {"code", "description", "rows"} <= set(errors[0])
    assert get(demo, f"{EXPORT}/batches/{failed.batch_id}/files").json()["data"] == []
    good = demo.batches_of(DS)[1]
    assert get(demo, f"{EXPORT}/batches/{good.batch_id}/failed").json()["data"] == []


def test_batch_meta(demo: FakeAepPlatform) -> None:
    failed = next(b for b in demo.batches_of(DS) if b.status == "failed")
    url = f"{EXPORT}/batches/{failed.batch_id}/meta"
    (item,) = get(demo, url).json()["data"]
    assert item["name"] == "row_errors_sample.json"
    sample = get(demo, item["_links"]["self"]["href"])
    assert sample.headers["Content-Type"] == "application/json"
    assert sample.json() == [dict(error) for error in failed.errors]
    assert item["length"] == str(len(sample.content))
    assert get(demo, url, params={"path": "row_errors"}).status_code == 404
    good = demo.batches_of(DS)[1]
    assert (
        get(demo, f"{EXPORT}/batches/{good.batch_id}/meta?path={item['name']}").json()
        == []
    )
    assert get(demo, f"{EXPORT}/batches/nope/meta").status_code == 404


def expected_preview(platform: FakeAepPlatform) -> list[dict[str, str]]:
    """A row per file of DS's exportable batches, in listing order."""
    return [
        {
            "batchId": b.batch_id,
            "dataSetFileId": leaf_id,
            "name": file.name,
            "length": str(file.length),
        }
        for b in platform.batches_of(DS)
        if b.status in ("success", "active")
        for leaf_id, file in b.leaf_files()
    ]


def test_dataset_preview(demo: FakeAepPlatform) -> None:
    rows = get(demo, f"{EXPORT}/datasets/{DS}/preview").json()["data"]
    assert rows == expected_preview(demo)
    assert get(demo, f"{EXPORT}/datasets/nope/preview").status_code == 404


def test_dataset_preview_is_the_first_100_rows() -> None:
    with FakeAepPlatform.generate(
        batches=1, other_batches=0, files_per_batch=150, max_file_size=8
    ) as platform:
        rows = get(platform, f"{EXPORT}/datasets/{DS}/preview").json()["data"]
        expected = expected_preview(platform)
        assert len(expected) > 100
        assert rows == expected[:100]


# -- names ---------------------------------------------------------------------------


def test_odd_names_round_trip() -> None:
    files = [FakeFile(name, name.encode() * 3) for name in ODD_NAMES]
    node = FakeDataSetFile("id with space+plus", files)
    with FakeAepPlatform({DS: {}}, [batch("b1", T0, files=[node])]) as platform:
        listing = get(platform, f"{EXPORT}/batches/b1/files").json()["data"]
        href = listing[0]["_links"]["self"]["href"]
        assert href.endswith("/files/id%20with%20space%2Bplus")
        items = follow(platform, href)
        assert [item["name"] for item in items] == list(ODD_NAMES)
        for item, file in zip(items, files):
            link = item["_links"]["self"]["href"]
            assert "+" not in link.split("?path=", 1)[1]
            assert " " not in link
            assert get(platform, link).content == file.content
            by_params = get(platform, href, params={"path": file.name})
            assert by_params.content == file.content
        recorded = platform.requests[-1]
        assert recorded.query["path"] == files[-1].name
        assert recorded.path == f"{EXPORT}/files/id with space+plus"
        # an unencoded '+' in a query means a space: clients must send %2B
        raw = get(platform, f"{href}?path=part 0001+a.snappy.parquet")
        assert raw.status_code == 404


# -- generate ------------------------------------------------------------------------


def _digest(platform: FakeAepPlatform) -> str:
    digest = hashlib.sha256()
    for b in platform.batches:
        digest.update(f"{b.batch_id}|{b.dataset_id}|{b.status}|{b.created_ms}".encode())
        for leaf, file in b.leaf_files():
            digest.update(f"{leaf}|{file.name}|".encode() + bytes(file.content))
        for file in b.failed_files:
            digest.update(file.name.encode() + bytes(file.content))
    return digest.hexdigest()


def test_generate_is_deterministic() -> None:
    first, again = FakeAepPlatform.generate(seed=7), FakeAepPlatform.generate(seed=7)
    assert first.batches == again.batches
    assert _digest(first) == _digest(again)
    assert _digest(FakeAepPlatform.generate(seed=8)) != _digest(first)
    other = FakeAepPlatform.generate(seed=8).batches
    assert {b.batch_id for b in other}.isdisjoint({b.batch_id for b in first.batches})


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_generate_ignores_hash_randomization(hash_seed: str) -> None:
    code = (
        "from aep_extract.testing import FakeAepPlatform\n"
        "from tests.testing.test_fake_platform import _digest\n"
        "print(_digest(FakeAepPlatform.generate(seed=7)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == _digest(FakeAepPlatform.generate(seed=7))


def test_demo_layout(demo: FakeAepPlatform) -> None:
    start = to_epoch_ms(parse_timestamp(FakeAepPlatform.DEMO_START))
    end = to_epoch_ms(parse_timestamp(FakeAepPlatform.DEMO_END))
    assert FakeAepPlatform.DEMO_DATASET_ID == DS
    assert set(demo.dataset_ids) == {DS, FakeAepPlatform.DEMO_OTHER_DATASET_ID}
    main = demo.batches_of(DS)
    inside = [b for b in main if start <= b.created_ms < end]
    assert len(inside) == 12
    assert inside[0].created_ms == start
    assert {b.created_ms for b in main} >= {start - 1, end}
    statuses = [b.status for b in inside]
    assert statuses.count("failed") == statuses.count("loading") == 1
    assert statuses.count("aborted") == statuses.count("active") == 1
    assert statuses.count("success") == 8
    files = [f for b in main for _, f in b.leaf_files()]
    assert any(f.length == 0 for f in files)
    assert any(f.length >= 5 * 1024 * 1024 for f in files)
    assert any(" " in f.name and "+" in f.name for f in files)
    assert any(n.is_directory for b in main for n in b.dataset_files)
    other = demo.batches_of(FakeAepPlatform.DEMO_OTHER_DATASET_ID)
    assert other
    assert all(start <= b.created_ms < end for b in other)
    total = sum(b.size + sum(f.length for f in b.failed_files) for b in demo.batches)
    assert total < 12 * 1024 * 1024


def test_expected_files(demo: FakeAepPlatform) -> None:
    start = to_epoch_ms(parse_timestamp(FakeAepPlatform.DEMO_START))
    end = to_epoch_ms(parse_timestamp(FakeAepPlatform.DEMO_END))
    expected = demo.expected_files(DS, start, end)
    batches = [b for b in demo.batches_of(DS) if start <= b.created_ms < end]
    exportable = [b for b in batches if b.status in ("success", "active")]
    assert [b.batch_id for b, _, _ in expected] == [
        b.batch_id for b in exportable for _ in b.leaf_files()
    ]
    for b in exportable:
        keys = [(leaf, f.name) for bb, leaf, f in expected if bb is b]
        assert keys == sorted(keys)
    assert all(b.dataset_id == DS for b, _, _ in expected)
    assert all(start <= b.created_ms < end for b, _, _ in expected)
    failed = demo.expected_files(DS, start, end, statuses=("failed",))
    assert failed == []  # a failed batch's files are under /failed, not dataset files
    assert demo.expected_files(DS, start, start) == []


def test_generate_parameters() -> None:
    platform = FakeAepPlatform.generate(
        seed=1, batches=3, other_batches=0, large_file_size=0, max_file_size=10
    )
    assert len(platform.batches) == 5
    assert all(f.length <= 10 for b in platform.batches for _, f in b.leaf_files())
    with pytest.raises(ValueError, match="too short"):
        FakeAepPlatform.generate(start=T0, end=T0 + 5, batches=10)
    with pytest.raises(ValueError, match="batches >= 1"):
        FakeAepPlatform.generate(batches=0)


# -- model validation ----------------------------------------------------------------


def test_model_validation() -> None:
    leaf = FakeDataSetFile("x", [FakeFile("a", b"")])
    with pytest.raises(ValueError, match="both"):
        FakeDataSetFile("d", files=[FakeFile("a", b"")], children=[leaf])
    with pytest.raises(ValueError, match="duplicate"):
        FakeDataSetFile("d", [FakeFile("a", b""), FakeFile("a", b"1")])
    with pytest.raises(ValueError, match="status"):
        FakeBatch("b", DS, "succeeded", T0, [])
    with pytest.raises(ValueError, match="non-empty"):
        FakeFile("", b"")
    with pytest.raises(ValueError, match="unknown dataset"):
        FakeAepPlatform({}, [FakeBatch("b", DS, "success", T0, [])])
    with pytest.raises(ValueError, match="duplicate dataSetFileId"):
        FakeAepPlatform(
            {DS: {}},
            [
                FakeBatch("b1", DS, "success", T0, [leaf]),
                FakeBatch("b2", DS, "success", T0, [leaf]),
            ],
        )
    with pytest.raises(ValueError, match="duplicate batch"):
        FakeAepPlatform({DS: {}}, [batch("b", T0), batch("b", T0 + 1, files=[])])
    assert "<1 bytes>" in repr(FakeFile("a", b"1"))


# -- observation, faults, lifecycle --------------------------------------------------


def test_requests_are_recorded(window_platform: FakeAepPlatform) -> None:
    window_platform.clear_requests()
    get(window_platform, f"{CATALOG}/batches", params={"dataSet": DS, "limit": "5"})
    (recorded,) = window_platform.requests
    assert isinstance(recorded, FakeRequest)
    assert recorded.method == "GET"
    assert recorded.path == f"{CATALOG}/batches"
    assert recorded.query == {"dataSet": DS, "limit": "5"}
    assert recorded.headers["X-API-KEY"] == "fake-client"
    assert recorded.status == 200


def test_faults(window_platform: FakeAepPlatform) -> None:
    seen: list[str] = []

    def throttle(request: FakeRequest):
        seen.append(request.path)
        if request.path.endswith("/b1"):
            return 429, {"Retry-After": "1"}, b'{"message":"slow down"}'
        return None

    window_platform.add_fault(throttle)
    response = requests.get(f"{window_platform.url}{CATALOG}/batches/b1", timeout=10)
    assert response.status_code == 429  # faults run before the gateway checks
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"message": "slow down"}
    assert window_platform.requests[-1].status == 429
    assert get(window_platform, f"{CATALOG}/batches/b2").status_code == 200
    window_platform.clear_faults()
    assert get(window_platform, f"{CATALOG}/batches/b1").status_code == 200
    assert len(seen) == 2


def test_lifecycle() -> None:
    platform = FakeAepPlatform({DS: {}})
    with pytest.raises(RuntimeError):
        _ = platform.url
    assert "stopped" in repr(platform)
    platform.start()
    try:
        url = platform.url
        assert url.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError):
            platform.start()
        env = platform.env()
        assert env["AEP_PLATFORM_URL"] == env["AEP_IMS_URL"] == url
        assert env["AEP_CLIENT_ID"] == "fake-client"
        assert env["AEP_CLIENT_SECRET"] == "fake-secret"
        assert env["AEP_ORG_ID"] == "FAKEORG@AdobeOrg"
        assert env["AEP_SANDBOX"] == "prod"
        assert env["AEP_SCOPES"]
        config = AepConfig.from_env(env)
        assert (config.platform_url, config.ims_url) == (url, url)
        with requests.Session() as http:  # a kept-alive connection is closed by stop
            assert get(platform, f"{CATALOG}/dataSets/{DS}", http).status_code == 200
            platform.stop()
            with pytest.raises(requests.ConnectionError):
                http.get(f"{url}{CATALOG}/dataSets/{DS}", timeout=10)
    finally:
        platform.stop()
    assert not platform.running
    platform.stop()  # idempotent


def test_custom_credentials() -> None:
    with FakeAepPlatform(
        {DS: {}},
        client_id="id2",
        client_secret="s2",
        org_id="O@AdobeOrg",
        sandbox="dev",
    ) as platform:
        assert token_request(platform).status_code == 200
        headers = platform.auth_headers()
        assert headers["x-sandbox-name"] == "dev"
        assert get(platform, f"{CATALOG}/dataSets/{DS}").status_code == 200


def test_pytest_plugin_fixtures(
    fake_aep: FakeAepPlatform, fake_aep_env: dict[str, str]
) -> None:
    assert fake_aep.running
    assert os.environ["AEP_PLATFORM_URL"] == fake_aep.url == fake_aep_env["AEP_IMS_URL"]
    assert FakeAepPlatform.DEMO_DATASET_ID in fake_aep.dataset_ids
    assert get(fake_aep, f"{CATALOG}/dataSets/{DS}").status_code == 200


def test_public_names() -> None:
    import aep_extract.testing as kit

    assert sorted(kit.__all__) == sorted(set(kit.__all__))
    for name in kit.__all__:
        assert getattr(kit, name) is not None
    assert {"FakeAepPlatform", "FakeBatch", "FakeDataSetFile", "FakeFile"} <= set(
        kit.__all__
    )
