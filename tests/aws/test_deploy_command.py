"""``aep-extract aws deploy`` against moto's CloudFormation, S3 and the services the
template creates, in server mode.

moto's change sets fall short of CloudFormation's in two ways, and the tests work
around both:

- executing one leaves the stack without outputs (``create_stack`` computes them):
  the ``cloudformation`` fixture computes them after each execution;
- an update that gives a parameter its previous value or its default
  (``UsePreviousValue``) looks to moto like a change (it compares its typed values
  with the texts it was given), and moto then fails rebuilding the ECS resources a
  false condition left out. The update test therefore creates the stack with every
  parameter given, so that its update changes only what it names.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import attrs
import boto3
import pytest
from moto.cloudformation.models import CloudFormationBackend, Event

from aep_extract._aws_errors import one_attempt_config
from aep_extract.aws.deploy import TEMPLATE_BODY_LIMIT, deploy, secret_file_text
from aep_extract.aws.package import default_requirement
from aep_extract.aws.template import template_parameters, template_text
from aep_extract.cli import main
from aep_extract.errors import ConfigError, DeployFailed

from .conftest import fail_sends

pytestmark = pytest.mark.filterwarnings(
    # moto's CloudFormation names each resource type it skips (see template/stack.py).
    "ignore:Tried to parse AWS.* not supported by moto:UserWarning"
)

STACK = "aep"
BUCKET = "artifacts"
PACKAGED = "aep-extract/0123456789abcdef/"
ROOT = Path(__file__).resolve().parents[2]
WHEEL = "aep_extract-1.0.0-py3-none-any.whl"


@attrs.frozen
class Moto:
    session: boto3.Session
    endpoint: str
    secret_arn: str

    def client(self, service: Any) -> Any:
        return self.session.client(service)

    def artifact_keys(self) -> list[str]:
        listed = self.client("s3").list_objects_v2(Bucket=BUCKET)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def stack(self) -> dict[str, Any]:
        (stack,) = self.client("cloudformation").describe_stacks(StackName=STACK)[
            "Stacks"
        ]
        found: dict[str, Any] = stack
        return found

    def stack_parameters(self) -> dict[str, str]:
        return {
            p["ParameterKey"]: p["ParameterValue"] for p in self.stack()["Parameters"]
        }

    def outputs(self) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in self.stack()["Outputs"]}


@pytest.fixture
def cloudformation(
    moto_over_http: boto3.Session, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> Moto:
    """The moto server with the artifact bucket, the artifacts of one package run
    (stubs: moto's Lambda takes any zip) and a secret: moto's CloudFormation cannot
    create one, and then fails on the policy that names it."""
    original = CloudFormationBackend.execute_change_set

    def execute_change_set(
        self: CloudFormationBackend, change_set_name: str, stack_name: Any = None
    ) -> None:
        original(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        assert change_set is not None
        stack = self.stacks[change_set.stack_id]
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    monkeypatch.setattr(CloudFormationBackend, "execute_change_set", execute_change_set)
    s3 = moto_over_http.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for name in ("lambda.zip", "glue_job.py", WHEEL):
        s3.put_object(Bucket=BUCKET, Key=PACKAGED + name, Body=_zip())
    secret = moto_over_http.client("secretsmanager").create_secret(
        Name="aep-credentials", SecretString="{}"
    )["ARN"]
    return Moto(moto_over_http, moto_server, secret)


def _zip() -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("stub.py", "")
    return data.getvalue()


def _deploy(
    capsys: pytest.CaptureFixture[str], *parameters: str, options: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    command = ["aws", "deploy", "--stack-name", STACK, "--artifact-bucket", BUCKET]
    command += options or ("--artifacts", PACKAGED)
    for parameter in parameters:
        command += ["--parameter", parameter]
    code = main(command)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_deploy_creates_the_stack_and_prints_its_outputs_and_the_secret_step(
    cloudformation: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _deploy(
        capsys, "DatasetIds=ds1,ds2", f"SecretArn={cloudformation.secret_arn}"
    )

    assert (code, err) == (0, "")
    stack = cloudformation.stack()
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {"ArtifactBucket", "ArtifactPrefix", "PipRequirement"} <= set(
        cloudformation.stack_parameters()
    )
    parameters = cloudformation.stack_parameters()
    assert parameters["ArtifactBucket"] == BUCKET
    assert parameters["ArtifactPrefix"] == PACKAGED
    assert parameters["PipRequirement"] == f"s3://{BUCKET}/{PACKAGED}{WHEEL}"
    assert parameters["DatasetIds"] == "ds1,ds2"
    outputs = cloudformation.outputs()
    machine = cloudformation.client("stepfunctions").describe_state_machine(
        stateMachineArn=outputs["StateMachineArn"]
    )
    assert machine["status"] == "ACTIVE"
    table = cloudformation.client("dynamodb").describe_table(
        TableName=outputs["TableName"]
    )
    assert table["Table"]["TableStatus"] == "ACTIVE"
    assert outputs["SecretArn"] == cloudformation.secret_arn
    width = max(map(len, outputs))
    assert out.splitlines() == [
        f"artifacts: s3://{BUCKET}/{PACKAGED}",
        f"stack {STACK}: CREATE_COMPLETE",
        "outputs:",
        *(f"  {key.ljust(width)}  {value}" for key, value in outputs.items()),
        "the one remaining step: put the AEP credentials into the secret (once), "
        "from a file aep-credentials.json that you keep private:",
        "  " + secret_file_text(),
        "  aws secretsmanager put-secret-value --secret-id "
        f"{cloudformation.secret_arn} --secret-string file://aep-credentials.json",
        "then start a run (or wait for the schedule):",
        "  aws stepfunctions start-execution --state-machine-arn "
        + outputs["StateMachineArn"],
    ]
    assert json.loads(secret_file_text()) == {
        "AEP_CLIENT_ID": "<AEP_CLIENT_ID>",
        "AEP_CLIENT_SECRET": "<AEP_CLIENT_SECRET>",
        "AEP_ORG_ID": "<AEP_ORG_ID>",
    }


def test_a_changed_parameter_updates_the_stack_and_keeps_the_others(
    cloudformation: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    defaults = {
        p.name: p.default for p in template_parameters() if p.default is not None
    }
    given = {**defaults, "MaxConcurrency": "8"}
    for name in ("ArtifactBucket", "ArtifactPrefix", "PipRequirement", "SecretArn"):
        given.pop(name, None)
    everything = [f"{name}={value}" for name, value in given.items()]
    first = ["DatasetIds=ds1", f"SecretArn={cloudformation.secret_arn}"]
    assert _deploy(capsys, *first, *everything)[0] == 0

    changed = [p for p in everything if not p.startswith("MaxConcurrency=")]
    code, out, err = _deploy(capsys, *changed, "MaxConcurrency=3")

    assert (code, err) == (0, "")
    assert f"stack {STACK}: UPDATE_COMPLETE" in out.splitlines()
    assert cloudformation.stack()["StackStatus"] == "UPDATE_COMPLETE"
    parameters = cloudformation.stack_parameters()
    assert parameters["MaxConcurrency"] == "3"
    # Not given this time: kept (UsePreviousValue).
    assert parameters["DatasetIds"] == "ds1"
    assert parameters["SecretArn"] == cloudformation.secret_arn
    # The plan function's setting (moto misses the ${MaxConcurrency} in the state
    # machine's Fn::Sub when it decides what an update changes).
    resources = cloudformation.client("cloudformation").list_stack_resources(
        StackName=STACK
    )["StackResourceSummaries"]
    (plan,) = [
        r["PhysicalResourceId"]
        for r in resources
        if r["LogicalResourceId"] == "PlanFunction"
    ]
    configuration = cloudformation.client("lambda").get_function_configuration(
        FunctionName=plan
    )
    variables = configuration["Environment"]["Variables"]
    assert str(variables["AEP_EXTRACT_MAX_CONCURRENCY"]) == "3"  # moto: the int 3


def test_deploy_packages_this_checkout_first(
    cloudformation: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real build (pip, for the Lambda runtime; needs the package index)."""
    parameters = ("DatasetIds=ds1", f"SecretArn={cloudformation.secret_arn}")
    code, out, err = _deploy(
        capsys,
        *parameters,
        options=("--artifact-prefix", "built", "--requirement", str(ROOT)),
    )

    assert (code, err) == (0, "")
    assert cloudformation.stack()["StackStatus"] == "CREATE_COMPLETE"
    stack = cloudformation.stack_parameters()
    (digest,) = {
        key.split("/")[1]
        for key in cloudformation.artifact_keys()
        if key.startswith("built/")
    }
    prefix = f"built/{digest}/"
    assert stack["ArtifactPrefix"] == prefix
    names = sorted(
        key.removeprefix(prefix)
        for key in cloudformation.artifact_keys()
        if key.startswith(prefix)
    )
    wheel, *others = names
    assert wheel.startswith("aep_extract-")
    assert wheel.endswith(".whl")
    assert others == ["glue_job.py", "lambda.zip"]
    assert stack["PipRequirement"] == f"s3://{BUCKET}/{prefix}{wheel}"
    assert out.splitlines()[0] == f"artifacts: s3://{BUCKET}/{prefix}"


def test_an_identical_deploy_reports_no_changes(
    cloudformation: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    parameters = ("DatasetIds=ds1", f"SecretArn={cloudformation.secret_arn}")
    assert _deploy(capsys, *parameters)[0] == 0
    created = cloudformation.stack()

    code, out, err = _deploy(capsys, *parameters)

    assert (code, err) == (0, "")
    assert out.splitlines()[:3] == [
        f"artifacts: s3://{BUCKET}/{PACKAGED}",
        f"stack {STACK}: no changes (CREATE_COMPLETE)",
        "outputs:",
    ]
    assert cloudformation.stack() == created


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        (
            ["DatasetIds=ds1", "MaxConcurency=3"],
            "unknown template parameter(s) MaxConcurency; the template's: "
            "DatasetIds, SecretArn, TableName, ",
        ),
        (["MaxConcurrency=3"], "missing template parameter(s): DatasetIds\n"),
        (
            ["DatasetIds=ds1", "ArtifactBucket=other"],
            "ArtifactBucket: set by --artifact-bucket, --artifact-prefix, "
            "--artifacts and --requirement, not as parameters\n",
        ),
        (["DatasetIds"], "--parameter 'DatasetIds': expected NAME=VALUE\n"),
    ],
)
def test_a_wrong_parameter_exits_2_before_packaging_or_deploying(
    cloudformation: Moto,
    capsys: pytest.CaptureFixture[str],
    parameters: list[str],
    error: str,
) -> None:
    before = cloudformation.artifact_keys()
    # Packaging (no --artifacts) would upload: nothing may be.
    code, out, err = _deploy(capsys, *parameters, options=("--requirement", "."))

    assert (code, out) == (2, "")
    assert err.startswith(f"aep-extract: error: {error}")
    assert err.count("\n") == 1
    assert cloudformation.client("cloudformation").list_stacks()["StackSummaries"] == []
    assert cloudformation.artifact_keys() == before


def test_packaged_artifacts_must_be_there(
    cloudformation: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _deploy(
        capsys, "DatasetIds=ds1", options=("--artifacts", "aep-extract/")
    )

    assert (code, out) == (2, "")
    assert err == (
        f"aep-extract: error: no lambda.zip or glue_job.py in s3://{BUCKET}/"
        "aep-extract/: give --artifacts the PREFIX/DIGEST/ that aep-extract aws "
        "package printed\n"
    )
    assert cloudformation.client("cloudformation").list_stacks()["StackSummaries"] == []


def test_without_a_wheel_glue_installs_the_requirement(
    cloudformation: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    cloudformation.client("s3").delete_object(Bucket=BUCKET, Key=PACKAGED + WHEEL)
    parameters = ("DatasetIds=ds1", f"SecretArn={cloudformation.secret_arn}")

    assert _deploy(capsys, *parameters)[0] == 0

    pip_requirement = cloudformation.stack_parameters()["PipRequirement"]
    assert pip_requirement == default_requirement()


def test_a_failed_stack_exits_1_with_the_failing_resources(
    cloudformation: Moto,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def roll_back(
        self: CloudFormationBackend, change_set_name: str, stack_name: Any = None
    ) -> None:
        """What CloudFormation does when a resource fails (moto never rolls back)."""
        change_set = self.describe_change_set(change_set_name)
        assert change_set is not None
        stack = self.stacks[change_set.stack_id]
        stack._add_stack_event("CREATE_IN_PROGRESS", "User Initiated")
        for logical_id, kind, status, reason in [
            ("CheckpointTable", "AWS::DynamoDB::Table", "CREATE_FAILED", "denied"),
            (
                "PlanRole",
                "AWS::IAM::Role",
                "CREATE_FAILED",
                "Resource creation cancelled",
            ),
            ("PlanRole", "AWS::IAM::Role", "DELETE_COMPLETE", None),
        ]:
            stack.events.append(
                Event(
                    stack.stack_id,
                    stack.name,
                    logical_id,
                    "",
                    kind,
                    status,
                    reason,
                    None,
                )
            )
        stack._add_stack_event("ROLLBACK_COMPLETE")
        stack.status = "ROLLBACK_COMPLETE"

    monkeypatch.setattr(CloudFormationBackend, "execute_change_set", roll_back)

    code, out, err = _deploy(capsys, "DatasetIds=ds1")

    assert (code, out) == (1, "")
    assert err == (
        f"aep-extract: failed: stack {STACK} is ROLLBACK_COMPLETE: CheckpointTable "
        "(AWS::DynamoDB::Table) CREATE_FAILED: denied; PlanRole (AWS::IAM::Role) "
        "CREATE_FAILED: Resource creation cancelled\n"
    )
    # CloudFormation cannot update the stack: it says so before packaging.
    before = cloudformation.artifact_keys()
    code, out, err = _deploy(capsys, options=("--requirement", "."))
    assert (code, out) == (2, "")
    assert err == (
        f"aep-extract: error: stack {STACK} is ROLLBACK_COMPLETE: its creation "
        "failed, and CloudFormation cannot update it; delete it (aws cloudformation "
        f"delete-stack --stack-name {STACK}), then deploy again\n"
    )
    assert cloudformation.artifact_keys() == before


def _cloudformation_error(code: str, message: str) -> bytes:
    """A CloudFormation (query protocol) error body."""
    return (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error></ErrorResponse>"
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "message", "error"),
    [
        (
            400,
            "ValidationError",
            "Parameter TableName failed to satisfy constraint",
            ConfigError(
                "CloudFormation refused stack aep: ValidationError: Parameter "
                "TableName failed to satisfy constraint"
            ),
        ),
        (
            403,
            "AccessDenied",
            "not authorized to perform: cloudformation:CreateChangeSet",
            ConfigError(
                "CloudFormation refused stack aep: AccessDenied: not authorized to "
                "perform: cloudformation:CreateChangeSet"
            ),
        ),
        (
            400,
            "Throttling",
            "Rate exceeded",
            DeployFailed(
                STACK, failures=["Throttling: Rate exceeded; a retry may pass"]
            ),
        ),
        (
            500,
            "",
            "",
            DeployFailed(
                STACK,
                failures=[
                    "CloudFormation's answer could not be read; a retry may pass"
                ],
            ),
        ),
    ],
)
def test_cloudformations_refusals_and_failures_are_mapped(
    cloudformation: Moto, status: int, code: str, message: str, error: Exception
) -> None:
    client = cloudformation.session.client(
        "cloudformation", config=one_attempt_config()
    )
    body = _cloudformation_error(code, message) if code else b"<!doctype html>\n<html>"
    fail_sends(client, "cloudformation.CreateChangeSet", 1, status, body)

    with pytest.raises(type(error)) as raised:
        deploy(
            STACK,
            artifact_bucket=BUCKET,
            packaged_prefix=PACKAGED,
            parameters={"DatasetIds": "ds1", "TableName": "x"},
            cloudformation=client,
        )

    assert str(raised.value) == str(error)
    assert client.list_stacks()["StackSummaries"] == []


def test_a_template_over_the_inline_limit_goes_through_s3(
    cloudformation: Moto,
) -> None:
    template = template_text()
    padding = TEMPLATE_BODY_LIMIT - len(template.encode()) + 1
    large = template + "#" * max(padding, 0) + "\n"
    # moto's CloudFormation reads a TemplateURL from its S3 when the URL names
    # localhost (or amazonaws.com): the client's endpoint gives the URL.
    s3 = cloudformation.session.client(
        "s3", endpoint_url=cloudformation.endpoint.replace("127.0.0.1", "localhost")
    )

    done = deploy(
        STACK,
        artifact_bucket=BUCKET,
        packaged_prefix=PACKAGED,
        parameters={"DatasetIds": "ds1", "SecretArn": cloudformation.secret_arn},
        template=large,
        s3=s3,
    )

    assert done.status == "CREATE_COMPLETE"
    uploaded = [k for k in cloudformation.artifact_keys() if k.endswith(".yaml")]
    assert [k.rsplit("/", 1)[0] + "/" for k in uploaded] == [PACKAGED]
    body = cloudformation.client("s3").get_object(Bucket=BUCKET, Key=uploaded[0])
    assert body["Body"].read() == large.encode()
    stored = cloudformation.client("cloudformation").get_template(StackName=STACK)
    assert stored["TemplateBody"] == large


def test_the_shipped_template_goes_inline() -> None:
    """The deploy command that ``aws package`` prints (``aws cloudformation deploy
    --template-file``, without ``--s3-bucket``) works only up to this size."""
    assert len(template_text().encode()) <= TEMPLATE_BODY_LIMIT


def test_no_wait_prints_how_to_follow(
    cloudformation: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    parameters = ("DatasetIds=ds1", f"SecretArn={cloudformation.secret_arn}")
    code, out, _ = _deploy(
        capsys, *parameters, options=("--artifacts", PACKAGED, "--no-wait")
    )

    assert code == 0
    # moto completes a stack at once: the status is already final.
    assert out.splitlines()[1:] == [
        f"stack {STACK}: CREATE_COMPLETE; follow it with:",
        f"  aws cloudformation wait stack-create-complete --stack-name {STACK}",
    ]


def test_unknown_parameters_fail_before_any_aws_call() -> None:
    # No moto, no credentials needed: the check comes first.
    with pytest.raises(ConfigError, match="unknown template parameter"):
        deploy(STACK, artifact_bucket=BUCKET, parameters={"Nope": "1"})
