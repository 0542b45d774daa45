"""The shipped CloudFormation template as the tests read it: parsed by cfn-lint's
loader (which knows the short-form tags), and its state machine with the
template's placeholders filled in."""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from aep_extract.aws.template import template_text

from ...npm_tools import npm_install

ASL_VALIDATOR = Path(__file__).parent / "asl_validator"
"""package.json and package-lock.json pinning asl-validator."""

_PLACEHOLDER = re.compile(r"\$\{([^}!]+)\}")

ECS_VALUES: Mapping[str, str] = {
    "AWS::Partition": "aws",
    "PlanFunction.Arn": "arn:aws:lambda:us-east-1:123456789012:function:plan",
    "StatusFunction.Arn": "arn:aws:lambda:us-east-1:123456789012:function:status",
    "VerifyFunction.Arn": "arn:aws:lambda:us-east-1:123456789012:function:verify",
    "GlueJobName": "none",
    "GlueTaskSeconds": "7800",
    "ClusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/aep-workers",
    "TaskDefinitionArn": (
        "arn:aws:ecs:us-east-1:123456789012:task-definition/aep-worker:1"
    ),
    "EcsNetwork": json.dumps(
        {
            "AwsvpcConfiguration": {
                "Subnets": ["subnet-1", "subnet-2"],
                "SecurityGroups": ["sg-1"],
                "AssignPublicIp": "DISABLED",
            }
        }
    ),
    "EcsTaskSeconds": "7200",
    "EcsDeadlineSeconds": "6900",
    "MaxConcurrency": "5",
    "ToleratedWorkerFailures": "2",
}
"""Plausible values of the state machine's placeholders in a stack of ECS workers."""

GLUE_VALUES: Mapping[str, str] = {
    **ECS_VALUES,
    "GlueJobName": "aep-worker",
    "ClusterArn": "none",
    "TaskDefinitionArn": "none",
    "EcsNetwork": "{}",
}
"""The same for a stack of Glue workers (the ECS names are placeholders)."""


@functools.cache
def parsed_template() -> dict[str, Any]:
    """The template, fully parsed (short-form tags as ``{"Fn::Sub": ...}``)."""
    template, problems = decode_str(template_text())
    assert not problems, problems
    document: dict[str, Any] = template
    return document


def definition_source() -> str:
    """The state machine's ASL with its ``${...}`` placeholders."""
    sub = parsed_template()["Resources"]["StateMachine"]["Properties"][
        "DefinitionString"
    ]["Fn::Sub"]
    source: str = sub[0]
    return source


def definition(values: Mapping[str, str]) -> dict[str, Any]:
    """The state machine with each placeholder replaced from ``values``, as
    ``Fn::Sub`` does (every placeholder must have a value)."""
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], definition_source())
    document: dict[str, Any] = json.loads(text)
    return document


def validate_asl(document: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    """asl-validator's verdict on a state machine definition."""
    install = npm_install(
        ASL_VALIDATOR, "asl-validator", needed_by="the state machine tests"
    )
    cli = install / "node_modules" / "asl-validator" / "dist" / "bin"
    return subprocess.run(
        [
            "node",
            str(cli / "asl-validator.js"),
            "--json-definition",
            json.dumps(document),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def states(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of a definition by name, those of the Map's processor included."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in document["States"].items():
        found[name] = state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.update(states(processor))
    return found
