"""SIGKILL at random moments (faults on), then a final run: the result equals a
clean run. SQLite store and local sink; the S3/DynamoDB variant is in tests/aws."""

from __future__ import annotations

import os

from aep_extract import LocalSink, SQLiteCheckpointStore
from aep_extract.testing import FakeAepPlatform, FaultPlan

from ..crash_harness import CRASH_CATALOG, FAULTS, kills_wanted, run_with_kills
from .helpers import (
    expected_statuses,
    expected_tree,
    manifests,
    run_args,
    sink_tree,
    unit_statuses,
)


def test_sigkill_at_random_moments_then_rerun_is_exact(tmp_path):
    plan = FaultPlan.parse(FAULTS)
    with FakeAepPlatform.generate(**CRASH_CATALOG, faults=plan) as platform:
        env = {**os.environ, **platform.env()}
        args = run_args(
            str(tmp_path / "out"),
            f"sqlite:///{tmp_path / 'state.db'}",
            "--workers",
            "4",
            "--lease-seconds",
            "2",
        )
        result = run_with_kills(args, env, kills=kills_wanted(), seed=5)
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
