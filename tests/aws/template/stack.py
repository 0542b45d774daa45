"""The shipped template deployed into moto's CloudFormation (server mode).

moto's CloudFormation leaves out what it does not implement: the Glue job, the
alarms, the S3 bucket policy, the SNS subscription and a created secret (it warns
and skips them), and the table's point-in-time recovery and SSE, the bucket's public
access block and lifecycle rule (it drops these properties). :meth:`Stack.resolved`
gives the properties of any resource as the stack resolved them, with moto's own
resolver, so the tests check those from there. moto's ``Fn::Sub`` also turns
``$$`` into ``$`` (it substitutes with :class:`string.Template`), so the state
machine it stores reads ``$.Execution`` where the template (and AWS) has
``$$.Execution``: the tests of :mod:`.test_static` check those paths.
"""

from __future__ import annotations

import ast
import copy
import json
import time
from collections.abc import Mapping
from typing import Any

import attrs
import boto3
from moto.cloudformation.models import cloudformation_backends
from moto.cloudformation.parsing import clean_json
from moto.core.models import DEFAULT_ACCOUNT_ID

from aep_extract.aws.template import template_text

from .cfn import parsed_template

STACK = "aep"
ARTIFACTS = "artifact-bucket"
ARTIFACT_PREFIX = "aep-extract/"


@attrs.frozen
class Stack:
    """A stack deployed from the template into the moto server."""

    name: str
    session: boto3.Session
    endpoint: str
    region: str
    parameters: Mapping[str, str]
    outputs: Mapping[str, str]
    physical_ids: Mapping[str, str]

    def client(self, service: Any) -> Any:
        """A client of the moto server (``service`` as boto3 names it)."""
        return self.session.client(service, endpoint_url=self.endpoint)

    def resolved(self, logical_id: str) -> dict[str, Any]:
        """The resource's properties as the stack resolved them."""
        backend = cloudformation_backends[DEFAULT_ACCOUNT_ID][self.region]
        (stack,) = [s for s in backend.stacks.values() if s.name == self.name]
        properties = stack.template_dict["Resources"][logical_id]["Properties"]
        resolved: dict[str, Any] = clean_json(
            copy.deepcopy(properties), stack.resource_map
        )
        return resolved

    def role_policies(self, logical_id: str) -> list[dict[str, Any]]:
        """Every policy document of a role: inline, then the managed policies that
        the template attaches to it (moto creates those but does not attach them)."""
        iam = self.client("iam")
        name = self.physical_ids[logical_id]
        documents = [
            iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
        ]
        for arn in self.resolved(logical_id).get("ManagedPolicyArns", []):
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            documents.append(
                iam.get_policy_version(PolicyArn=arn, VersionId=version)[
                    "PolicyVersion"
                ]["Document"]
            )
        return [_document(d) for d in documents]


def _document(document: Any) -> dict[str, Any]:
    """A policy document as botocore returns it: decoded, or text. moto's
    CloudFormation stores a role's inline policy as the Python repr of a dict."""
    decoded: dict[str, Any]
    if isinstance(document, dict):
        decoded = document
    else:
        try:
            decoded = json.loads(document)
        except json.JSONDecodeError:
            decoded = ast.literal_eval(document)
    # moto also keeps a statement that an !If made AWS::NoValue, as null.
    statements = decoded["Statement"]
    if isinstance(statements, list):
        decoded["Statement"] = [s for s in statements if s is not None]
    return decoded


def deploy(
    session: boto3.Session,
    endpoint: str,
    parameters: Mapping[str, str],
    *,
    name: str = STACK,
) -> Stack:
    """Upload the artifacts the stack needs, create the stack and wait for it."""
    s3 = session.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=ARTIFACTS)
    for artifact in ("lambda.zip", "glue_job.py"):  # moto's Lambda reads the zip
        s3.put_object(Bucket=ARTIFACTS, Key=ARTIFACT_PREFIX + artifact, Body=b"stub")
    cloudformation = session.client("cloudformation", endpoint_url=endpoint)
    given = {"ArtifactBucket": ARTIFACTS, **parameters}
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=template_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    for _ in range(600):
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        time.sleep(0.05)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    summaries = cloudformation.list_stack_resources(StackName=name)[
        "StackResourceSummaries"
    ]
    return Stack(
        name=name,
        session=session,
        endpoint=endpoint,
        region=session.region_name,
        parameters=given,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]},
        physical_ids={
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in summaries
            if r["LogicalResourceId"]
        },
    )


def resources_of_type(kind: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        name: resource
        for name, resource in parsed_template()["Resources"].items()
        if resource["Type"] == kind
    }
