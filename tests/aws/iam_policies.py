"""The IAM policies (the docs', the template's roles') against the AWS calls the
code makes.

A recorder of the calls boto3 sessions' clients send, one table mapping each call to
the IAM request(s) AWS authorizes for it, the policies of ``docs/policies`` with their
placeholders filled in, and an evaluator: ``@cloud-copilot/iam-simulate`` (which
evaluates conditions), installed by npm into a cache directory and run by node.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import boto3
import pytest

from ..npm_tools import npm_install

POLICIES = Path(__file__).parents[2] / "docs" / "policies"
SIMULATOR = Path(__file__).parent / "iam_simulate"
"""package.json and package-lock.json pinning iam-simulate, and the node script."""


class Call(NamedTuple):
    """One API call a client sent."""

    service: str
    operation: str
    params: Mapping[str, Any]


class IamRequest(NamedTuple):
    """What IAM authorizes: an action on a resource, in a condition context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


class CallRecorder:
    """Records every call of the clients made from ``session`` (register before
    they are made: a client copies the session's event handlers)."""

    def __init__(
        self, session: boto3.Session, calls: Optional[list[Call]] = None
    ) -> None:
        self.calls: list[Call] = [] if calls is None else calls
        session.events.register("provide-client-params", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        kept = {k: v for k, v in params.items() if k != "Body"}
        self.calls.append(Call(service, model.name, kept))


@contextlib.contextmanager
def recording_every_session() -> Iterator[list[Call]]:
    """Records the calls of every boto3 session made meanwhile, boto3's default
    session included: the code under test makes its own sessions and clients."""
    calls: list[Call] = []
    init = boto3.session.Session.__init__

    def recorded_init(session: boto3.Session, *args: Any, **kwargs: Any) -> None:
        init(session, *args, **kwargs)
        CallRecorder(session, calls)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boto3.session.Session, "__init__", recorded_init)
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        yield calls


# -- calls to IAM requests ------------------------------------------------------------

S3_ACTIONS: Mapping[str, tuple[str, str]] = {
    # operation: (IAM action, resource: the "bucket" or the "object")
    "HeadBucket": ("s3:ListBucket", "bucket"),
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", "bucket"),
    "HeadObject": ("s3:GetObject", "object"),
    "GetObject": ("s3:GetObject", "object"),
    "PutObject": ("s3:PutObject", "object"),
    "CreateMultipartUpload": ("s3:PutObject", "object"),
    "UploadPart": ("s3:PutObject", "object"),
    "CompleteMultipartUpload": ("s3:PutObject", "object"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "object"),
}
"""The S3 API reference, "Permissions" of each operation."""

KMS_ACTIONS: Mapping[str, str] = {
    # operation on an SSE-KMS object: what S3 asks KMS for on the caller's behalf
    "PutObject": "kms:GenerateDataKey",
    "CreateMultipartUpload": "kms:GenerateDataKey",
    "UploadPart": "kms:Decrypt",
    "CompleteMultipartUpload": "kms:Decrypt",  # with part checksums
    "GetObject": "kms:Decrypt",
    "HeadObject": "kms:Decrypt",  # with ChecksumMode=ENABLED only
}
"""The S3 API reference, "Permissions" of each operation (general purpose buckets)."""

DYNAMODB_OPERATIONS = frozenset(
    {
        "DescribeTable",
        "CreateTable",
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchGetItem",
        "Query",
        "Scan",
    }
)
"""DynamoDB operations whose IAM action is ``dynamodb:<operation>`` on the table (the
index for a Query or Scan of one)."""

GLUE_TABLE_OPERATIONS = frozenset(
    {"GetTable", "CreateTable", "BatchCreatePartition", "BatchGetPartition"}
)
"""Glue operations on a table whose IAM action is ``glue:<operation>``."""


OTHER_ACTIONS: Mapping[tuple[str, str], Callable[..., IamRequest]] = {
    # (service, operation): the request, from the call's params, region, account
    ("secretsmanager", "GetSecretValue"): lambda params, **_: IamRequest(
        "secretsmanager:GetSecretValue", _secret_arn(params["SecretId"])
    ),
    ("glue", "GetJobRun"): lambda params, region, account: IamRequest(
        "glue:GetJobRun", f"arn:aws:glue:{region}:{account}:job/{params['JobName']}"
    ),
    # PutMetricData to the default dataset names no resource; the namespace is a
    # condition key.
    ("cloudwatch", "PutMetricData"): lambda params, **_: IamRequest(
        "cloudwatch:PutMetricData",
        "*",
        (("cloudwatch:namespace", params["Namespace"]),),
    ),
}
"""The Service Authorization Reference of each service: one action per operation."""


def _secret_arn(secret_id: str) -> str:
    # IAM authorizes the secret's full ARN, which a secret's name does not give.
    if not secret_id.startswith("arn:"):
        raise KeyError(f"secret {secret_id!r}: name secrets by ARN in these tests")
    return secret_id


def iam_requests(
    call: Call, *, region: str, account: str, kms_key_arn: Optional[str] = None
) -> list[IamRequest]:
    """The IAM requests AWS authorizes for ``call``; ``kms_key_arn``: the key of
    the SSE-KMS objects the call touches, if any.

    Raises:
        KeyError: an operation the table does not know; add it.
    """
    params = call.params
    if call.service == "s3":
        action, kind = S3_ACTIONS[call.operation]
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        resource = bucket if kind == "bucket" else f"{bucket}/{params['Key']}"
        context: tuple[tuple[str, str], ...] = ()
        if action == "s3:ListBucket" and "Prefix" in params:
            context = (("s3:prefix", params["Prefix"]),)
        found = [IamRequest(action, resource, context)]
        if "ACL" in params:
            found.append(IamRequest("s3:PutObjectAcl", resource))
        reads_key = call.operation != "HeadObject" or "ChecksumMode" in params
        if kms_key_arn is not None and call.operation in KMS_ACTIONS and reads_key:
            via = (("kms:ViaService", f"s3.{region}.amazonaws.com"),)
            found.append(IamRequest(KMS_ACTIONS[call.operation], kms_key_arn, via))
        return found
    if call.service == "dynamodb":
        if call.operation not in DYNAMODB_OPERATIONS:
            raise KeyError(f"dynamodb {call.operation}")
        tables = params.get("RequestItems") or [params["TableName"]]
        found = []
        for table in tables:
            resource = f"arn:aws:dynamodb:{region}:{account}:table/{table}"
            if "IndexName" in params:
                resource += f"/index/{params['IndexName']}"
            found.append(IamRequest(f"dynamodb:{call.operation}", resource))
        return found
    if call.service == "glue" and call.operation in GLUE_TABLE_OPERATIONS:
        # Glue authorizes a table's action on the catalog, database and table.
        database = params["DatabaseName"]
        table = (
            params.get("TableName")
            or params.get("Name")
            or (params["TableInput"]["Name"])
        )
        arn = f"arn:aws:glue:{region}:{account}"
        return [
            IamRequest(f"glue:{call.operation}", resource)
            for resource in (
                f"{arn}:catalog",
                f"{arn}:database/{database}",
                f"{arn}:table/{database}/{table}",
            )
        ]
    other = OTHER_ACTIONS.get((call.service, call.operation))
    if other is not None:
        return [other(params, region=region, account=account)]
    raise KeyError(f"{call.service} {call.operation}")


# -- policies -------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\b(BUCKET|PREFIX|REGION|ACCOUNT|KEY-ID|TABLE|DATABASE)\b")


def policy(name: str, **values: str) -> dict[str, Any]:
    """``docs/policies/<name>`` with its placeholders replaced: ``KEY_ID="k"``
    replaces ``KEY-ID``, ``WRITER_ACCOUNT`` ``WRITER-ACCOUNT``."""
    text = (POLICIES / name).read_text()
    # Longest first: WRITER-ACCOUNT before ACCOUNT.
    for placeholder in sorted(values, key=len, reverse=True):
        text = text.replace(placeholder.replace("_", "-"), values[placeholder])
    left = _PLACEHOLDER.search(text)
    assert left is None, f"{name}: placeholder {left.group()} left unfilled"
    document: dict[str, Any] = json.loads(text)
    return document


# -- the evaluator --------------------------------------------------------------------


def install_simulator() -> Path:
    """A directory whose node_modules hold the pinned iam-simulate (see
    :func:`tests.npm_tools.npm_install`)."""
    return npm_install(
        SIMULATOR, "@cloud-copilot/iam-simulate", needed_by="the IAM policy tests"
    )


class Simulator:
    """Decides IAM requests with iam-simulate, one node process per batch."""

    def __init__(self, install_dir: Path) -> None:
        self._install_dir = install_dir

    def decide(
        self,
        requests: Sequence[IamRequest],
        *,
        identity_policy: Mapping[str, Any],
        principal: str,
        resource_account: str,
        resource_policy: Optional[Mapping[str, Any]] = None,
    ) -> list[str]:
        """``Allowed``, ``ImplicitlyDenied`` or ``ExplicitlyDenied`` per request.

        Fails on a request the evaluator refuses (unknown action, wrong resource
        type) or a context key it ignores: a condition would then go unchecked.
        """
        document: dict[str, Any] = {
            "principal": principal,
            "identityPolicy": identity_policy,
            "requests": [
                {
                    "action": r.action,
                    "resource": r.resource,
                    "accountId": resource_account,
                    "context": dict(r.context),
                }
                for r in requests
            ],
        }
        if resource_policy is not None:
            document["resourcePolicy"] = resource_policy
        done = subprocess.run(
            ["node", str(SIMULATOR / "simulate.mjs"), str(self._install_dir)],
            input=json.dumps(document),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        answers = json.loads(done.stdout)
        for request, answer in zip(requests, answers):
            assert answer["decision"] != "Error", (request, answer["errors"])
            assert answer["ignoredContextKeys"] == [], (request, answer)
        return [answer["decision"] for answer in answers]


def merged(documents: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One policy with the statements of ``documents`` (a role's policies): IAM
    allows what any of them allows, unless one denies it."""
    statements = [s for d in documents for s in _as_list(d["Statement"])]
    return {"Version": "2012-10-17", "Statement": statements}


def unused_grants(
    simulator: Simulator,
    policy_document: Mapping[str, Any],
    requests: Sequence[IamRequest],
    **kwargs: Any,
) -> list[tuple[str, str]]:
    """``(Sid, action)`` of each action that an Allow statement grants and that
    none of ``requests`` needs from it: what least privilege would leave out.
    ``kwargs``: those of :meth:`Simulator.decide` but the identity policy."""
    unused = []
    for statement in _as_list(policy_document["Statement"]):
        if statement["Effect"] != "Allow":
            continue
        actions = {a.lower(): a for a in _as_list(statement["Action"])}
        assert not any("*" in a for a in actions), statement
        asking = [r for r in requests if r.action.lower() in actions]
        alone = {"Version": "2012-10-17", "Statement": [statement]}
        decisions = (
            simulator.decide(asking, identity_policy=alone, **kwargs) if asking else []
        )
        used = {r.action.lower() for r, d in zip(asking, decisions) if d == "Allowed"}
        unused += [
            (statement.get("Sid", "?"), a) for k, a in actions.items() if k not in used
        ]
    return unused


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def unique(requests: Iterable[IamRequest]) -> list[IamRequest]:
    """The requests without repeats, in first-seen order."""
    return list(dict.fromkeys(requests))
