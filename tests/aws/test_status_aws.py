"""``aep-extract status`` with DynamoDB and S3 over real HTTP (moto server) and the
fake AEP platform: counts, totals, window, oldest lease and last errors as the table
holds them."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from aep_extract import CheckpointStore, TimeWindow, UnitStatus, WorkUnit, open_store
from aep_extract.cli import main

from ..e2e.helpers import DATASET, END, START, expected_tree, run_args

BUCKET, PREFIX, TABLE = "aep-landing", "raw/aep", "aep-extract-status"
SINK, STORE = f"s3://{BUCKET}/{PREFIX}", f"dynamodb://{TABLE}"
MIDDLE = "2024-06-11T00:00:00Z"
NOW = 1_750_000_000.0


@pytest.fixture
def copied(fake_aep, fake_aep_env, moto_over_http, capsys):
    """A finished run of the demo window into S3, state in DynamoDB."""
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    assert main(run_args(SINK, STORE, "--create-table", "--workers", "4")) == 0
    capsys.readouterr()
    return expected_tree(fake_aep)


@pytest.fixture
def store(copied):
    with open_store(STORE) as opened:
        yield opened


def status(capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["status", "--dataset", DATASET, "--store", STORE, *extra])
    return code, capsys.readouterr().out


def status_json(capsys, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out = status(capsys, "--json", *extra)
    return code, json.loads(out)


def test_status_reads_dynamodb(copied, store, moto_over_http, capsys):
    items = moto_over_http.client("dynamodb").scan(TableName=TABLE)["Items"]
    units = store.list(DATASET)
    own = sorted(i["OffsetRange"]["S"] for i in items if "DatasetID" not in i)
    assert own == ["destination", "watermark"], "the dataset's own items"
    assert len(units) == len(items) - len(own) >= 9
    size = sum(map(len, copied.values()))

    code, data = status_json(capsys)
    assert code == 0
    assert data["ok"] is True
    assert data["counts"] == {s.value: n for s, n in store.summary(DATASET).items()}
    assert data["counts"]["Completed"] == 9
    assert (data["filesDone"], data["bytesDone"]) == (len(copied), size) == (34, size)
    assert [u["unit"] for u in data["units"]] == [cp.unit_id for cp in units]
    assert data["oldestLease"] is None
    assert data["lastErrors"] == []

    code, out = status(capsys)
    assert code == 0
    rows = {row.split()[0]: row.split()[1:] for row in out.splitlines()[2:9]}
    assert rows["Completed"] == ["9", "34", "6.1", "MiB"]
    assert rows["total"][:2] == [str(len(units)), "34"]

    window = TimeWindow.parse(START, MIDDLE)
    inside = [cp for cp in units if window.contains_ms(cp.unit.batch_created_ms)]
    code, data = status_json(capsys, "--start", START, "--end", MIDDLE)
    assert code == 0
    assert [u["unit"] for u in data["units"]] == [cp.unit_id for cp in inside]
    assert {s: n for s, n in data["counts"].items() if n} == dict(
        Counter(cp.status.value for cp in inside)
    )
    assert data["bytesDone"] == sum(cp.bytes_done for cp in inside) < size


def test_status_shows_a_dead_workers_lease_and_a_failure(
    copied, store, capsys, monkeypatch
):
    created = TimeWindow.parse(MIDDLE, END).start_ms
    plant = [
        WorkUnit(dataset_id=DATASET, batch_id=b, batch_created_ms=created)
        for b in ("planted-dead", "planted-failed")
    ]
    store.clock = lambda: NOW - 1000
    assert store.register(plant[:1]) == 1
    dead = store.claim(DATASET, "worker-dead", 300)
    assert dead is not None
    assert dead.unit.batch_id == "planted-dead"
    store.clock = lambda: NOW - 5
    assert store.register(plant[1:]) == 1
    failing = store.claim(DATASET, "worker-2", 300)
    assert failing is not None
    assert failing.unit.batch_id == "planted-failed"
    store.fail(failing, "SinkError: S3 said AccessDenied", max_attempts=1)

    monkeypatch.setattr(CheckpointStore, "clock", staticmethod(lambda: NOW))
    code, data = status_json(capsys)
    assert code == 1
    assert data["ok"] is False
    assert data["oldestLease"] == {
        "unit": "planted-dead",
        "owner": "worker-dead",
        "attempts": 0,
        "crashes": 0,
        "leaseExpiresAt": NOW - 700,
        "expired": True,
    }
    assert data["lastErrors"] == [
        {
            "unit": "planted-failed",
            "status": "Failed",
            "attempts": 1,
            "crashes": 0,
            "updatedAt": NOW - 5,
            "error": "SinkError: S3 said AccessDenied",
        }
    ]
    assert (data["counts"]["InProgress"], data["counts"]["Failed"]) == (1, 1)

    code, out = status(capsys)
    assert code == 1
    assert "oldest lease: unit planted-dead of worker-dead (attempt 1), expired " in out
    assert "(11m 40s ago); 1 unit(s) InProgress, 1 lease(s) expired\n" in out
    assert "\n  its worker stopped renewing it (likely dead): the next run" in out
    assert "last errors (1 unit(s) with an error, newest first):" in out
    errors = out.splitlines()[-1].split(None, 5)
    assert errors[1:] == [
        "planted-failed",
        "Failed",
        "1",
        "0",
        "SinkError: S3 said AccessDenied",
    ]
    assert store.get("planted-failed").status is UnitStatus.FAILED
