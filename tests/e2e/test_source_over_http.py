"""The real HTTP client against the fake platform: auth, headers, paging, ranges."""

from __future__ import annotations

import time

import pytest

from aep_extract import AuthError, HttpAepSource, NotFoundError, TimeWindow
from aep_extract.testing import FakeAepPlatform, FakeBatch, FakeDataSetFile, FakeFile

from .helpers import DATASET, END, START

PLATFORM_HEADERS = ("authorization", "x-api-key", "x-gw-ims-org-id", "x-sandbox-name")


def platform_requests(platform: FakeAepPlatform) -> list:  # type: ignore[type-arg]
    return [r for r in platform.requests if not r.path.startswith("/ims/")]


def test_token_is_fetched_once_and_headers_sent_on_every_call(fake_aep):
    source = HttpAepSource.from_env(fake_aep.env())
    batches = list(source.list_batches(DATASET, TimeWindow.parse(START, END)))
    for batch in batches[:3]:
        for file in source.list_files(batch.batch_id):
            b"".join(source.read_file(file))
    assert fake_aep.tokens_issued == 1
    calls = platform_requests(fake_aep)
    assert len(calls) > 10
    for request in calls:
        for header in PLATFORM_HEADERS:
            assert request.headers.get(header), f"{header} missing on {request.path}"
        assert request.headers["x-api-key"] == fake_aep.client_id
        assert request.headers["x-gw-ims-org-id"] == fake_aep.org_id
        assert request.headers["x-sandbox-name"] == "prod"
        assert request.status < 400


def test_token_refreshed_once_after_revocation(fake_aep):
    source = HttpAepSource.from_env(fake_aep.env())
    source.get_dataset(DATASET)
    fake_aep.expire_tokens()
    assert source.get_dataset(DATASET)["name"]
    assert fake_aep.tokens_issued == 2
    statuses = [r.status for r in platform_requests(fake_aep)]
    assert statuses == [200, 401, 200]


def test_token_refreshed_before_expiry():
    with FakeAepPlatform.generate(token_ttl=1) as platform:
        source = HttpAepSource.from_env(platform.env())
        source.get_dataset(DATASET)
        source.get_dataset(DATASET)
        assert platform.tokens_issued == 1
        time.sleep(0.6)  # past half the 1 s lifetime: the client renews first
        source.get_dataset(DATASET)
        assert platform.tokens_issued == 2
        assert all(r.status == 200 for r in platform_requests(platform))


def test_wrong_secret_is_an_auth_error_without_the_secret(fake_aep):
    env = dict(fake_aep.env(), AEP_CLIENT_SECRET="wrong-secret-123")
    with pytest.raises(AuthError) as caught:
        HttpAepSource.from_env(env).get_dataset(DATASET)
    assert "wrong-secret-123" not in str(caught.value)
    assert "invalid_client" in str(caught.value)


def test_unknown_dataset_is_not_found(fake_aep):
    with pytest.raises(NotFoundError, match="nope"):
        HttpAepSource.from_env(fake_aep.env()).get_dataset("nope")


def test_catalog_paging_over_250_batches():
    with FakeAepPlatform.generate(
        batches=250, files_per_batch=1, max_file_size=16, large_file_size=16
    ) as platform:
        source = HttpAepSource.from_env(platform.env())
        window = TimeWindow.parse(START, END)
        found = list(source.list_batches(DATASET, window))
        expected = {
            b.batch_id
            for b in platform.batches_of(DATASET)
            if window.contains_ms(b.created_ms)
        }
        assert {b.batch_id for b in found} == expected
        assert len(found) == len(expected) > 200
        pages = [
            r.query for r in platform.requests if r.path.endswith("/catalog/batches")
        ]
        assert len(pages) == 3  # paged by time, 100 a page
        assert int(pages[0]["createdAfter"]) == window.start_ms - 1
        afters = [int(p["createdAfter"]) for p in pages]
        assert afters == sorted(afters)
        for query in pages:
            assert query["start"] == "0"
            assert query["limit"] == "100"
            assert query["dataSet"] == DATASET
            assert query["orderBy"] == "asc:created"
            assert int(query["createdBefore"]) == window.end_ms


def test_window_edges_and_other_datasets(fake_aep):
    source = HttpAepSource.from_env(fake_aep.env())
    window = TimeWindow.parse(START, END)
    found = {b.batch_id: b for b in source.list_batches(DATASET, window)}
    for batch in fake_aep.batches:
        inside = batch.dataset_id == DATASET and window.contains_ms(batch.created_ms)
        assert (batch.batch_id in found) == inside
    assert any(b.created_ms == window.start_ms for b in found.values())
    assert any(b.created_ms == window.end_ms for b in fake_aep.batches_of(DATASET))


def test_more_than_100_files_in_a_batch_and_nested_directories():
    files = [
        FakeDataSetFile(
            f"b1-{i:03d}", files=[FakeFile(f"part {i}+x.parquet", b"x" * i)]
        )
        for i in range(150)
    ]
    nested = FakeDataSetFile(
        "b1-dir",
        children=[
            FakeDataSetFile("b1-dir-a", files=[FakeFile("a.parquet", b"a")]),
            FakeDataSetFile(
                "b1-dir-b",
                children=[FakeDataSetFile("b1-dir-b-c", files=[FakeFile("c", b"c")])],
            ),
        ],
    )
    batch = FakeBatch(
        batch_id="b1",
        dataset_id="ds",
        status="success",
        created_ms=1_718_000_000_000,
        dataset_files=[*files, nested],
    )
    with FakeAepPlatform({"ds": {"name": "ds"}}, [batch]) as platform:
        listed = HttpAepSource.from_env(platform.env()).list_files("b1")
    assert len(listed) == 152
    assert [f.sort_key for f in listed] == sorted(f.sort_key for f in listed)
    assert {(f.dataset_file_id, f.name) for f in listed} == {
        (leaf, f.name) for leaf, f in batch.leaf_files()
    }
    pages = [
        r.query.get("start", "0")
        for r in platform.requests
        if r.path == "/data/foundation/export/batches/b1/files"
    ]
    assert pages == ["0", "100"]


def test_ranged_download_is_byte_identical(fake_aep):
    source = HttpAepSource.from_env(fake_aep.env(), chunk_size=1024 * 1024)
    batches = fake_aep.batches_of(DATASET)
    large = max(
        ((b, leaf, f) for b in batches for leaf, f in b.leaf_files()),
        key=lambda item: item[2].length,
    )
    batch, leaf, fake = large
    assert fake.length > 4 * 1024 * 1024
    ref = next(
        f
        for f in source.list_files(batch.batch_id)
        if (f.dataset_file_id, f.name) == (leaf, fake.name)
    )
    fake_aep.clear_requests()
    assert b"".join(source.read_file(ref)) == fake.content
    ranges = [r.headers["range"] for r in fake_aep.requests if "range" in r.headers]
    chunks = -(-fake.length // (1024 * 1024))
    assert len(ranges) == chunks
    assert ranges[0] == "bytes=0-1048575"
    assert all(r.status == 206 for r in fake_aep.requests)
    # resuming from an offset reads only the tail
    assert b"".join(source.read_file(ref, start=fake.length - 10)) == fake.content[-10:]


def test_zero_byte_file_needs_no_download(fake_aep):
    source = HttpAepSource.from_env(fake_aep.env())
    empty = [
        (b, leaf, f)
        for b in fake_aep.batches_of(DATASET)
        for leaf, f in b.leaf_files()
        if f.length == 0
    ]
    assert empty
    batch, _, fake = empty[0]
    ref = next(f for f in source.list_files(batch.batch_id) if f.name == fake.name)
    assert ref.length == 0
    fake_aep.clear_requests()
    assert list(source.read_file(ref)) == []
    assert fake_aep.requests == []
