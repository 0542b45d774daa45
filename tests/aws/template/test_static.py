"""The shipped template checked without deploying it: cfn-lint on the whole
template, asl-validator and the retry rules on its state machine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from aep_extract.aws.template import template_text

from .cfn import ECS_VALUES, GLUE_VALUES, definition, states, validate_asl

RETRYABLE_LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Retryable",
}
"""What a retry of a step's Lambda function can fix."""

WORKER_RETRIES = {
    "Glue": {
        "Glue.ConcurrentRunsExceededException",
        "Glue.ResourceNumberLimitExceededException",
        "Glue.ThrottlingException",
        "Glue.AWSGlueException",
    },
    "Ecs": {
        "ECS.ThrottlingException",
        "ECS.LimitExceededException",
        "ECS.AmazonECSException",
    },
}
"""What a retry of a worker task can fix: the service's throttling and limits.
Errors that the service's API does not model (its ThrottlingException among them)
reach Step Functions under the SDK's base name (``ECS.AmazonECSException``,
``Glue.AWSGlueException``); a worker that fails is ``States.TaskFailed``."""


def test_cfn_lint_finds_nothing(tmp_path: Path) -> None:
    # Informational checks too. The two sink policies disable W1031 in their
    # Metadata: cfn-lint resolves BucketName to its default "" in the branch of
    # CreateBucket=false, which the template's Rules forbid.
    path = tmp_path / "pipeline.yaml"
    path.write_text(template_text())
    matches = lint_file(path, config=ManualArgs(include_checks=["I"]))
    assert [str(match) for match in matches] == []


@pytest.mark.parametrize(
    "values", [GLUE_VALUES, ECS_VALUES], ids=["glue-workers", "ecs-workers"]
)
def test_asl_validator_accepts_the_state_machine(values: Mapping[str, str]) -> None:
    verdict = validate_asl(definition(values))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "is valid" in verdict.stdout


def test_asl_validator_is_not_a_rubber_stamp() -> None:
    broken = definition(GLUE_VALUES)
    broken["States"]["HasWork"]["Default"] = "NoSuchState"
    verdict = validate_asl(broken)
    assert verdict.returncode != 0
    assert "NoSuchState" in verdict.stdout + verdict.stderr


def _lambda_steps(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: state
        for name, state in states(document).items()
        if state.get("Resource", "").endswith(":states:::lambda:invoke")
    }


def test_steps_retry_only_what_a_retry_can_fix() -> None:
    steps = _lambda_steps(definition(GLUE_VALUES))
    assert set(steps) == {"Plan", "Status", "Verify"}
    for name, state in steps.items():
        retried = {e for retry in state["Retry"] for e in retry["ErrorEquals"]}
        assert retried == RETRYABLE_LAMBDA_ERRORS, name
        caught = {c["ErrorEquals"][0]: c["Next"] for c in state["Catch"]}
        assert caught["Misconfigured"] == "Misconfigured", name
    verify_catches = {c["ErrorEquals"][0] for c in steps["Verify"]["Catch"]}
    assert verify_catches == {"Misconfigured", "VerificationFailed"}


def test_a_configuration_error_fails_the_execution_at_once() -> None:
    every = states(definition(GLUE_VALUES))
    assert every["Misconfigured"]["Type"] == "Fail"
    assert every["Misconfigured"]["Error"] == "Misconfigured"
    assert every["VerificationFailed"]["Type"] == "Fail"
    for name, state in every.items():
        for retry in state.get("Retry", []):
            assert not {"Misconfigured", "States.ALL", "States.TaskFailed"} & set(
                retry["ErrorEquals"]
            ), name


@pytest.mark.parametrize("worker", ["Glue", "Ecs"])
def test_a_failed_worker_is_not_retried(worker: str) -> None:
    # A worker that exits 1 or 2 fails its task (States.TaskFailed); the Map counts
    # it against ToleratedFailureCount, the next run resumes its units.
    state = states(definition(ECS_VALUES))[worker]
    retried = {e for retry in state["Retry"] for e in retry["ErrorEquals"]}
    assert retried == WORKER_RETRIES[worker]


def test_worker_tasks_outlast_the_workers_graceful_stop() -> None:
    every = states(definition(ECS_VALUES))
    glue, ecs = every["Glue"], every["Ecs"]
    # Glue stops the job at GlueTimeoutMinutes (120 here: the task gets 7800 s).
    assert glue["TimeoutSeconds"] > 120 * 60
    command = ecs["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
    deadline = int(command.split("'--deadline', '")[1].split("'")[0])
    assert deadline < ecs["TimeoutSeconds"]
    assert "$.dataset" in command
    assert "$.requests_per_second" in command


def test_the_map_reads_the_plans_shard_list() -> None:
    document = definition(GLUE_VALUES)
    copy = document["States"]["Copy"]
    assert copy["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.shards.Bucket", "Key.$": "$.shards.Key"},
    }
    assert copy["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert copy["MaxConcurrency"] == int(GLUE_VALUES["MaxConcurrency"])
    assert copy["ToleratedFailureCount"] == int(GLUE_VALUES["ToleratedWorkerFailures"])
    assert copy["ResultPath"] is None  # status and verify read the plan's windows
    for worker in ("Glue", "Ecs"):
        # The Map holds every item's output (at most 256 KiB in all): none.
        assert states(document)[worker]["OutputPath"] is None
    glue = states(document)["Glue"]["Parameters"]["Arguments"]
    assert glue == {
        "--dataset.$": "$.dataset",
        "--threads.$": "$.threads",
        "--requests_per_second.$": "$.requests_per_second",
    }


def test_the_plan_gets_the_execution_input_and_name() -> None:
    document = definition(GLUE_VALUES)
    assert document["States"]["Start"]["Parameters"] == {
        "execution.$": "$$.Execution.Name"
    }
    payload = document["States"]["Plan"]["Parameters"]["Payload.$"]
    assert payload == "States.JsonMerge($$.Execution.Input, $, false)"
    assert document["States"]["HasWork"]["Choices"] == [
        {"Variable": "$.shard_count", "NumericEquals": 0, "Next": "Status"}
    ]
