"""The pipeline's entry points in the state machine's order, against the fake
platform (HTTP) and moto's server: plan, three worker processes at once (one killed
with SIGKILL after it copied something), a redrive of the killed one, status and
verify. The output is exact and every unit Completed."""

from __future__ import annotations

import json
import signal

from aep_extract.aws import handlers
from aep_extract.sinks.s3 import S3Sink

from ...e2e.helpers import (
    DATASET,
    END,
    START,
    expected_statuses,
    expected_tree,
    sink_tree,
)
from .conftest import ARTIFACTS, GLUE_JOB, SINK, worker_argv

WINDOW = {
    "dataset": DATASET,
    "start": "2024-06-10T00:00:00+00:00",
    "end": "2024-06-14T00:00:00+00:00",
}


def test_plan_workers_kill_redrive_status_verify(world):
    units = len(expected_statuses(world.platform))
    event = {"datasets": [DATASET], "start": START, "end": END, "execution": "run-1"}
    planned = handlers.plan(event, None)
    assert planned == {
        "shards": {"Bucket": ARTIFACTS, "Key": "aep-extract/shards/run-1.json"},
        "shard_count": 3,
        "windows": [WINDOW],
        "planned": [{"dataset": DATASET, "units": {"Pending": units}}],
    }
    assert len(json.dumps(planned)) < 1024
    items = world.read_json(planned["shards"])
    # 12 requests/s for 3 shards at once (MaxConcurrency 10): 4 each.
    assert items == [
        {
            "dataset": DATASET,
            "worker": "glue",
            "shard": shard,
            "threads": "2",
            "requests_per_second": "4",
        }
        for shard in ("1", "2", "3")
    ]

    # Each item a Glue job run, which gives the worker its deadline.
    runs = [world.glue_run() for _ in items]
    workers = [
        world.start_worker(
            *worker_argv(item, "--JOB_NAME", GLUE_JOB, "--JOB_RUN_ID", run)
        )
        for item, (run, _) in zip(items, runs)
    ]
    victim = workers[0]
    killed_unit = world.copying_unit(victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for process, (_, deadline) in zip(workers[1:], runs[1:]):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert json.loads(out)["ok"] is True
        assert deadline in err
    # Step Functions' redrive reruns the failed item once its leases expired.
    redrive = world.start_worker(*worker_argv(items[0]))
    out, err = redrive.communicate(timeout=300)
    assert redrive.returncode == 0, err
    assert json.loads(out)["units"]["Completed"] == units

    tree = expected_tree(world.platform)
    assert handlers.status(planned, None) == {
        "ok": True,
        "datasets": [
            {
                **WINDOW,
                "ok": True,
                "units": {"Completed": units},
                "files_done": len(tree),
                "bytes_done": sum(len(content) for content in tree.values()),
                "errors": [],
            }
        ],
    }
    assert handlers.verify(planned, None) == {
        "ok": True,
        "datasets": [
            {
                **WINDOW,
                "ok": True,
                "batches": units,
                "manifests": units,
                "objects": len(tree),
                "findings": 0,
            }
        ],
    }
    assert sink_tree(S3Sink(SINK, session=world.session)) == tree
    with world.store() as store:
        taken_over = store.get(killed_unit)
    assert taken_over is not None
    assert (taken_over.status.value, taken_over.crashes) == ("Completed", 1)
