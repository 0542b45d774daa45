"""Deploy the AWS pipeline's stack: ``aep-extract aws deploy``.

It does what ``aws cloudformation deploy`` does with the shipped template: a change
set (``CREATE`` for a new stack, ``UPDATE`` for an existing one) with
``CAPABILITY_NAMED_IAM``, executed and waited for. On an update, a parameter not
given keeps the stack's value; a change set without changes is no error. The
artifacts come from :func:`~aep_extract.aws.package.package`, or from an earlier
run of it. The parameters are checked against the template before anything is
uploaded or changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

import attrs

from .._aws_errors import aws_config_errors, transient_kind
from ..errors import ConfigError, DeployFailed
from .package import (
    DEFAULT_PREFIX,
    Uploaded,
    access_denied_is_config,
    default_requirement,
    package,
)
from .secrets import REQUIRED_KEYS
from .template import TemplateParameter, parse_parameters, template_text

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.literals import ChangeSetTypeType
    from mypy_boto3_cloudformation.type_defs import (
        ParameterTypeDef,
        StackTypeDef,
        WaiterConfigTypeDef,
    )
    from mypy_boto3_s3 import S3Client

    from ..sinks.s3 import S3Sink

__all__ = [
    "ARTIFACT_PARAMETERS",
    "SECRET_FILE",
    "TEMPLATE_BODY_LIMIT",
    "Deployment",
    "deploy",
    "secret_file_text",
]

logger = logging.getLogger(__name__)

TEMPLATE_BODY_LIMIT = 51_200
"""CloudFormation's limit on a template sent inline (``TemplateBody``), in bytes; a
larger one is uploaded next to the artifacts and sent as ``TemplateURL``."""

CAPABILITIES = ("CAPABILITY_NAMED_IAM",)
"""The template creates IAM roles and policies with names."""

ARTIFACT_PARAMETERS = frozenset({"ArtifactBucket", "ArtifactPrefix", "PipRequirement"})
"""The parameters that name the artifacts, which :func:`deploy` sets (those of
:meth:`Uploaded.parameter_overrides
<aep_extract.aws.package.Uploaded.parameter_overrides>`)."""

_NO_CHANGES = (
    "The submitted information didn't contain changes",
    "No updates are to be performed",
)
"""How CloudFormation says a change set changes nothing (as the AWS CLI reads it)."""

SECRET_FILE = "aep-credentials.json"
"""The file name the printed ``put-secret-value`` command reads the secret from."""


_WAIT: WaiterConfigTypeDef = {
    "Delay": 5,
    "MaxAttempts": 720,
}  # an hour, polled every 5 s


@attrs.frozen(kw_only=True)
class Deployment:
    """What :func:`deploy` did.

    Attributes:
        stack_name: the stack.
        status: its status: ``CREATE_COMPLETE`` or ``UPDATE_COMPLETE``; the
            status it had when nothing changed; ``..._IN_PROGRESS`` when not
            waited for.
        changed: False when the stack already was as asked.
        outputs: the stack's outputs (empty when not waited for).
        artifacts: the artifacts the stack uses.
    """

    stack_name: str
    status: str
    changed: bool
    outputs: Mapping[str, str] = attrs.field(factory=dict)
    artifacts: Uploaded

    def put_secret_command(self) -> Optional[str]:
        """The ``aws secretsmanager put-secret-value`` command that stores the AEP
        credentials in the stack's secret (from the file :func:`secret_file_text`
        describes); None without a ``SecretArn`` output."""
        secret = self.outputs.get("SecretArn")
        if not secret:
            return None
        words = ["aws", "secretsmanager", "put-secret-value", "--secret-id", secret]
        return shlex.join([*words, "--secret-string", f"file://{SECRET_FILE}"])


def secret_file_text() -> str:
    """What the secret holds, with placeholders for the values: the JSON object of
    the required ``AEP_*`` keys (see :mod:`aep_extract.aws.secrets`)."""
    return json.dumps({key: f"<{key}>" for key in REQUIRED_KEYS})


def deploy(
    stack_name: str,
    *,
    artifact_bucket: str,
    artifact_prefix: str = DEFAULT_PREFIX,
    requirement: Optional[str] = None,
    packaged_prefix: Optional[str] = None,
    parameters: Optional[Mapping[str, str]] = None,
    wait: bool = True,
    template: Optional[str] = None,
    cloudformation: Optional[CloudFormationClient] = None,
    s3: Optional[S3Client] = None,
) -> Deployment:
    """Create or update the stack ``stack_name`` from the pipeline's template.

    Args:
        stack_name: the stack.
        artifact_bucket: the bucket of the artifacts (``ArtifactBucket``).
        artifact_prefix: where :func:`~aep_extract.aws.package.package` puts them.
        requirement: what to package (see :func:`~aep_extract.aws.package.package`);
            with ``packaged_prefix``, what the Glue job installs when no wheel was
            uploaded there (default
            :func:`~aep_extract.aws.package.default_requirement`).
        packaged_prefix: deploy the artifacts already uploaded under this prefix
            (the ``PREFIX/DIGEST/`` that ``aep-extract aws package`` printed)
            instead of packaging.
        parameters: template parameters (``DatasetIds``, ...); on an update, the
            others keep the stack's values. The artifacts' parameters are set by
            the other arguments.
        wait: wait until the stack is created or updated.
        template: the template's text (default the shipped one,
            ``aep_extract.aws.template.template_text()``).
        cloudformation: the boto3 CloudFormation client (default one on boto3's
            chain).
        s3: the boto3 S3 client of the artifact bucket (default one on boto3's
            chain).

    Raises:
        ConfigError: an unknown or missing parameter, an invalid value, a stack
            CloudFormation cannot update, missing artifacts, missing permissions
            (and see :func:`~aep_extract.aws.package.package`).
        DeployFailed: the stack failed (its failing resources in the message), or
            CloudFormation failed.
    """
    template = template_text() if template is None else template
    known = {p.name: p for p in parse_parameters(template)}
    given = dict(parameters or {})
    _check_names(given, known)
    with _cloudformation_errors(stack_name):
        if cloudformation is None:
            import boto3

            cloudformation = boto3.client("cloudformation")
        stack = _existing(cloudformation, stack_name)
    kept = {p["ParameterKey"] for p in stack.get("Parameters", [])} if stack else set()
    missing = [
        p.name
        for p in known.values()
        if p.required and p.name not in {*given, *kept, *ARTIFACT_PARAMETERS}
    ]
    if missing:
        raise ConfigError(f"missing template parameter(s): {', '.join(missing)}")
    sink = _artifact_sink(artifact_bucket, packaged_prefix or artifact_prefix, s3)
    with sink, access_denied_is_config(sink.url):
        if packaged_prefix is None:
            artifacts = package(
                artifact_bucket,
                prefix=artifact_prefix,
                requirement=requirement,
                client=sink.client,
            )
        else:
            artifacts = _packaged(sink, requirement)
        source = _template_source(template, sink, artifacts)
    values = {**given, **artifacts.parameter_overrides()}
    sent: list[ParameterTypeDef] = [
        {"ParameterKey": k, "ParameterValue": v}
        for k, v in values.items()
        if k in known
    ]
    sent += [
        {"ParameterKey": k, "UsePreviousValue": True}
        for k in known
        if k in kept and k not in values
    ]
    with _cloudformation_errors(stack_name):
        return _apply(cloudformation, stack_name, stack, sent, source, wait, artifacts)


def _check_names(
    given: Mapping[str, str], known: Mapping[str, TemplateParameter]
) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(name for name in known if name not in ARTIFACT_PARAMETERS)
        raise ConfigError(
            f"unknown template parameter(s) {', '.join(unknown)}; the template's: "
            f"{valid}"
        )
    reserved = sorted(set(given) & ARTIFACT_PARAMETERS)
    if reserved:
        raise ConfigError(
            f"{', '.join(reserved)}: set by --artifact-bucket, --artifact-prefix, "
            "--artifacts and --requirement, not as parameters"
        )


def _existing(client: CloudFormationClient, stack_name: str) -> Optional[StackTypeDef]:
    """The stack, or None when there is none (or only one a change set never
    created, ``REVIEW_IN_PROGRESS``: a ``CREATE`` change set takes it over).

    Raises:
        ConfigError: the stack's creation failed: it can only be deleted.
    """
    from botocore.exceptions import ClientError

    try:
        (stack,) = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in str(
            error.get("Message", "")
        ):
            return None
        raise
    status = stack["StackStatus"]
    if status == "ROLLBACK_COMPLETE":
        delete = shlex.join(
            ["aws", "cloudformation", "delete-stack", "--stack-name", stack_name]
        )
        raise ConfigError(
            f"stack {stack_name} is ROLLBACK_COMPLETE: its creation failed, and "
            f"CloudFormation cannot update it; delete it ({delete}), then deploy again"
        )
    return None if status == "REVIEW_IN_PROGRESS" else stack


def _artifact_sink(bucket: str, prefix: str, client: Optional[S3Client]) -> S3Sink:
    from ..sinks.s3 import S3Sink

    return S3Sink(f"s3://{bucket}/{prefix.strip('/')}", client=client)


def _packaged(sink: S3Sink, requirement: Optional[str]) -> Uploaded:
    """The artifacts that ``aep-extract aws package`` uploaded to the sink's prefix."""
    sink.check()
    names = sorted(key for key in sink.list_keys() if "/" not in key)
    absent = [name for name in ("lambda.zip", "glue_job.py") if name not in names]
    if absent:
        raise ConfigError(
            f"no {' or '.join(absent)} in {sink.url}/: give --artifacts the "
            "PREFIX/DIGEST/ that aep-extract aws package printed"
        )
    wheels = [name for name in names if name.endswith(".whl")]
    prefix = f"{sink.prefix}/" if sink.prefix else ""
    if requirement is None and len(wheels) > 1:
        raise ConfigError(
            f"{sink.url}/ holds {len(wheels)} wheels: name the one Glue installs "
            "with --requirement"
        )
    if requirement is None and wheels:
        requirement = f"s3://{sink.bucket}/{prefix}{wheels[0]}"
    return Uploaded(
        bucket=sink.bucket,
        prefix=prefix,
        pip_requirement=requirement or default_requirement(),
        keys=tuple(prefix + name for name in names),
    )


def _template_source(
    template: str, sink: S3Sink, artifacts: Uploaded
) -> dict[str, str]:
    """``TemplateBody``, or for a template over :data:`TEMPLATE_BODY_LIMIT`, the
    ``TemplateURL`` of a copy uploaded next to the artifacts (path-style, on the S3
    client's endpoint, as the AWS CLI does)."""
    body = template.encode("utf-8")
    if len(body) <= TEMPLATE_BODY_LIMIT:
        return {"TemplateBody": template}
    name = f"pipeline-{hashlib.sha256(body).hexdigest()[:16]}.yaml"
    key = artifacts.prefix.removeprefix(f"{sink.prefix}/") + name
    sink.write_bytes(key, body)
    endpoint = sink.client.meta.endpoint_url
    path = quote(f"{artifacts.bucket}/{artifacts.prefix}{name}")
    return {"TemplateURL": f"{endpoint}/{path}"}


def _apply(
    client: CloudFormationClient,
    stack_name: str,
    stack: Optional[StackTypeDef],
    parameters: list[ParameterTypeDef],
    source: Mapping[str, str],
    wait: bool,
    artifacts: Uploaded,
) -> Deployment:
    from botocore.exceptions import ClientError, WaiterError

    kind: ChangeSetTypeType = "UPDATE" if stack else "CREATE"
    name = f"aep-extract-{uuid.uuid4().hex[:12]}"

    def unchanged() -> Deployment:
        assert stack is not None  # only an update can change nothing
        return Deployment(
            stack_name=stack_name,
            status=stack["StackStatus"],
            changed=False,
            outputs=_outputs(stack),
            artifacts=artifacts,
        )

    logger.info("creating change set %s (%s) of stack %s", name, kind, stack_name)
    try:
        created = client.create_change_set(
            StackName=stack_name,
            ChangeSetName=name,
            ChangeSetType=kind,
            Parameters=parameters,
            Capabilities=list(CAPABILITIES),  # type: ignore[arg-type]
            Description="aep-extract aws deploy",
            **source,  # type: ignore[arg-type]
        )
    except ClientError as exc:
        if stack and _says_no_changes(exc.response.get("Error", {}).get("Message")):
            return unchanged()
        raise
    change_set, stack_id = created["Id"], created["StackId"]
    try:
        client.get_waiter("change_set_create_complete").wait(
            ChangeSetName=change_set, WaiterConfig=_WAIT
        )
    except WaiterError:
        described = client.describe_change_set(ChangeSetName=change_set)
        reason = described.get("StatusReason", "")
        if stack and _says_no_changes(reason):
            client.delete_change_set(ChangeSetName=change_set)
            return unchanged()
        raise ConfigError(
            f"CloudFormation could not create change set {name} of stack "
            f"{stack_name} ({described['Status']}): {reason}"
        ) from None
    logger.info("executing change set %s", name)
    client.execute_change_set(ChangeSetName=change_set)
    if wait:
        waiter = (
            client.get_waiter("stack_update_complete")
            if stack
            else client.get_waiter("stack_create_complete")
        )
        with contextlib.suppress(WaiterError):  # the status below says why
            waiter.wait(StackName=stack_id, WaiterConfig=_WAIT)
    (final,) = client.describe_stacks(StackName=stack_id)["Stacks"]
    status = final["StackStatus"]
    if wait and status != f"{kind}_COMPLETE":
        failures = _failures(client, stack_id, stack_name)
        raise DeployFailed(stack_name, status, failures)
    return Deployment(
        stack_name=stack_name,
        status=status,
        changed=True,
        outputs=_outputs(final),
        artifacts=artifacts,
    )


def _says_no_changes(message: Optional[str]) -> bool:
    return any(words in (message or "") for words in _NO_CHANGES)


def _outputs(stack: StackTypeDef) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _failures(
    client: CloudFormationClient, stack_id: str, stack_name: str
) -> list[str]:
    """What failed in the stack's latest operation, oldest first: the events since
    it began (newest come first) whose status ends in ``_FAILED``."""
    failed: list[str] = []
    pages = client.get_paginator("describe_stack_events").paginate(StackName=stack_id)
    for page in pages:
        for event in page["StackEvents"]:
            status = event.get("ResourceStatus", "")
            own = event.get("LogicalResourceId") == stack_name
            if own and status in ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"):
                return failed[::-1]
            if status.endswith("_FAILED") and not own:
                failed.append(
                    f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}) "
                    f"{status}: {event.get('ResourceStatusReason', 'no reason given')}"
                )
    return failed[::-1]


@contextlib.contextmanager
def _cloudformation_errors(stack_name: str) -> Iterator[None]:
    """CloudFormation's refusals (an invalid value, a stack in a state that cannot
    be updated, access denied, missing capabilities) as :class:`ConfigError`; its
    failures (throttling, 5xx, the connection) as :class:`DeployFailed`."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        with aws_config_errors():
            yield
    except ClientError as exc:
        error: Any = exc.response.get("Error", {})
        said = f"{error.get('Code', '')}: {error.get('Message', '')}"
        if transient_kind(exc) is not None:
            raise DeployFailed(
                stack_name, failures=[f"{said}; a retry may pass"]
            ) from exc
        raise ConfigError(f"CloudFormation refused stack {stack_name}: {said}") from exc
    except (BotoCoreError, ResponseParserError) as exc:
        said = (
            "CloudFormation's answer could not be read"  # e.g. a proxy's HTML page
            if isinstance(exc, ResponseParserError)
            else str(exc)
        )
        raise DeployFailed(stack_name, failures=[f"{said}; a retry may pass"]) from exc
