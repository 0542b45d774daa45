"""LocalStack's Step Functions engine runs a definition of the pipeline's shape, its
Task states served by Python callables (tests/aws/sfn_local.py): Choice, a
Distributed Map over an S3 shard list, Retry and Catch behave as in AWS."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from .sfn_local import LocalStack, run_state_machine

BUCKET = "artifacts"
SHARDS = "aep-extract/shards/run-1.json"

DEFINITION: dict[str, Any] = {
    "Comment": "The pipeline's shape: plan, choice, map over a shard list, verify",
    "StartAt": "Plan",
    "States": {
        "Plan": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": "plan",
                "Payload": {"execution.$": "$$.Execution.Name"},
            },
            "ResultSelector": {"plan.$": "$.Payload"},
            "OutputPath": "$.plan",
            "Retry": [
                {
                    "ErrorEquals": ["Retryable"],
                    "IntervalSeconds": 30,
                    "MaxAttempts": 2,
                    "BackoffRate": 2,
                    "MaxDelaySeconds": 300,
                }
            ],
            "Next": "HasWork",
        },
        "HasWork": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.shard_count", "NumericEquals": 0, "Next": "Status"}
            ],
            "Default": "Copy",
        },
        "Copy": {
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSON"},
                "Parameters": {"Bucket.$": "$.shards.Bucket", "Key.$": "$.shards.Key"},
            },
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Route",
                "States": {
                    "Route": {
                        "Type": "Choice",
                        "Choices": [
                            {
                                "Variable": "$.worker",
                                "StringEquals": "glue",
                                "Next": "Glue",
                            }
                        ],
                        "Default": "Ecs",
                    },
                    "Glue": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::glue:startJobRun.sync",
                        "Parameters": {
                            "JobName": "aep-extract",
                            "Arguments": {
                                "--dataset.$": "$.dataset",
                                "--shard.$": "$.shard",
                            },
                        },
                        "Retry": [
                            {
                                "ErrorEquals": ["States.TaskFailed"],
                                "IntervalSeconds": 1,
                                "MaxAttempts": 1,
                            }
                        ],
                        "End": True,
                    },
                    "Ecs": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::ecs:runTask.sync",
                        "Parameters": {
                            "TaskDefinition": "aep-extract",
                            "Overrides": {
                                "dataset.$": "$.dataset",
                                "shard.$": "$.shard",
                            },
                        },
                        "End": True,
                    },
                },
            },
            "MaxConcurrency": 2,
            "ResultPath": None,
            "Next": "Status",
        },
        "Status": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "status", "Payload.$": "$"},
            "ResultSelector": {"ok.$": "$.Payload.ok"},
            "ResultPath": "$.status",
            "Next": "Verify",
        },
        "Verify": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "verify", "Payload.$": "$"},
            "ResultSelector": {"verified.$": "$.Payload"},
            "Catch": [
                {
                    "ErrorEquals": ["VerificationFailed"],
                    "ResultPath": "$.error",
                    "Next": "Unverified",
                }
            ],
            "End": True,
        },
        "Unverified": {
            "Type": "Fail",
            "Error": "VerificationFailed",
            "CausePath": "$.error.Cause",
        },
    },
}

ITEMS = [
    {"dataset": "d1", "worker": "glue", "shard": "1"},
    {"dataset": "d1", "worker": "glue", "shard": "2"},
    {"dataset": "d2", "worker": "ecs", "shard": "1"},
]


class Retryable(Exception):
    """As the handlers' error that the state machine retries."""


class Misconfigured(Exception):
    """As the handlers' error that it never retries."""


class VerificationFailed(Exception):
    """As the verify handler's."""


class Pipeline:
    """Callables for the Task states, recording what each was given."""

    def __init__(
        self,
        shard_count: int = len(ITEMS),
        plan_errors: tuple[Exception, ...] = (),
        glue_failures: tuple[str, ...] = (),
        verify_error: Optional[Exception] = None,
    ) -> None:
        self.shard_count = shard_count
        self.plan_errors = list(plan_errors)
        self.glue_failures = list(glue_failures)  # shards whose first run fails
        self.verify_error = verify_error
        self.calls: dict[str, list[Any]] = {}

    def tasks(self) -> dict[str, Any]:
        return {
            "Plan": self.plan,
            "Glue": self.glue,
            "Ecs": self.ecs,
            "Status": self.status,
            "Verify": self.verify,
        }

    def _record(self, state: str, given: Any) -> None:
        self.calls.setdefault(state, []).append(given)

    def plan(self, event: Any) -> Any:
        self._record("Plan", event)
        if self.plan_errors:
            raise self.plan_errors.pop(0)
        shards = {"Bucket": BUCKET, "Key": SHARDS}
        return {"shards": shards, "shard_count": self.shard_count}

    def glue(self, parameters: Any) -> Any:
        self._record("Glue", parameters)
        shard = parameters["Arguments"]["--shard"]
        if shard in self.glue_failures:
            self.glue_failures.remove(shard)
            raise RuntimeError(f"shard {shard}: job run failed")
        return {"JobRunState": "SUCCEEDED"}

    def ecs(self, parameters: Any) -> Any:
        self._record("Ecs", parameters)
        return {"StopCode": "EssentialContainerExited"}

    def status(self, event: Any) -> Any:
        self._record("Status", event)
        return {"ok": True, "datasets": []}

    def verify(self, event: Any) -> Any:
        self._record("Verify", event)
        if self.verify_error is not None:
            raise self.verify_error
        return {"ok": True}


@pytest.fixture(scope="module")
def shard_list(localstack: LocalStack) -> None:
    s3 = localstack.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=SHARDS, Body=json.dumps(ITEMS).encode())


def _run(localstack: LocalStack, pipeline: Pipeline) -> Any:
    return run_state_machine(
        localstack, DEFINITION, pipeline.tasks(), name="run-1", retry_seconds=1
    )


def _states_entered(history: list[dict[str, Any]]) -> list[str]:
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history
        if "stateEnteredEventDetails" in event
    ]


def test_map_runs_each_listed_item_once_through_its_choice(
    localstack: LocalStack, shard_list: None
) -> None:
    pipeline = Pipeline()
    execution = _run(localstack, pipeline)
    assert (execution.status, execution.error) == ("SUCCEEDED", None)
    assert execution.output == {"verified": {"ok": True}}
    assert pipeline.calls["Plan"] == [{"execution": "run-1"}]
    assert sorted(call["Arguments"]["--shard"] for call in pipeline.calls["Glue"]) == [
        "1",
        "2",
    ]
    assert all(call["JobName"] == "aep-extract" for call in pipeline.calls["Glue"])
    assert pipeline.calls["Ecs"] == [
        {"TaskDefinition": "aep-extract", "Overrides": {"dataset": "d2", "shard": "1"}}
    ]
    # The Map's ResultPath null: Status gets the plan's output, Verify its own.
    planned = {"shards": {"Bucket": BUCKET, "Key": SHARDS}, "shard_count": 3}
    assert pipeline.calls["Status"] == [planned]
    assert pipeline.calls["Verify"] == [{**planned, "status": {"ok": True}}]


def test_no_shards_skip_the_map(localstack: LocalStack) -> None:
    pipeline = Pipeline(shard_count=0)
    execution = _run(localstack, pipeline)
    assert execution.status == "SUCCEEDED"
    assert "Copy" not in _states_entered(execution.history)
    assert pipeline.calls.keys() == {"Plan", "Status", "Verify"}


def test_retry_repeats_a_task_on_the_errors_it_names(
    localstack: LocalStack, shard_list: None
) -> None:
    pipeline = Pipeline(plan_errors=(Retryable("throttled"),), glue_failures=("2",))
    execution = _run(localstack, pipeline)
    assert execution.status == "SUCCEEDED"
    assert len(pipeline.calls["Plan"]) == 2
    # The Glue state retries a failed job run (States.TaskFailed) once.
    shards = sorted(call["Arguments"]["--shard"] for call in pipeline.calls["Glue"])
    assert shards == ["1", "2", "2"]


def test_an_error_not_named_by_retry_fails_at_once(localstack: LocalStack) -> None:
    pipeline = Pipeline(plan_errors=(Misconfigured("AEP_ORG_ID is missing"),) * 2)
    execution = _run(localstack, pipeline)
    assert (execution.status, execution.error) == ("FAILED", "Misconfigured")
    assert json.loads(execution.cause or "") == {
        "errorMessage": "AEP_ORG_ID is missing",
        "errorType": "Misconfigured",
    }
    assert pipeline.calls.keys() == {"Plan"}
    assert len(pipeline.calls["Plan"]) == 1


def test_catch_routes_an_error_to_its_state(
    localstack: LocalStack, shard_list: None
) -> None:
    pipeline = Pipeline(verify_error=VerificationFailed("d1: 2 units Failed"))
    execution = _run(localstack, pipeline)
    assert (execution.status, execution.error) == ("FAILED", "VerificationFailed")
    assert json.loads(execution.cause or "")["errorMessage"] == "d1: 2 units Failed"
    assert _states_entered(execution.history)[-1] == "Unverified"
