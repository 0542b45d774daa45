"""The shipped template's state machine, run end to end by LocalStack's Step
Functions engine (tests/aws/sfn_local.py) with the real entry points behind its Task
states: the plan, status and verify handlers in this process, and for each Glue job
run or ECS task a worker process; AEP is the fake platform over HTTP, AWS the moto
server (the checkpoint table, the buckets, the secret, the Glue job)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable

import attrs
import pytest

from aep_extract.aws import handlers
from aep_extract.sinks.s3 import S3Sink

from ...e2e.helpers import (
    DATASET,
    END,
    START,
    expected_statuses,
    expected_tree,
    sink_tree,
    unit_statuses,
)
from ..sfn_local import Execution, LocalStack, run_state_machine
from ..template.cfn import ECS_VALUES, GLUE_VALUES, definition
from .conftest import GLUE_JOB, SECRET, SINK, TABLE, World

EXECUTION = "pipeline-1"  # names the shard list in both S3s
RUN = {"datasets": [DATASET], "start": START, "end": END}
"""The execution's input: the demo window (``Start`` adds the execution's name)."""
NOTHING_NEW = {
    "datasets": [DATASET],
    "start": "2020-01-01T00:00:00Z",
    "end": "2020-01-02T00:00:00Z",
}
"""A window without batches: no shard."""
CONCURRENCY = {"MaxConcurrency": "10"}  # as the world's AEP_EXTRACT_MAX_CONCURRENCY
GLUE = definition({**GLUE_VALUES, **CONCURRENCY, "GlueJobName": GLUE_JOB})
ECS = definition({**ECS_VALUES, **CONCURRENCY})
JOB_ARGUMENTS = {
    "--store": f"dynamodb://{TABLE}",
    "--sink": SINK,
    "--secret_id": SECRET,
    "--metrics": "cloudwatch",
}
"""The Glue job's DefaultArguments in the template; a run's Arguments add to them."""


class WorkerFailed(Exception):
    """A worker exited other than 0: its job run or task failed."""


@attrs.define
class Steps:
    """The Task states' callables: the real entry points, recording what each
    state was given and returned."""

    world: World
    localstack: LocalStack
    given: dict[str, list[Any]] = attrs.Factory(dict)
    returned: dict[str, list[Any]] = attrs.Factory(dict)

    def tasks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Plan": self.plan,
            "Glue": self.glue,
            "Ecs": self.ecs,
            "Status": self.status,
            "Verify": self.verify,
        }

    def _call(self, state: str, step: Callable[[Any], Any], given: Any) -> Any:
        self.given.setdefault(state, []).append(given)
        result = step(given)
        self.returned.setdefault(state, []).append(result)
        return result

    def plan(self, event: Any) -> Any:
        planned = self._call("Plan", lambda e: handlers.plan(e, None), event)
        # In AWS the handler and the Map's ItemReader share one S3; here the
        # handler writes to moto's and LocalStack reads its own, so the shard
        # list is copied over, same bucket and key, before the Map starts.
        if planned["shard_count"]:
            location = planned["shards"]
            body = json.dumps(self.world.read_json(location)).encode()
            s3 = self.localstack.client("s3")
            s3.create_bucket(Bucket=location["Bucket"])
            s3.put_object(Bucket=location["Bucket"], Key=location["Key"], Body=body)
        return planned

    def glue(self, parameters: Any) -> Any:
        """As ``glue:startJobRun.sync``: a run of the job (moto's, from which the
        worker reads its deadline) with the job's arguments and the run's; the
        state's result when it ends, a failure if the worker exits other than 0."""
        self.given.setdefault("Glue", []).append(parameters)
        job, arguments = parameters["JobName"], parameters["Arguments"]
        glue = self.world.session.client("glue")
        run_id = glue.start_job_run(JobName=job, Arguments=arguments)["JobRunId"]
        given = {
            **JOB_ARGUMENTS,
            **arguments,
            "--JOB_NAME": job,
            "--JOB_RUN_ID": run_id,
        }
        self._work([word for pair in given.items() for word in pair])
        return {"JobName": job, "Id": run_id, "JobRunState": "SUCCEEDED"}

    def ecs(self, parameters: Any) -> Any:
        """As ``ecs:runTask.sync``: the container's command run by the image's
        entry point (``python -m aep_extract.aws.worker``), with the task
        definition's environment (this process's)."""
        self.given.setdefault("Ecs", []).append(parameters)
        (container,) = parameters["Overrides"]["ContainerOverrides"]
        self._work(container["Command"])
        return {"LastStatus": "STOPPED", "Containers": [{"ExitCode": 0}]}

    def _work(self, argv: list[str]) -> None:
        process = self.world.start_worker(*argv)
        out, err = process.communicate(timeout=300)
        if process.returncode != 0:
            raise WorkerFailed(f"exit {process.returncode}: {err}")
        self.returned.setdefault("Worker", []).append(json.loads(out))

    def status(self, event: Any) -> Any:
        return self._call("Status", lambda e: handlers.status(e, None), event)

    def verify(self, event: Any) -> Any:
        return self._call("Verify", lambda e: handlers.verify(e, None), event)


def run(
    steps: Steps,
    document: Mapping[str, Any],
    execution_input: Any,
    **replaced: Callable[[Any], Any],
) -> Execution:
    """One execution of ``document``; ``replaced`` serve some Task states instead
    of ``steps``."""
    tasks = {**steps.tasks(), **replaced}
    return run_state_machine(
        steps.localstack,
        document,
        tasks,
        execution_input,
        name=EXECUTION,
        retry_seconds=1,
    )


def states_entered(execution: Execution) -> list[str]:
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in execution.history
        if "stateEnteredEventDetails" in event
    ]


def error_message(execution: Execution) -> str:
    """The message of the handler's error that failed the execution."""
    message: str = json.loads(execution.cause or "")["errorMessage"]
    return message


@pytest.fixture
def steps(
    world: World, localstack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> Steps:
    # The plan shares this AEP budget among the shards (20 requests/s each): the
    # demo window copies in seconds.
    monkeypatch.setenv("AEP_EXTRACT_REQUESTS_PER_SECOND", "60")
    return Steps(world, localstack)


@pytest.mark.parametrize(
    ("worker", "document"), [("glue", GLUE), ("ecs", ECS)], ids=["glue", "ecs"]
)
def test_the_state_machine_copies_every_unit_exactly(
    steps, monkeypatch, worker, document
):
    monkeypatch.setenv("AEP_EXTRACT_WORKER", worker)
    execution = run(steps, document, RUN)

    assert (execution.status, execution.error) == ("SUCCEEDED", None)
    assert states_entered(execution) == [
        "Start", "Plan", "HasWork", "Copy", "Status", "Verify", "Done"
    ]  # fmt: skip
    assert steps.given["Plan"] == [{**RUN, "execution": EXECUTION}]
    (planned,) = steps.returned["Plan"]
    items = steps.world.read_json(planned["shards"])
    assert isinstance(items, list)
    assert [item["worker"] for item in items] == [worker] * 3
    # Each shard ran once, as the plan wrote it.
    if worker == "glue":
        assert sorted(steps.given["Glue"], key=str) == sorted(
            (
                {
                    "JobName": GLUE_JOB,
                    "Arguments": {
                        "--dataset": item["dataset"],
                        "--threads": item["threads"],
                        "--requests_per_second": item["requests_per_second"],
                    },
                }
                for item in items
            ),
            key=str,
        )
        assert "Ecs" not in steps.given
    else:
        commands = [
            call["Overrides"]["ContainerOverrides"][0]["Command"]
            for call in steps.given["Ecs"]
        ]
        assert sorted(commands) == sorted(
            [
                "--dataset", item["dataset"],
                "--threads", item["threads"],
                "--requests_per_second", item["requests_per_second"],
                "--deadline", ECS_VALUES["EcsDeadlineSeconds"],
                "--metrics", "cloudwatch",
            ]
            for item in items
        )  # fmt: skip
        assert "Glue" not in steps.given
    # Every worker succeeded; together they copied each unit and file once.
    reports = steps.returned["Worker"]
    assert len(reports) == len(items)
    assert all(report["ok"] for report in reports)
    units = len(expected_statuses(steps.world.platform))
    tree = expected_tree(steps.world.platform)
    assert sum(report["unitsCompleted"] for report in reports) == units
    assert sum(report["filesCopied"] for report in reports) == len(tree)

    with steps.world.store() as store:
        assert unit_statuses(store) == expected_statuses(steps.world.platform)
    assert set(expected_statuses(steps.world.platform).values()) == {"Completed"}
    assert sink_tree(S3Sink(SINK, session=steps.world.session)) == tree
    # The Map's result is dropped; status and verify add theirs to the plan's.
    (status,) = steps.returned["Status"]
    (verified,) = steps.returned["Verify"]
    assert execution.output == {**planned, "status": status, "verify": verified}
    assert status["ok"]
    assert verified["ok"]
    assert status["datasets"][0]["files_done"] == len(tree)
    assert verified["datasets"][0]["objects"] == len(tree)


def test_a_misconfigured_plan_fails_the_execution_at_once(steps):
    execution = run(steps, GLUE, {**RUN, "datasets": ["nope"]})
    assert (execution.status, execution.error) == ("FAILED", "Misconfigured")
    assert "dataset nope not found" in error_message(execution)
    assert steps.given.keys() == {"Plan"}
    assert len(steps.given["Plan"]) == 1
    assert states_entered(execution) == ["Start", "Plan", "Misconfigured"]


def test_a_retryable_plan_error_is_retried(steps):
    failures = [handlers.Retryable("throttled by AEP")]

    def plan_once_throttled(event: Any) -> Any:
        if failures:
            steps.given.setdefault("Plan", []).append(event)
            raise failures.pop()
        return steps.plan(event)

    execution = run(steps, GLUE, NOTHING_NEW, Plan=plan_once_throttled)
    assert (execution.status, execution.error) == ("SUCCEEDED", None)
    assert len(steps.given["Plan"]) == 2
    assert len(steps.returned["Plan"]) == 1


def test_nothing_to_copy_skips_the_map(steps):
    execution = run(steps, GLUE, NOTHING_NEW)
    assert (execution.status, execution.error) == ("SUCCEEDED", None)
    assert states_entered(execution) == [
        "Start",
        "Plan",
        "HasWork",
        "Status",
        "Verify",
        "Done",
    ]
    (planned,) = steps.returned["Plan"]
    assert planned["shard_count"] == 0
    assert execution.output["status"]["datasets"][0]["units"] == {}
    assert execution.output["verify"]["ok"] is True


def test_a_failed_verification_fails_the_execution(steps):
    sink = S3Sink(SINK, session=steps.world.session)
    lost: list[str] = []

    def status_then_lose_an_object(event: Any) -> Any:
        result = steps.status(event)
        lost.append(sorted(sink_tree(sink))[0])
        steps.world.session.client("s3").delete_object(
            Bucket=sink.bucket, Key=f"{sink.prefix}/{lost[0]}"
        )
        return result

    execution = run(steps, GLUE, RUN, Status=status_then_lose_an_object)
    assert (execution.status, execution.error) == ("FAILED", "VerificationFailed")
    assert states_entered(execution)[-2:] == ["Verify", "VerificationFailed"]
    assert error_message(execution).startswith(f"{DATASET} ")
    assert lost[0] in error_message(execution)
    assert steps.returned["Status"][0]["ok"] is True
    assert "Verify" not in steps.returned
