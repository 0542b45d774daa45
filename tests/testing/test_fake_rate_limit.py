"""The fake platform's gateway rate limit: a token bucket over all clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from aep_extract import (
    ConcurrencyConfig,
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    LocalSink,
    MemoryCheckpointStore,
)
from aep_extract.testing import FakeAepPlatform
from aep_extract.testing._fake_gateway import IMS_TOKEN_PATH, RateLimit

from ..e2e.helpers import DATASET, END, START, expected_tree, sink_tree

CATALOG_BATCHES = "/data/foundation/catalog/batches"


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    now = [10.0]
    limit = RateLimit(4, burst=2, clock=lambda: now[0])

    def take_at(when: float) -> Any:
        now[0] = when
        return limit.take()

    assert [take_at(10.0), take_at(10.0)] == [None, None]  # the burst
    assert take_at(10.0) == pytest.approx(0.25)  # a token every 1/4 s
    assert take_at(10.125) == pytest.approx(0.125)  # half a token back
    assert take_at(10.25) is None
    assert take_at(10.25) == pytest.approx(0.25)
    assert [take_at(60.0), take_at(60.0)] == [None, None]  # full again, not fuller
    assert take_at(60.0) == pytest.approx(0.25)
    assert limit.refused == 4


def test_the_default_burst_is_a_tenth_of_a_second() -> None:
    assert RateLimit(50).burst == 5
    assert RateLimit(3).burst == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": 0}, "rate_limit must be a positive number"),
        ({"rate_limit": float("inf")}, "rate_limit must be a positive number"),
        ({"rate_limit": True}, "rate_limit must be a positive number"),
        ({"rate_limit": 5, "rate_burst": 0.5}, "rate_burst must be at least 1"),
        ({"rate_burst": 3}, "rate_burst needs a rate_limit"),
    ],
)
def test_bad_rate_limits_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FakeAepPlatform.generate(**options)


def test_a_burst_beyond_the_limit_gets_429_with_retry_after() -> None:
    # One token per 100 s: whatever the machine's speed, the burst is all that goes.
    with FakeAepPlatform.generate(rate_limit=0.01, rate_burst=3) as platform:
        headers = platform.auth_headers()
        answers = [
            requests.get(platform.url + CATALOG_BATCHES, headers=headers, timeout=10)
            for _ in range(5)
        ]
        assert [answer.status_code for answer in answers] == [200] * 3 + [429] * 2
        for refused in answers[3:]:
            assert 1 <= int(refused.headers["Retry-After"]) <= 100
            assert refused.json() == {
                "error_code": "429001",
                "message": "Too many requests",
            }
            assert refused.headers["x-request-id"]
        # IMS is another service: its token endpoint is not limited.
        token = requests.post(
            platform.url + IMS_TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": platform.client_id,
                "client_secret": platform.client_secret,
                "scope": platform.scopes,
            },
            timeout=10,
        )
        assert token.status_code == 200
        assert platform.rate_limited == 2
        assert [r.status for r in platform.requests] == [200] * 3 + [429] * 2 + [200]


def test_no_limit_by_default() -> None:
    with FakeAepPlatform.generate() as platform:
        headers = platform.auth_headers()
        for _ in range(20):
            got = requests.get(
                platform.url + CATALOG_BATCHES, headers=headers, timeout=10
            )
            assert got.status_code == 200
        assert platform.rate_limited == 0


@pytest.mark.slow
def test_the_client_copies_everything_exactly_under_the_limit(tmp_path: Path) -> None:
    # The client starts at 2.5x the limit with 8 threads: the gateway refuses its
    # first burst, and Retry-After and the limiter's rate cuts bring it down.
    with FakeAepPlatform.generate(rate_limit=40, rate_burst=2) as platform:
        concurrency = ConcurrencyConfig(workers=8, max_requests_per_second=100)
        source = HttpAepSource.from_env(platform.env(), concurrency=concurrency)
        sink = LocalSink(tmp_path)
        with Extractor(
            source,
            store=MemoryCheckpointStore(),
            sink=sink,
            config=ExtractorConfig(concurrency=concurrency),
        ) as extractor:
            report = extractor.run(DATASET, START, END)
        assert report.ok, str(report)
        assert platform.rate_limited > 0
        assert source.counters()["throttled"] == platform.rate_limited
        assert source.rate_limiter.rate < 100
        assert sink_tree(sink) == expected_tree(platform)
        source.close()
