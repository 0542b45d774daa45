"""SIGKILL at random moments (faults on), then a final run: the result equals a
clean run. SQLite store and local sink; the S3/DynamoDB variant is in tests/aws."""

from __future__ import annotations

import json
import os
import time
import zlib

from aep_extract import LocalSink, SQLiteCheckpointStore
from aep_extract.testing import FakeAepPlatform, FakeRequest, FaultPlan

from ..crash_harness import (
    CRASH_CATALOG,
    FAULTS,
    MULTISTREAM,
    kills_wanted,
    run_with_kills,
)
from .helpers import (
    expected_statuses,
    expected_tree,
    manifests,
    run_args,
    sink_tree,
    unit_statuses,
)


def test_sigkill_at_random_moments_then_rerun_is_exact(tmp_path):
    """Files from 128 KiB on are copied in parts of 64 KiB: kills land mid-upload,
    and later runs resume those uploads."""
    plan = FaultPlan.parse(FAULTS)
    with FakeAepPlatform.generate(**CRASH_CATALOG, faults=plan) as platform:
        env = {
            **os.environ,
            **platform.env(),
            "AEP_TEST_CONCURRENCY": json.dumps(MULTISTREAM),
        }
        args = run_args(
            str(tmp_path / "out"),
            f"sqlite:///{tmp_path / 'state.db'}",
            "--workers",
            "4",
            "--lease-seconds",
            "2",
        )
        result = run_with_kills(
            args, env, kills=kills_wanted(), seed=5, module="tests.multistream_cli"
        )
        served = platform.faults_served
        expected = expected_tree(platform)
        statuses = expected_statuses(platform)
        batches = {key.split("/")[2] for key in expected}

    print(
        f"\ncrash test (sqlite+local): {result.kills} kills, "
        f"{result.exited_early} finished before their kill, faults {served}"
    )
    assert result.final_exit == 0, result.final_output
    assert result.kills >= 1
    assert sum(served.values()) > 0
    sink = LocalSink(tmp_path / "out")
    assert sink_tree(sink) == expected
    assert {key.split("/")[2] for key in manifests(sink)} == batches
    assert list(sink.list_keys()) == sorted(
        [*expected, *manifests(sink)]
    )  # nothing extra
    leftovers = [p for p in (tmp_path / "out").rglob(".*.part")]
    assert leftovers == []
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    assert unit_statuses(store) == statuses


CHURN_FAULTS = "seed=13,token_expiry=0.05,503=0.03,reset=0.03@download"
CHURN_DELAY = 3.5
"""Seconds some requests take to reach the platform: well over half the tokens' 4 s
lifetime, so a token that was fresh when sent has often expired when it is read."""


def reaches_late(request: FakeRequest) -> None:
    """A fault hook: about one listing or download in three is read 3.5 s late (the
    kit's ``latency`` holds the answer instead, after the token was checked)."""
    if "/export/" in request.path:
        key = f"{request.path}?{sorted(request.query.items())} {request.headers}"
        if zlib.crc32(key.encode()) % 3 == 0:
            time.sleep(CHURN_DELAY)


def test_token_churn_slow_requests_and_kills_still_end_exact(tmp_path):
    """The loaded case: short-lived tokens, slow answers and repeated SIGKILLs.
    Killed attempts are crashes, not errors, and a 401 after a refresh is retried,
    so no healthy unit ends Failed."""
    plan = FaultPlan.parse(CHURN_FAULTS)
    catalog = {**CRASH_CATALOG, "batches": 16, "large_file_size": 2 * 1024 * 1024}
    with FakeAepPlatform.generate(**catalog, token_ttl=4, faults=plan) as platform:
        platform.add_fault(reaches_late)
        env = {**os.environ, **platform.env()}
        args = run_args(
            str(tmp_path / "out"),
            f"sqlite:///{tmp_path / 'state.db'}",
            "--workers",
            "4",
            "--lease-seconds",
            "2",
        )
        result = run_with_kills(args, env, kills=12, seed=9)
        unauthorized = sum(r.status == 401 for r in platform.requests)
        served = platform.faults_served
        expected = expected_tree(platform)
        statuses = expected_statuses(platform)

    print(
        f"\ntoken churn: {result.kills} kills, {unauthorized} answers 401, "
        f"{platform.tokens_issued} tokens, faults {served}"
    )
    assert result.final_exit == 0, result.final_output
    assert result.kills >= 1
    assert unauthorized > 0  # tokens really expired under the requests
    assert sink_tree(LocalSink(tmp_path / "out")) == expected
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    assert unit_statuses(store) == statuses
