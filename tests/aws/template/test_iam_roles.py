"""Each role of the template allows exactly what its component needs, checked with
a real IAM evaluator (iam-simulate, conditions included) on the roles' policies as
the stack deployed into moto's CloudFormation made them.

The plan, status and verify handlers and the worker (Glue and ECS) run in-process
against the stack's resources, with the environment and arguments the stack gives
them, and every AWS call they make is recorded: each must be allowed by the role of
its component, and each action a role grants must be needed by one of them (least
privilege). What the AWS services do with a role on the code's behalf (logs, the
Glue script, the image, the state machine's integrations, the schedule) cannot be
recorded: those requests come from a table of what AWS documents as required. Every
grant is needed by a recorded or documented request: no grant is exempted.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import attrs
import boto3
import pytest
import requests

from aep_extract.aws import handlers, worker
from aep_extract.testing import FakeAepPlatform

from ...e2e.helpers import DATASET, END, START
from ..conftest import REGION, fake_aws_env
from ..iam_policies import (
    IamRequest,
    Simulator,
    iam_requests,
    install_simulator,
    merged,
    recording_every_session,
    unique,
    unused_grants,
)
from ..pipeline.conftest import promote_loading_batches
from .stack import Stack, deploy

ACCOUNT = "123456789012"  # moto's
PARAMETERS = {
    "DatasetIds": DATASET,
    "WorkersPerDataset": "2",
    "ThreadsPerWorker": "2",
    "MaxConcurrency": "4",
}
ECS_PARAMETERS = {
    "WorkerType": "ecs",
    "ContainerImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/aep-extract:1",
    "Subnets": "subnet-1",
}
ROLES = {
    # role: the component whose requests it must allow
    "glue": {"PlanRole", "StatusRole", "VerifyRole", "GlueWorkerRole"},
    "ecs": {"PlanRole", "StatusRole", "VerifyRole", "EcsTaskRole", "EcsExecutionRole"},
}
STATIC_ROLES = ("StateMachineRole", "ScheduleRole")

pytestmark = pytest.mark.filterwarnings(
    # moto's CloudFormation names each resource type it skips (see .stack).
    "ignore:Tried to parse AWS.* not supported by moto:UserWarning"
)


@attrs.frozen
class Deployment:
    """A stack, its roles' policies, and the requests each role must allow."""

    stack: Stack
    policies: Mapping[str, dict[str, Any]]
    recorded: Mapping[str, list[IamRequest]]
    """By role: the requests of its component's code, recorded."""
    service: Mapping[str, list[IamRequest]]
    """By role: the requests the AWS services make with it
    (:func:`service_requests`)."""

    def requests(self, role: str) -> list[IamRequest]:
        return self.recorded.get(role, []) + self.service[role]

    def principal(self, role: str) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.stack.physical_ids[role]}"


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(install_simulator())


@pytest.fixture(scope="module", params=["glue", "ecs"])
def deployment(
    request: pytest.FixtureRequest, moto_server: str
) -> Iterator[Deployment]:
    try:
        with pytest.MonkeyPatch.context() as env, FakeAepPlatform.generate() as aep:
            fake_aws_env(env)
            env.setenv("AWS_ENDPOINT_URL", moto_server)
            for name in aep.env():
                env.delenv(name, raising=False)  # only the secret has them
            promote_loading_batches(aep)
            yield deploy_and_run(moto_server, aep, request.param)
    finally:
        requests.post(f"{moto_server}/moto-api/reset", timeout=10)


def deploy_and_run(endpoint: str, aep: FakeAepPlatform, kind: str) -> Deployment:
    """Deploy the stack; run plan, the workers, status and verify on it as the
    state machine does, recording each component's calls."""
    session = boto3.Session(region_name=REGION)
    secret = session.client("secretsmanager").create_secret(
        Name="aep-credentials", SecretString=json.dumps(aep.env())
    )["ARN"]
    parameters = {**PARAMETERS, "SecretArn": secret}
    if kind == "ecs":
        parameters.update(ECS_PARAMETERS)
    stack = deploy(session, endpoint, parameters)
    roles = ROLES[kind] | set(STATIC_ROLES)
    policies = {
        role: merged(map(_aws_log_group_arns, stack.role_policies(role)))
        for role in roles
    }

    def run(function: str, step: Callable[[], Any]) -> tuple[Any, list[IamRequest]]:
        with pytest.MonkeyPatch.context() as lambda_env:
            variables = stack.client("lambda").get_function_configuration(
                FunctionName=stack.physical_ids[function]
            )["Environment"]["Variables"]
            for name, value in variables.items():
                lambda_env.setenv(name, str(value))  # moto keeps numbers
            with recording_every_session() as calls:
                result = step()
        return result, requests_of(calls)

    event = {"datasets": [DATASET], "start": START, "end": END, "execution": "run-1"}
    planned, plan = run("PlanFunction", lambda: handlers.plan(event, None))
    items = stack.client("s3").get_object(**planned["shards"])["Body"].read()
    # A killed worker's upload, which the last worker aborts once all is copied.
    bucket, _, prefix = stack.outputs["SinkUrl"].removeprefix("s3://").partition("/")
    stack.client("s3").create_multipart_upload(
        Bucket=bucket, Key=f"{prefix}{DATASET}/killed.bin"
    )
    work = run_workers(stack, json.loads(items))
    status, state = run("StatusFunction", lambda: handlers.status(planned, None))
    assert status["ok"], status
    verified, verify = run("VerifyFunction", lambda: handlers.verify(planned, None))
    assert verified["ok"], verified
    assert (
        stack.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        == []
    )
    recorded = {"PlanRole": plan, "StatusRole": state, "VerifyRole": verify}
    recorded["GlueWorkerRole" if kind == "glue" else "EcsTaskRole"] = work
    service = {role: service_requests(stack, role, planned) for role in roles}
    return Deployment(stack, policies, recorded, service)


_LOG_GROUP = re.compile(r"(:log-group:[^:*]+)$")


def _aws_log_group_arns(document: dict[str, Any]) -> dict[str, Any]:
    """The policy with its log groups' ARNs as AWS's ``Fn::GetAtt`` gives them,
    ending in ``:*`` (which covers the group's streams); moto's lack it:
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-logs-loggroup.html#aws-resource-logs-loggroup-return-values
    """
    for statement in document["Statement"]:
        resources = statement["Resource"]
        if isinstance(resources, str):
            statement["Resource"] = _LOG_GROUP.sub(r"\1:*", resources)
        else:
            statement["Resource"] = [_LOG_GROUP.sub(r"\1:*", r) for r in resources]
    return document


def run_workers(stack: Stack, items: list[dict[str, str]]) -> list[IamRequest]:
    """Run each shard's worker in-process, one after the other, as Glue or ECS
    starts it: the job's default arguments or the task's environment, and the
    arguments the state machine adds."""
    described = stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.outputs["StateMachineArn"]
    )
    processor = json.loads(described["definition"])["States"]["Copy"]
    states = processor["ItemProcessor"]["States"]
    calls = []
    for item in items:
        with pytest.MonkeyPatch.context() as task_env:
            if item["worker"] == "glue":
                argv = glue_worker_argv(stack, states["Glue"]["Parameters"], item)
            else:
                parameters = states["Ecs"]["Parameters"]
                argv = ecs_worker_argv(stack, task_env, parameters, item)
            with recording_every_session() as made:
                assert worker.main(argv) == 0
        calls += made
    return requests_of(calls)


def glue_worker_argv(
    stack: Stack, parameters: Mapping[str, Any], item: Mapping[str, str]
) -> list[str]:
    """The job's default arguments and the Glue state's ``Arguments``."""
    job = stack.resolved("GlueJob")
    glue = stack.client("glue")
    # moto's CloudFormation skips AWS::Glue::Job: make the job as the stack has it.
    if job["Name"] not in glue.list_jobs()["JobNames"]:
        glue.create_job(
            Name=job["Name"],
            Role=job["Role"],
            Command=job["Command"],
            Timeout=int(job["Timeout"]),
            DefaultArguments=job["DefaultArguments"],
        )
    run_id = glue.start_job_run(JobName=job["Name"])["JobRunId"]
    arguments = {**job["DefaultArguments"]}
    del arguments["--additional-python-modules"]  # pip's, not the worker's
    for name, path in parameters["Arguments"].items():
        arguments[name.removesuffix(".$")] = _item_value(item, path)
    arguments.update({"--JOB_NAME": job["Name"], "--JOB_RUN_ID": run_id})
    return [text for pair in arguments.items() for text in pair]


def ecs_worker_argv(
    stack: Stack,
    env: pytest.MonkeyPatch,
    parameters: Mapping[str, Any],
    item: Mapping[str, str],
) -> list[str]:
    """The container's environment (set in ``env``) and the Ecs state's
    ``Command``: ``States.Array`` of texts and paths of the item."""
    definition = stack.client("ecs").describe_task_definition(
        taskDefinition=stack.physical_ids["WorkerTaskDefinition"]
    )["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    for variable in container["environment"]:
        env.setenv(variable["name"], variable["value"])
    (override,) = parameters["Overrides"]["ContainerOverrides"]
    command = override["Command.$"]
    assert command.startswith("States.Array("), command
    assert command.endswith(")"), command
    return [
        argument[1:-1] if argument.startswith("'") else _item_value(item, argument)
        for argument in (a.strip() for a in command[13:-1].split(","))
    ]


def _item_value(item: Mapping[str, str], path: str) -> str:
    assert path.startswith("$."), path
    return item[path[2:]]


def requests_of(calls: list[Any]) -> list[IamRequest]:
    return unique(
        r for call in calls for r in iam_requests(call, region=REGION, account=ACCOUNT)
    )


# -- what the AWS services ask for with the roles ------------------------------------


def _log_stream(stack: Stack, log_group: str, stream: str) -> str:
    name = stack.resolved(log_group)["LogGroupName"]
    return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:log-stream:{stream}"


def _logs(resource: str, *actions: str) -> list[IamRequest]:
    return [IamRequest(f"logs:{a}", resource) for a in actions]


def service_requests(
    stack: Stack, role: str, planned: Mapping[str, Any]
) -> list[IamRequest]:
    """The requests the AWS services make with ``role``, as AWS documents them."""
    lambda_logs = {"PlanRole": "Plan", "StatusRole": "Status", "VerifyRole": "Verify"}
    if role in lambda_logs:
        # Lambda writes the function's logs with its role into its LoggingConfig
        # group, which the stack creates:
        # https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html
        stream = "2026/12/03/[$LATEST]0123456789abcdef"
        group = f"{lambda_logs[role]}LogGroup"
        return _logs(
            _log_stream(stack, group, stream), "CreateLogStream", "PutLogEvents"
        )
    if role == "GlueWorkerRole":
        # Glue reads the job's script (and a wheel of PipRequirement) and writes
        # the run's logs under /aws-glue/ with the job's role:
        # https://docs.aws.amazon.com/glue/latest/dg/create-an-iam-role.html
        job = stack.resolved("GlueJob")
        script = job["Command"]["ScriptLocation"].removeprefix("s3://")
        group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws-glue/python-jobs"
        return [
            IamRequest("s3:GetObject", f"arn:aws:s3:::{script}"),
            *_logs(f"{group}/output", "CreateLogGroup"),
            *_logs(f"{group}/output:log-stream:jr_1", "CreateLogStream"),
            *_logs(f"{group}/error:log-stream:jr_1", "PutLogEvents"),
        ]
    if role == "EcsExecutionRole":
        # ECS pulls the image from ECR and ships the awslogs with the execution
        # role; the task definition has no secrets of its own (the worker reads
        # the secret with the task role):
        # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html
        host, _, path = stack.parameters["ContainerImage"].partition("/")
        account, _, _, region, *_ = host.split(".")
        repository = f"arn:aws:ecr:{region}:{account}:repository/{path.split(':')[0]}"
        stream = _log_stream(stack, "WorkerLogGroup", f"worker/worker/{uuid.uuid4()}")
        return [
            IamRequest("ecr:GetAuthorizationToken", "*"),
            IamRequest("ecr:BatchGetImage", repository),
            IamRequest("ecr:GetDownloadUrlForLayer", repository),
            *_logs(stream, "CreateLogStream", "PutLogEvents"),
        ]
    if role == "StateMachineRole":
        return state_machine_requests(stack, planned)
    if role == "ScheduleRole":
        # EventBridge starts the target state machine with the rule's role:
        # https://docs.aws.amazon.com/step-functions/latest/dg/using-eventbridge-scheduler.html
        (target,) = stack.resolved("Schedule")["Targets"]
        return [IamRequest("states:StartExecution", target["Arn"])]
    return []


def state_machine_requests(
    stack: Stack, planned: Mapping[str, Any]
) -> list[IamRequest]:
    """What each state of the deployed definition needs from the state machine's
    role, as the Step Functions guide documents it for each integration."""
    machine = stack.outputs["StateMachineArn"]
    described = stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=machine
    )
    document = json.loads(described["definition"])
    found: list[IamRequest] = []
    for name, state in document["States"].items():
        if state["Type"] == "Task":
            found += _task_requests(state)
        if state["Type"] == "Map":
            found += _map_requests(stack, name, state, planned)
    return found


def _task_requests(state: Mapping[str, Any]) -> list[IamRequest]:
    # https://docs.aws.amazon.com/step-functions/latest/dg/lambda-iam.html
    assert state["Resource"] == "arn:aws:states:::lambda:invoke", state
    return [IamRequest("lambda:InvokeFunction", state["Parameters"]["FunctionName"])]


def _map_requests(
    stack: Stack, label: str, state: Mapping[str, Any], planned: Mapping[str, Any]
) -> list[IamRequest]:
    machine = stack.outputs["StateMachineArn"]
    name = machine.rsplit(":", 1)[1]
    child = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{name}/{label}:{uuid.uuid4()}"
    shards = planned["shards"]
    # The Distributed Map reads its items (ItemReader s3:getObject) and runs each
    # as a child execution of the state machine, which it watches and stops:
    # https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html
    # A redrive of the parent redrives the Map Run's failed children:
    # https://docs.aws.amazon.com/step-functions/latest/dg/redrive-map-run.html
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    found = [
        IamRequest("s3:GetObject", f"arn:aws:s3:::{shards['Bucket']}/{shards['Key']}"),
        IamRequest("states:StartExecution", machine),
        IamRequest("states:DescribeExecution", child),
        IamRequest("states:StopExecution", child),
        IamRequest("states:RedriveExecution", child),
    ]
    for item_state in state["ItemProcessor"]["States"].values():
        resource = item_state.get("Resource", "")
        if resource == "arn:aws:states:::glue:startJobRun.sync":
            found += _glue_requests(item_state["Parameters"]["JobName"])
        elif resource == "arn:aws:states:::ecs:runTask.sync":
            found += _ecs_requests(stack, item_state["Parameters"])
    return found


def _glue_requests(job_name: str) -> list[IamRequest]:
    if job_name == "none":  # a stack of ECS workers: no item reaches this state
        return []
    # https://docs.aws.amazon.com/step-functions/latest/dg/connect-glue.html
    job = f"arn:aws:glue:{REGION}:{ACCOUNT}:job/{job_name}"
    actions = ("StartJobRun", "GetJobRun", "GetJobRuns", "BatchStopJobRun")
    return [IamRequest(f"glue:{action}", job) for action in actions]


def _ecs_requests(stack: Stack, parameters: Mapping[str, Any]) -> list[IamRequest]:
    if parameters["TaskDefinition"] == "none":  # a stack of Glue workers
        return []
    # https://docs.aws.amazon.com/step-functions/latest/dg/connect-ecs.html: the
    # task, the managed rule by which Step Functions hears of its end, and the
    # task's roles passed to ECS.
    cluster = parameters["Cluster"].rsplit("/", 1)[1]
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{uuid.uuid4().hex}"
    rule = (
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForECSTaskRule"
    )
    definition = stack.resolved("WorkerTaskDefinition")  # moto's ECS has no roles
    passed = (("iam:PassedToService", "ecs-tasks.amazonaws.com"),)
    return [
        IamRequest("ecs:RunTask", parameters["TaskDefinition"]),
        IamRequest("ecs:DescribeTasks", task),
        IamRequest("ecs:StopTask", task),
        *[IamRequest(f"events:{a}", rule) for a in ("PutTargets", "PutRule")],
        IamRequest("events:DescribeRule", rule),
        IamRequest("iam:PassRole", definition["TaskRoleArn"], passed),
        IamRequest("iam:PassRole", definition["ExecutionRoleArn"], passed),
    ]


# -- the checks ------------------------------------------------------------------------


def _decide(
    simulator: Simulator, deployment: Deployment, role: str
) -> dict[IamRequest, str]:
    asked = deployment.requests(role)
    decisions = simulator.decide(
        asked,
        identity_policy=deployment.policies[role],
        principal=deployment.principal(role),
        resource_account=ACCOUNT,
    )
    return dict(zip(asked, decisions))


LAMBDA_CALLS = {
    # role: the actions of the calls its function's code made
    "PlanRole": {
        "secretsmanager:GetSecretValue",
        "s3:ListBucket",  # the sink's and the shard lists' prefixes
        "s3:PutObject",  # the shard list
        "dynamodb:DescribeTable",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",  # which units are registered already
        "dynamodb:PutItem",
        "dynamodb:Query",
    },
    "StatusRole": {"dynamodb:DescribeTable", "dynamodb:Query"},
    "VerifyRole": {
        "secretsmanager:GetSecretValue",
        "s3:ListBucket",
        "s3:GetObject",
        "dynamodb:DescribeTable",
        "dynamodb:Query",
    },
}
WORKER_CALLS = {
    "secretsmanager:GetSecretValue",
    "s3:ListBucket",
    "s3:GetObject",  # HeadObject
    "s3:PutObject",
    "s3:ListBucketMultipartUploads",
    "s3:AbortMultipartUpload",  # the killed worker's upload
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "cloudwatch:PutMetricData",  # --metrics cloudwatch
}


def test_each_component_made_every_kind_of_call_it_needs(
    deployment: Deployment,
) -> None:
    recorded = {
        role: {r.action for r in made} for role, made in deployment.recorded.items()
    }
    if "GlueWorkerRole" in recorded:
        worker_calls = {"GlueWorkerRole": WORKER_CALLS | {"glue:GetJobRun"}}
    else:
        worker_calls = {"EcsTaskRole": WORKER_CALLS}
    assert recorded == {**LAMBDA_CALLS, **worker_calls}


def test_every_request_of_each_component_is_allowed_by_its_role(
    deployment: Deployment, simulator: Simulator
) -> None:
    denied = {}
    for role in sorted(deployment.policies):
        decisions = _decide(simulator, deployment, role)
        refused = [r for r, decision in decisions.items() if decision != "Allowed"]
        if refused:
            denied[role] = refused
    assert denied == {}


def test_each_role_grants_only_what_its_component_uses(
    deployment: Deployment, simulator: Simulator
) -> None:
    unused = {}
    for role in sorted(deployment.policies):
        grants = unused_grants(
            simulator,
            deployment.policies[role],
            deployment.requests(role),
            principal=deployment.principal(role),
            resource_account=ACCOUNT,
        )
        if grants:
            unused[role] = grants
    assert unused == {}
