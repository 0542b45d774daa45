"""The fake's kit for big files: bytes served, per-connection bandwidth, lazy files."""

from __future__ import annotations

import random
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import quote

import pytest
import requests

from aep_extract.testing import (
    FakeAepPlatform,
    FakeBatch,
    FakeDataSetFile,
    FakeFile,
    FaultPlan,
    FaultRule,
    GeneratedBytes,
)

DS = "5e8f81cf7a4ecb28a8d85b22"
T0 = 1_718_000_000_000
MiB = 1024 * 1024
GiB = 1024 * MiB
CONTENT = bytes(range(256)) * 4096  # 1 MiB


def platform_with(
    *files: FakeFile, bandwidth: Optional[float] = None, faults: Any = None
) -> FakeAepPlatform:
    batch = FakeBatch("b1", DS, "success", T0, [FakeDataSetFile("f1", files)])
    return FakeAepPlatform({DS: {}}, [batch], bandwidth=bandwidth, faults=faults)


def file_url(platform: FakeAepPlatform, name: str, file_id: str = "f1") -> str:
    path = quote(name, safe="")
    return f"{platform.url}/data/foundation/export/files/{file_id}?path={path}"


def fetch(
    platform: FakeAepPlatform,
    name: str,
    span: Optional[str] = None,
    http: Any = requests,
    file_id: str = "f1",
) -> requests.Response:
    headers = platform.auth_headers()
    if span is not None:
        headers["Range"] = f"bytes={span}"
    response: requests.Response = http.get(
        file_url(platform, name, file_id), headers=headers, timeout=30
    )
    return response


def downloads(platform: FakeAepPlatform) -> list[Any]:
    return [r for r in platform.requests if "path" in r.query]


# -- bytes served --------------------------------------------------------------------


@pytest.fixture
def files_platform() -> Iterator[FakeAepPlatform]:
    files = (FakeFile("a.parquet", CONTENT), FakeFile("empty.parquet", b""))
    with platform_with(*files) as platform:
        yield platform


def test_bytes_served_counts_file_content_only(files_platform: FakeAepPlatform) -> None:
    platform = files_platform
    assert platform.bytes_served == 0
    assert fetch(platform, "a.parquet").content == CONTENT
    assert fetch(platform, "a.parquet", "100-199").content == CONTENT[100:200]
    assert fetch(platform, "a.parquet", "-7").content == CONTENT[-7:]
    assert fetch(platform, "empty.parquet").content == b""
    head = requests.head(
        file_url(platform, "a.parquet"), headers=platform.auth_headers(), timeout=10
    )
    assert head.headers["Content-Length"] == str(len(CONTENT))
    listing = requests.get(  # a listing is JSON, not a file's content
        f"{platform.url}/data/foundation/export/files/f1",
        headers=platform.auth_headers(),
        timeout=10,
    )
    assert listing.json()["data"]
    assert platform.bytes_served == len(CONTENT) + 100 + 7
    assert platform.reset_bytes_served() == len(CONTENT) + 107
    assert platform.bytes_served == 0
    fetch(platform, "a.parquet", "0-9")
    assert platform.bytes_served == 10


def test_bytes_served_survives_a_restart(files_platform: FakeAepPlatform) -> None:
    fetch(files_platform, "a.parquet", "0-99")
    files_platform.stop()
    files_platform.start()
    fetch(files_platform, "a.parquet", "0-99")
    assert files_platform.bytes_served == 200


def test_concurrent_downloads_are_counted_exactly(
    files_platform: FakeAepPlatform,
) -> None:
    spans = [(first, first + 4096 * (n + 1) - 1) for n, first in enumerate(range(16))]
    errors: list[BaseException] = []

    def worker(spans: list[tuple[int, int]]) -> None:
        with requests.Session() as http:
            for first, last in spans:
                span = f"{first}-{last}"
                body = fetch(files_platform, "a.parquet", span, http).content
                if body != CONTENT[first : last + 1]:
                    errors.append(AssertionError((first, last)))

    threads = [threading.Thread(target=worker, args=(spans[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert files_platform.bytes_served == sum(last + 1 - first for first, last in spans)


def fetch_cut_short(platform: FakeAepPlatform, name: str) -> None:
    """Fetch a file whose body the fake cuts short; the client must not get it
    whole. urllib3 2 raises; urllib3 1.26 (what Python 3.9 gets with boto3 here)
    hands the short body back."""
    try:
        response = fetch(platform, name)
    except requests.exceptions.RequestException:
        return
    assert len(response.content) < int(response.headers["Content-Length"])


@pytest.mark.parametrize(
    ("rule", "sent"),
    [
        (FaultRule("cut", after_bytes=300_000), 300_000),
        (FaultRule("truncate", after_bytes=1234), 1234),
        (FaultRule("reset", after_bytes=4321), 4321),
    ],
)
def test_a_body_cut_short_counts_what_was_sent(rule: FaultRule, sent: int) -> None:
    plan = FaultPlan(rules=[rule])
    with platform_with(FakeFile("a.parquet", CONTENT), faults=plan) as platform:
        fetch_cut_short(platform, "a.parquet")
        assert platform.bytes_served == sent
        [request] = downloads(platform)
        assert request.body_sent == sent


def test_a_client_that_hangs_up_is_counted_to_where_it_left() -> None:
    big = FakeFile("big.parquet", GeneratedBytes(seed=3, size=64 * MiB))
    with platform_with(big, bandwidth=4 * MiB) as platform:
        url = file_url(platform, "big.parquet")
        with requests.get(
            url, headers=platform.auth_headers(), stream=True, timeout=10
        ) as response:
            first = next(response.iter_content(64 * 1024))
        assert first == big.content[: len(first)]
        [request] = downloads(platform)
        platform.stop()  # ends the pacing: what was written stays counted
        assert 0 < platform.bytes_served == request.body_sent < big.length


# -- bandwidth -----------------------------------------------------------------------


def rate_of(request: Any) -> float:
    """Bytes per second the fake wrote the request's body at."""
    assert request.body_seconds > 0
    return float(request.body_sent / request.body_seconds)


def test_bandwidth_holds_each_connection_to_its_rate() -> None:
    bandwidth = 4 * MiB
    size = 4 * MiB
    big = FakeFile("big.parquet", GeneratedBytes(seed=5, size=size))
    with platform_with(big, bandwidth=bandwidth) as platform:
        assert platform.bandwidth == bandwidth
        bodies: list[bytes] = []

        def worker(span: str) -> None:
            with requests.Session() as http:
                bodies.append(fetch(platform, "big.parquet", span, http).content)

        spans = [f"0-{size // 2 - 1}", f"{size // 2}-"]  # two connections at once
        threads = [threading.Thread(target=worker, args=(span,)) for span in spans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(map(len, bodies)) == [size // 2, size // 2]
        rates = [rate_of(request) for request in downloads(platform)]
        # Each connection gets its own rate, not a share of one (that would be half).
        assert all(0.7 * bandwidth <= rate <= 1.1 * bandwidth for rate in rates)
        assert platform.bytes_served == size


def test_bandwidth_spares_catalog_and_listings() -> None:
    big = FakeFile("big.parquet", GeneratedBytes(seed=5, size=2 * MiB))
    with platform_with(big, bandwidth=1.0) as platform:  # a byte a second
        listing = requests.get(
            f"{platform.url}/data/foundation/export/files/f1",
            headers=platform.auth_headers(),
            timeout=10,
        )
        assert listing.json()["data"][0]["name"] == "big.parquet"
        assert platform.bytes_served == 0


@pytest.mark.slow
def test_a_bandwidth_rule_limits_downloads_and_takes_the_lower_limit() -> None:
    plan = FaultPlan.parse("bandwidth=2097152")
    assert plan.rules == (FaultRule("bandwidth", per_second=2 * MiB),)
    assert plan.to_spec() == "seed=0,bandwidth=2097152"
    big = FakeFile("big.parquet", GeneratedBytes(seed=5, size=2 * MiB))
    with platform_with(big, bandwidth=64 * MiB, faults=plan) as platform:
        assert fetch(platform, "big.parquet").content == big.content
        [request] = downloads(platform)
        assert 0.7 * 2 * MiB <= rate_of(request) <= 1.1 * 2 * MiB
        assert platform.faults_served["bandwidth"] == 1


def test_a_bandwidth_rule_combines_with_a_cut() -> None:
    plan = FaultPlan(
        rules=[
            FaultRule("cut", after_bytes=MiB),
            FaultRule("bandwidth", per_second=4 * MiB),
        ]
    )
    big = FakeFile("big.parquet", GeneratedBytes(seed=5, size=2 * MiB))
    with platform_with(big, faults=plan) as platform:
        fetch_cut_short(platform, "big.parquet")
        [request] = downloads(platform)
        assert platform.bytes_served == request.body_sent == MiB
        assert rate_of(request) <= 1.1 * 4 * MiB
        served = platform.faults_served
        assert (served["cut"], served["bandwidth"]) == (1, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "need 'per_second'"),
        ({"per_second": 0}, "more than 0"),
        ({"per_second": 10, "probability": 0.5}, "no probability"),
        ({"per_second": 10, "routes": "catalog"}, "download route only"),
    ],
)
def test_bandwidth_rule_rejects(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRule("bandwidth", **options)


@pytest.mark.parametrize("bandwidth", [0, -1, float("inf"), float("nan"), True, "1"])
def test_platform_rejects_a_bad_bandwidth(bandwidth: Any) -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        FakeAepPlatform({DS: {}}, bandwidth=bandwidth)


# -- lazy large files ----------------------------------------------------------------


def test_generated_bytes_are_the_same_in_any_slice() -> None:
    content = GeneratedBytes(seed=11, size=3 * MiB + 12345)
    whole = b"".join(content.chunks(100_003))
    assert len(whole) == len(content)
    assert bytes(content) == whole
    rng = random.Random(0)
    for _ in range(200):
        first = rng.randrange(len(content))
        stop = rng.randrange(first, len(content) + 1)
        assert content[first:stop] == whole[first:stop]
        assert content.window(first, stop) == whole[first:stop]
        assert content.window(first, stop)[: stop - first] == whole[first:stop]
    assert content[-1] == whole[-1]
    assert content[0] == whole[0]
    assert content[-5:] == whole[-5:]
    assert content == whole
    assert content == memoryview(whole)
    assert content != whole[:-1]
    assert content != b"x" + whole[1:]
    assert content == GeneratedBytes(seed=11, size=len(content))
    assert content.window(10, 20) == GeneratedBytes(11, 10, start=10)
    assert GeneratedBytes(seed=12, size=len(content)) != content
    blocks = {whole[at : at + 64 * 1024] for at in range(0, 3 * MiB, 64 * 1024)}
    assert len(blocks) == 48  # no block repeats another


def test_generated_bytes_reject_misuse() -> None:
    content = GeneratedBytes(seed=1, size=10)
    with pytest.raises(IndexError):
        content[10]
    with pytest.raises(ValueError, match="step"):
        content[::2]
    with pytest.raises(ValueError, match="window"):
        content.window(5, 11)
    with pytest.raises(ValueError, match="size"):
        GeneratedBytes(seed=1, size=-1)


def test_small_generated_files_stay_bytes() -> None:
    platform = FakeAepPlatform.generate(large_file_size=FakeAepPlatform.LAZY_FILE_SIZE)
    contents = [f.content for _, _, f in platform.expected_files(DS, 0, 2**62)]
    assert all(isinstance(content, bytes) for content in contents)


def test_a_4_gib_file_costs_no_memory_and_serves_any_range() -> None:
    tracemalloc.start()
    try:
        with FakeAepPlatform.generate(large_file_size=4 * GiB) as platform:
            [big] = [
                f for _, _, f in platform.expected_files(DS, 0, 2**62) if f.length > MiB
            ]
            [leaf] = [
                leaf for b in platform.batches for leaf, f in b.leaf_files() if f is big
            ]
            assert isinstance(big.content, GeneratedBytes)
            assert big.length == 4 * GiB
            spans = {
                "0-1048575": (0, MiB),
                f"{2 * GiB + 12345}-{2 * GiB + 12345 + 3 * MiB}": (
                    2 * GiB + 12345,
                    2 * GiB + 12346 + 3 * MiB,
                ),
                f"{4 * GiB - 5 * MiB}-": (4 * GiB - 5 * MiB, 4 * GiB),
                "-1000": (4 * GiB - 1000, 4 * GiB),
            }
            with requests.Session() as http:
                for span, (first, stop) in spans.items():
                    response = fetch(platform, big.name, span, http, file_id=leaf)
                    assert response.status_code == 206
                    assert response.content == big.content[first:stop]
                    assert response.headers["Content-Range"] == (
                        f"bytes {first}-{stop - 1}/{4 * GiB}"
                    )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MiB  # a held file would be 4 GiB; the ranges are ~10 MiB
