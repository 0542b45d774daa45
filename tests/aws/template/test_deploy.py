"""The shipped template deployed into moto's CloudFormation (server mode): what the
stack creates, checked through the AWS APIs (see :mod:`.stack` for what moto leaves
out and how those resources are checked)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from aep_extract import DynamoDBCheckpointStore, S3Sink

from ..conftest import REGION
from ..iam_policies import policy
from ..test_dockerfile import dockerfile_user
from .stack import ARTIFACT_PREFIX, ARTIFACTS, STACK, Stack, deploy

PARAMETERS = {
    "DatasetIds": "ds1,ds2",
    "MaxConcurrency": "5",
    "ToleratedWorkerFailures": "2",
    "StaleRunHours": "30",
    "ThrottledThreshold": "250",
    "AlarmEmail": "ops@example.com",
}
ECS_PARAMETERS = {
    "WorkerType": "ecs",
    "ContainerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/aep-extract:1",
    "Subnets": "subnet-1,subnet-2",
    "SecurityGroups": "sg-1",
}
LAMBDA_ENVIRONMENT = {
    "AEP_SECRET_ID",
    "AEP_EXTRACT_STORE",
    "AEP_EXTRACT_SINK",
    "AEP_EXTRACT_SHARDS",
    "AEP_EXTRACT_DATASETS",
    "AEP_EXTRACT_WORKER",
    "AEP_EXTRACT_WORKERS_PER_DATASET",
    "AEP_EXTRACT_THREADS",
    "AEP_EXTRACT_REQUESTS_PER_SECOND",
    "AEP_EXTRACT_MAX_CONCURRENCY",
    "AEP_EXTRACT_LAG",
    "AEP_EXTRACT_FIRST_START",
}
"""The Lambda environment of the AWS pipeline's design (the handlers read it)."""

pytestmark = pytest.mark.filterwarnings(
    # moto's CloudFormation names each resource type it skips (see .stack).
    "ignore:Tried to parse AWS.* not supported by moto:UserWarning"
)

UNSCOPED = {"PublishRunMetrics", "LogInToEcr"}
"""Statements on Resource "*": their actions have no resource type."""

ACCOUNT_WIDE = {"PullTheImageFromThisAccountsEcr"}
"""Statements on the account's resources of a type: the image's repository is not
a parameter of its own."""

SERVICE_NAMED = ("log-group:/aws-glue/", "rule/StepFunctionsGetEventsForECSTaskRule")
"""Resources whose names the AWS services choose: Glue's log groups, the rule by
which Step Functions hears of ECS tasks ending."""


@pytest.fixture(scope="module", params=["glue", "ecs"])
def stack(request: pytest.FixtureRequest, moto_server: str) -> Iterator[Stack]:
    session = boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=REGION,
    )
    secrets = session.client("secretsmanager", endpoint_url=moto_server)
    secret = secrets.create_secret(Name="aep-credentials", SecretString="{}")["ARN"]
    parameters = {**PARAMETERS, "SecretArn": secret}
    if request.param == "ecs":
        parameters.update(ECS_PARAMETERS)
    try:
        yield deploy(session, moto_server, parameters)
    finally:
        requests.post(f"{moto_server}/moto-api/reset", timeout=10)


def _worker(stack: Stack) -> str:
    return stack.parameters.get("WorkerType", "glue")


def _role_arn(stack: Stack, logical_id: str) -> str:
    role = stack.client("iam").get_role(RoleName=stack.physical_ids[logical_id])
    arn: str = role["Role"]["Arn"]
    return arn


def _definition(stack: Stack) -> dict[str, Any]:
    described = stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.outputs["StateMachineArn"]
    )
    document: dict[str, Any] = json.loads(described["definition"])
    document["roleArn"] = described["roleArn"]
    return document


def _statements(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for document in documents for s in document["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _normalized(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **s,
            "Action": sorted(_as_list(s["Action"])),
            "Resource": sorted(_as_list(s["Resource"])),
        }
        for s in statements
    ]


def test_the_checkpoint_store_accepts_the_table(stack: Stack) -> None:
    dynamodb = stack.client("dynamodb")
    # The store's constructor refuses a table without its key schema and index.
    with DynamoDBCheckpointStore(stack.outputs["TableName"], client=dynamodb):
        pass
    table = dynamodb.describe_table(TableName="aep-extract")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    properties = stack.resolved("CheckpointTable")
    assert properties["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True
    }
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_the_sink_bucket_is_private_encrypted_and_cleans_up_uploads(
    stack: Stack,
) -> None:
    bucket = stack.outputs["BucketName"]
    s3 = stack.client("s3")
    encryption = s3.get_bucket_encryption(Bucket=bucket)
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    with S3Sink(stack.outputs["SinkUrl"], client=s3) as sink:
        sink.check()
    properties = stack.resolved("SinkBucket")
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    (lifecycle,) = properties["LifecycleConfiguration"]["Rules"]
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    (deny,) = stack.resolved("SinkBucketPolicy")["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [
        f"arn:aws:s3:::{bucket}",
        f"arn:aws:s3:::{bucket}/*",
    ]


def test_the_state_machine_fans_out_over_the_plans_shards(stack: Stack) -> None:
    document = _definition(stack)
    assert document["roleArn"] == _role_arn(stack, "StateMachineRole")
    copy = document["States"]["Copy"]
    assert copy["MaxConcurrency"] == int(stack.parameters["MaxConcurrency"])
    assert copy["ToleratedFailureCount"] == int(
        stack.parameters["ToleratedWorkerFailures"]
    )
    assert copy["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert copy["ItemReader"]["Parameters"] == {
        "Bucket.$": "$.shards.Bucket",
        "Key.$": "$.shards.Key",
    }
    lambda_arns = {
        f["Handler"].rsplit(".", 1)[1]: f["FunctionArn"]
        for f in stack.client("lambda").list_functions()["Functions"]
    }
    for step in ("Plan", "Status", "Verify"):
        state = document["States"][step]
        assert state["Parameters"]["FunctionName"] == lambda_arns[step.lower()]
        assert state["Catch"][0] == {
            "ErrorEquals": ["Misconfigured"],
            "ResultPath": "$.error",
            "Next": "Misconfigured",
        }
        for retry in state["Retry"]:
            assert "Misconfigured" not in retry["ErrorEquals"]
    processor = copy["ItemProcessor"]["States"]
    if _worker(stack) == "glue":
        job = stack.resolved("GlueJob")["Name"]
        assert processor["Glue"]["Parameters"]["JobName"] == job
    else:
        ecs = processor["Ecs"]["Parameters"]
        assert ecs["TaskDefinition"] == stack.physical_ids["WorkerTaskDefinition"]
        assert ecs["NetworkConfiguration"]["AwsvpcConfiguration"] == {
            "Subnets": ["subnet-1", "subnet-2"],
            "SecurityGroups": ["sg-1"],
            "AssignPublicIp": "DISABLED",
        }


def test_the_step_functions_run_the_handlers_with_the_designed_environment(
    stack: Stack,
) -> None:
    functions = stack.client("lambda").list_functions()["Functions"]
    assert sorted(f["Handler"] for f in functions) == [
        "aep_extract.aws.handlers.plan",
        "aep_extract.aws.handlers.status",
        "aep_extract.aws.handlers.verify",
    ]
    for function in functions:
        step = function["Handler"].rsplit(".", 1)[1].capitalize()
        assert function["Runtime"] == "python3.12"
        assert function["Role"] == _role_arn(stack, f"{step}Role")
        code = stack.resolved(f"{step}Function")["Code"]
        assert code == {"S3Bucket": ARTIFACTS, "S3Key": ARTIFACT_PREFIX + "lambda.zip"}
        # moto returns numbers of the environment as numbers: compare as text.
        environment = {
            k: str(v) for k, v in function["Environment"]["Variables"].items()
        }
        assert set(environment) == LAMBDA_ENVIRONMENT
        assert environment["AEP_SECRET_ID"] == stack.parameters["SecretArn"]
        assert environment["AEP_EXTRACT_STORE"] == "dynamodb://aep-extract"
        assert environment["AEP_EXTRACT_SINK"] == stack.outputs["SinkUrl"]
        assert environment["AEP_EXTRACT_SHARDS"] == (
            f"s3://{ARTIFACTS}/{ARTIFACT_PREFIX}shards/"
        )
        assert environment["AEP_EXTRACT_DATASETS"] == "ds1,ds2"
        assert environment["AEP_EXTRACT_WORKER"] == _worker(stack)
        assert environment["AEP_EXTRACT_MAX_CONCURRENCY"] == "5"
    logs = stack.client("logs").describe_log_groups()["logGroups"]
    assert {g["logGroupName"]: g["retentionInDays"] for g in logs} == {
        f"/aep-extract/{STACK}/{step}": 30
        for step in ("plan", "status", "verify")
        + (("worker",) if _worker(stack) == "ecs" else ())
    }


def test_one_role_per_component_each_scoped_to_the_stack(stack: Stack) -> None:
    roles = {r["RoleName"] for r in stack.client("iam").list_roles()["Roles"]}
    workers = (
        {"GlueWorkerRole"}
        if _worker(stack) == "glue"
        else {"EcsTaskRole", "EcsExecutionRole"}
    )
    expected = {
        "PlanRole",
        "StatusRole",
        "VerifyRole",
        "StateMachineRole",
        "ScheduleRole",
    } | workers
    assert roles == {stack.physical_ids[r] for r in expected}
    bucket = stack.outputs["BucketName"]
    for role in expected:
        for statement in _statements(stack.role_policies(role)):
            assert statement["Effect"] == "Allow"
            for resource in _as_list(statement["Resource"]):
                if statement["Sid"] in UNSCOPED:
                    assert resource == "*"
                    continue
                assert resource.startswith("arn:aws:"), (role, statement)
                assert "*" not in resource.split(":")[4], (role, statement)
                if statement["Sid"] in ACCOUNT_WIDE:
                    continue
                named = (STACK, bucket, ARTIFACTS, "aep-extract", "aep-credentials")
                assert any(n in resource for n in named + SERVICE_NAMED), (
                    role,
                    statement,
                )


def test_the_sink_and_store_policies_are_the_documented_ones(stack: Stack) -> None:
    documented = policy(
        "s3-sink.json",
        BUCKET=stack.outputs["BucketName"],
        PREFIX="aep",
        REGION=REGION,
        ACCOUNT="123456789012",
        KEY_ID="unused",
    )["Statement"]
    without_kms = [s for s in documented if s["Sid"] != "UseTheKmsKeyThroughS3"]
    worker = "GlueWorkerRole" if _worker(stack) == "glue" else "EcsTaskRole"
    granted = _statements(stack.role_policies(worker))
    sink = [s for s in granted if s["Sid"] in {d["Sid"] for d in without_kms}]
    assert _normalized(sink) == _normalized(without_kms)
    # The store's documented policy, less CreateTable (the stack creates the
    # table), DeleteItem (only `aep-extract reset` deletes), BatchGetItem and
    # Query of the table (only the plan looks units up and registers them).
    table = policy(
        "dynamodb-store.json",
        REGION=REGION,
        ACCOUNT="123456789012",
        TABLE="aep-extract",
    )["Statement"]
    needed = _normalized(
        [s for s in table if s["Sid"] != "CreateTheTableOnlyWithCreateTable"]
    )
    needed[0]["Action"].remove("dynamodb:DeleteItem")
    needed[0]["Action"].remove("dynamodb:BatchGetItem")
    needed[0]["Action"].remove("dynamodb:Query")
    store = [s for s in granted if s["Sid"] in {d["Sid"] for d in needed}]
    assert _normalized(store) == needed


def test_the_state_machine_role_runs_only_this_stacks_workers(stack: Stack) -> None:
    statements = {
        s["Sid"]: s for s in _statements(stack.role_policies("StateMachineRole"))
    }
    glue = {"RunGlueWorkers"}
    ecs = {
        "RunEcsWorkers",
        "WatchAndStopEcsWorkers",
        "HearOfEcsTasksEnding",
        "PassTheEcsRoles",
    }
    base = {
        "InvokeTheSteps",
        "ReadTheShardLists",
        "RunTheMapItems",
        "WatchAndRedriveTheMapItems",
    }
    assert set(statements) == base | (glue if _worker(stack) == "glue" else ecs)
    assert statements["RunTheMapItems"]["Resource"] == stack.outputs["StateMachineArn"]
    invoked = set(statements["InvokeTheSteps"]["Resource"])
    functions = stack.client("lambda").list_functions()["Functions"]
    assert invoked == {f["FunctionArn"] for f in functions}
    if _worker(stack) == "ecs":
        passed = set(statements["PassTheEcsRoles"]["Resource"])
        assert passed == {
            _role_arn(stack, "EcsTaskRole"),
            _role_arn(stack, "EcsExecutionRole"),
        }


def test_the_workers(stack: Stack) -> None:
    if _worker(stack) == "glue":
        job = stack.resolved("GlueJob")
        assert job["Command"] == {
            "Name": "pythonshell",
            "PythonVersion": "3.9",
            "ScriptLocation": f"s3://{ARTIFACTS}/{ARTIFACT_PREFIX}glue_job.py",
        }
        assert job["Role"] == _role_arn(stack, "GlueWorkerRole")
        assert (job["MaxRetries"], str(job["Timeout"])) == (0, "120")
        assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 5}
        assert job["DefaultArguments"] == {
            "--additional-python-modules": "aep-extract",
            "--store": "dynamodb://aep-extract",
            "--sink": stack.outputs["SinkUrl"],
            "--secret_id": stack.parameters["SecretArn"],
            "--metrics": "cloudwatch",
        }
        return
    ecs = stack.client("ecs")
    definition = ecs.describe_task_definition(
        taskDefinition=stack.physical_ids["WorkerTaskDefinition"]
    )["taskDefinition"]
    resolved = stack.resolved("WorkerTaskDefinition")
    assert resolved["RequiresCompatibilities"] == ["FARGATE"]  # moto drops it
    assert resolved["TaskRoleArn"] == _role_arn(stack, "EcsTaskRole")
    assert resolved["ExecutionRoleArn"] == _role_arn(stack, "EcsExecutionRole")
    (container,) = definition["containerDefinitions"]
    assert container["image"] == ECS_PARAMETERS["ContainerImage"]
    assert container["user"] == dockerfile_user()  # the image's own, not root
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment == {
        "AEP_SECRET_ID": stack.parameters["SecretArn"],
        "AEP_EXTRACT_STORE": "dynamodb://aep-extract",
        "AEP_EXTRACT_SINK": stack.outputs["SinkUrl"],
    }
    (cluster,) = ecs.describe_clusters(clusters=[stack.physical_ids["WorkerCluster"]])[
        "clusters"
    ]
    assert cluster["status"] == "ACTIVE"


def test_the_alarms_notify_the_topic(stack: Stack) -> None:
    cloudwatch = stack.client("cloudwatch")
    topic = stack.outputs["AlarmTopicArn"]
    stack.client("sns").get_topic_attributes(TopicArn=topic)
    logical_ids = (
        "UnitFailedAlarm",
        "ExecutionFailedAlarm",
        "StaleRunAlarm",
        "ThrottledAlarm",
    )
    for logical_id in logical_ids:
        # The properties are PutMetricAlarm's parameters: botocore checks them
        # against CloudWatch's API model.
        cloudwatch.put_metric_alarm(**stack.resolved(logical_id))
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"{STACK}-")["MetricAlarms"]
    }
    assert set(alarms) == {
        f"{STACK}-{n}"
        for n in ("unit-failed", "execution-failed", "no-recent-success", "throttled")
    }
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [topic]
    machine = [{"Name": "StateMachineArn", "Value": stack.outputs["StateMachineArn"]}]
    failed = alarms[f"{STACK}-execution-failed"]
    assert (failed["Namespace"], failed["MetricName"]) == (
        "AWS/States",
        "ExecutionsFailed",
    )
    assert failed["Dimensions"] == machine
    stale = alarms[f"{STACK}-no-recent-success"]
    assert stale["MetricName"] == "ExecutionsSucceeded"
    assert stale["Dimensions"] == machine
    assert (stale["Period"], stale["EvaluationPeriods"]) == (3600, 30)
    assert (stale["ComparisonOperator"], stale["Threshold"]) == (
        "LessThanThreshold",
        1,
    )
    assert stale["TreatMissingData"] == "breaching"
    unit_failed = alarms[f"{STACK}-unit-failed"]
    (query,) = unit_failed["Metrics"]
    assert query["Expression"] == (
        'SELECT MAX(UnitsFailed) FROM SCHEMA("aep_extract", DatasetId)'
    )
    assert unit_failed["Threshold"] == 0
    throttled = alarms[f"{STACK}-throttled"]
    assert "SUM(Throttled)" in throttled["Metrics"][0]["Expression"]
    assert throttled["Threshold"] == 250
    subscription = stack.resolved("AlarmEmailSubscription")
    assert subscription == {
        "TopicArn": topic,
        "Protocol": "email",
        "Endpoint": "ops@example.com",
    }
    dashboard = stack.client("cloudwatch").get_dashboard(
        DashboardName=f"{STACK}-aep-extract"
    )
    (alarm_widget,) = [
        w
        for w in json.loads(dashboard["DashboardBody"])["widgets"]
        if w["type"] == "alarm"
    ]
    assert set(alarm_widget["properties"]["alarms"]) == {
        a["AlarmArn"] for a in alarms.values()
    }
    assert stack.outputs["DashboardUrl"].endswith(
        f"#dashboards:name={STACK}-aep-extract"
    )


def test_the_schedule_starts_a_since_last_run(stack: Stack) -> None:
    events = stack.client("events")
    rule = events.describe_rule(Name=stack.physical_ids["Schedule"])
    assert rule["State"] == "ENABLED"
    assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == stack.outputs["StateMachineArn"]
    assert json.loads(target["Input"]) == {"since_last": True}
    assert target["RoleArn"] == _role_arn(stack, "ScheduleRole")
    (statement,) = _statements(stack.role_policies("ScheduleRole"))
    assert statement["Action"] == "states:StartExecution"
    assert statement["Resource"] == stack.outputs["StateMachineArn"]


def test_the_outputs(stack: Stack) -> None:
    assert set(stack.outputs) == {
        "StateMachineArn",
        "TableName",
        "BucketName",
        "SinkUrl",
        "SecretArn",
        "AlarmTopicArn",
        "DashboardUrl",
    }
    assert stack.outputs["SecretArn"] == stack.parameters["SecretArn"]
    assert stack.outputs["SinkUrl"] == f"s3://{stack.outputs['BucketName']}/aep/"
