"""What the pipeline's steps do when something is wrong or there is nothing to do:
Misconfigured before anything is planned, exit 2 of a misconfigured worker,
VerificationFailed on an unfinished window, a since-last dataset left out, SIGTERM."""

from __future__ import annotations

import json
import signal

import pytest

from aep_extract import CheckpointConflict, NotFoundError
from aep_extract.aws import handlers
from aep_extract.aws.handlers import Misconfigured, Retryable, VerificationFailed

from ...e2e.helpers import DATASET, END, START, expected_statuses
from .conftest import ARTIFACTS, World, worker_argv

OTHER = "5e8f81cf7a4ecb28a8d85c47"  # the fake platform's second dataset
WRONG = "SENTINEL-wrong-secret-0b7d"


def stored_units(world: World) -> int:
    with world.store() as store:
        return len(store.list(DATASET))


def shard_files(world: World) -> list[str]:
    listed = world.session.client("s3").list_objects_v2(Bucket=ARTIFACTS)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_a_missing_sink_bucket_is_misconfigured_before_any_plan(world, monkeypatch):
    monkeypatch.setenv("AEP_EXTRACT_SINK", "s3://no-such-bucket/aep")
    with pytest.raises(Misconfigured, match="S3 bucket 'no-such-bucket' does not"):
        handlers.plan({"start": START, "end": END, "execution": "run-1"}, None)
    assert (stored_units(world), shard_files(world)) == (0, [])


def test_wrong_aep_credentials_are_misconfigured_without_the_secret(world, monkeypatch):
    world.put_secret("wrong", AEP_CLIENT_SECRET=WRONG)
    monkeypatch.setenv("AEP_SECRET_ID", "wrong")
    with pytest.raises(Misconfigured) as caught:
        handlers.plan({"start": START, "end": END, "execution": "run-1"}, None)
    assert WRONG not in str(caught.value)
    assert (stored_units(world), shard_files(world)) == (0, [])


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"execution": "a/b"}, "execution must be a Step Functions name"),
        ({"execution": "x", "datasets": "id1"}, "datasets must be a list"),
        ({"execution": "x", "start": START, "since_last": False}, "give start and"),
        ({"execution": "x", "datasets": ["nope"]}, "dataset nope not found"),
    ],
)
def test_a_bad_event_is_misconfigured(world, event, message):
    with pytest.raises(Misconfigured, match=message):
        handlers.plan(event, None)


def test_other_errors_of_the_library_are_retryable():
    errors = handlers._step_errors
    lost = CheckpointConflict("lost the lease")
    with pytest.raises(Retryable, match="lost the lease") as caught, errors():
        raise lost
    assert caught.value.__cause__ is lost
    with pytest.raises(Misconfigured), errors():
        raise NotFoundError("no such batch", status=404)


def test_a_misconfigured_worker_exits_2(world):
    process = world.start_worker("--dataset", DATASET, "--secret_id", "nope")
    out, err = process.communicate(timeout=120)
    assert (process.returncode, out) == (2, "")
    assert "aep-extract-worker: error: cannot read secret nope" in err


def test_verify_of_an_unfinished_window_fails_and_status_says_why(world):
    planned = handlers.plan({"start": START, "end": END, "execution": "x"}, None)
    units = len(expected_statuses(world.platform))
    with pytest.raises(VerificationFailed, match=f"^{DATASET} .*missing-manifest"):
        handlers.verify(planned, None)
    status = handlers.status(planned, None)
    assert status["ok"] is False
    assert status["datasets"][0]["units"] == {"Pending": units}
    assert (status["datasets"][0]["files_done"], status["datasets"][0]["ok"]) == (
        0,
        False,
    )


def test_since_last_leaves_out_a_dataset_with_nothing_new(world, monkeypatch):
    monkeypatch.setenv("AEP_EXTRACT_FIRST_START", START)
    first = handlers.plan({"end": END, "execution": "day-1"}, None)
    assert first["windows"] == [
        {
            "dataset": DATASET,
            "start": "2024-06-10T00:00:00+00:00",
            "end": "2024-06-14T00:00:00+00:00",
        }
    ]
    assert first["shard_count"] == 3

    # Day 1's workers never ran: its units are still Pending.
    event = {"datasets": [DATASET, OTHER], "end": END, "execution": "day-2"}
    second = handlers.plan(event, None)
    assert second["windows"] == [
        {
            "dataset": OTHER,
            "start": "2024-06-10T00:00:00+00:00",
            "end": "2024-06-14T00:00:00+00:00",
        }
    ]
    shards = [item["dataset"] for item in world.read_json(second["shards"])]
    assert shards == [DATASET] * 3 + [OTHER] * (second["shard_count"] - 3)

    # Day 2's worker finishes day 1, alone: at the whole rate, not its shard's share.
    item = {**world.read_json(second["shards"])[0], "requests_per_second": "100"}
    process = world.start_worker(*worker_argv(item))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    third = handlers.plan({"end": END, "execution": "day-3"}, None)
    assert third == {
        "shards": {"Bucket": ARTIFACTS, "Key": "aep-extract/shards/day-3.json"},
        "shard_count": 0,
        "windows": [],
        "planned": [],
    }
    assert world.read_json(third["shards"]) == []


def test_sigterm_stops_a_worker_and_gives_its_leases_back(world):
    planned = handlers.plan({"start": START, "end": END, "execution": "x"}, None)
    item = world.read_json(planned["shards"])[0]
    process = world.start_worker(*worker_argv({**item, "requests_per_second": "2"}))
    world.copying_unit(process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    report = json.loads(out)
    assert (report["stopped"], report["units"]["InProgress"]) == (True, 0)
    with world.store() as store:
        assert [cp.unit_id for cp in store.list(DATASET) if cp.owner] == []
