"""CLI scenarios run on both the embedded and the AWS backends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aep_extract.cli import main
from aep_extract.testing import FakeAepPlatform

from .e2e.helpers import DATASET, END, START, run_args


def fail_then_retry(
    platform: FakeAepPlatform,
    sink: str,
    store: str,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> dict[str, Any]:
    """A batch whose files AEP answers with 404 fails (404 is not retried, so
    quickly); once AEP serves them again, ``retry-failed`` and the same ``run``
    finish the job. Returns the outputs of each step, parsed."""
    (broken,) = [b for b in platform.batches_of(DATASET) if b.file_count == 6]
    prefixes = tuple(
        f"/data/foundation/export/files/{node.dataset_file_id}"
        for node in broken.all_dataset_files()
    )

    def not_found(request: Any) -> Any:
        if request.path.startswith(prefixes) and "path" in request.query:
            return 404, {"Content-Type": "application/json"}, b'{"title": "gone"}'
        return None

    def cli(*args: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = main(["-q", *args, "--json"])
        return code, json.loads(capsys.readouterr().out)

    status = ["status", "--dataset", DATASET, "--store", store]
    retry = ["retry-failed", "--dataset", DATASET, "--store", store]
    plan = ["plan", "--dataset", DATASET, "--start", START, "--end", END]
    steps: dict[str, Any] = {"broken": broken.batch_id}
    steps["plan"] = cli(*plan, "--store", store, *extra)
    platform.add_fault(not_found)
    steps["failed run"] = cli(*run_args(sink, store))
    steps["failed status"] = cli(*status)
    steps["retry other"] = cli(*retry, "--unit", "no-such-unit")
    platform.clear_faults()
    steps["retry"] = cli(*retry, "--unit", broken.batch_id)
    steps["retry again"] = cli(*retry)
    steps["run"] = cli(*run_args(sink, store))
    steps["status"] = cli(*status)
    return steps


def check_fail_then_retry(steps: dict[str, Any]) -> None:
    broken = steps["broken"]
    code, plan = steps["plan"]
    assert code == 0
    assert (plan["unitsPlanned"], plan["unitsNew"], plan["batchesWaiting"]) == (9, 9, 1)
    code, report = steps["failed run"]
    assert code == 1
    assert not report["ok"]
    assert report["units"]["Failed"] == 1
    assert {f["unit"] for f in report["failures"]} == {broken}
    assert len(report["failures"]) == 3  # one per attempt (unit_attempts)
    assert "NotFoundError" in report["failures"][0]["error"]
    code, status = steps["failed status"]
    assert code == 1
    assert [e["unit"] for e in status["lastErrors"]] == [broken]
    assert status["lastErrors"][0]["status"] == "Failed"
    assert steps["retry other"] == (0, {"datasetId": DATASET, "unitsMoved": 0})
    assert steps["retry"] == (0, {"datasetId": DATASET, "unitsMoved": 1})
    assert steps["retry again"] == (0, {"datasetId": DATASET, "unitsMoved": 0})
    code, report = steps["run"]
    assert code == 0
    assert report["ok"]
    assert (report["unitsCompleted"], report["filesCopied"]) == (1, 6)
    code, status = steps["status"]
    assert code == 0
    assert status["counts"]["Completed"] == 9
    assert status["counts"]["Waiting"] == 1
