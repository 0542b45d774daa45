"""Amazon States Language definitions run by LocalStack's Step Functions engine, with
every Task state served by a Python callable.

LocalStack (``tests/aws/localstack/requirements.txt``, in a virtualenv of its own)
runs on the host, without Docker: its Step Functions, and its S3 for a Distributed
Map's ``ItemReader``. It cannot run Lambda functions (that takes Docker), Glue jobs or
ECS tasks (not in its community edition). So each Task state is served by an
activity: :func:`run_state_machine` points the state's ``Resource`` at a new activity
and leaves the rest of the state as written (``Parameters``, ``ResultSelector``,
``Retry``, ``Catch``, ``TimeoutSeconds``, ...). A thread polls each activity and
answers every task with the state's callable, as the replaced integration would:

- ``arn:aws:states:::lambda:invoke``: the callable gets the ``Payload`` (the
  function's event) and returns the function's result, which arrives as
  ``{"Payload": result, "StatusCode": 200, ...}``; an exception fails the state
  with its class name as the error, as a Lambda function's ``errorType`` does.
- any other resource (``glue:startJobRun.sync``, ``ecs:runTask.sync``, ...): the
  callable gets the state's effective parameters and returns the integration's
  result. An exception fails the state with its class name as the error: AWS
  reports a failed job or task as ``States.TaskFailed``, a name LocalStack refuses
  from an activity, but a ``Retry`` or ``Catch`` on ``States.TaskFailed`` matches
  any error not named ``States.*``, in LocalStack as in AWS.

What LocalStack 4.9 does not emulate: ``RedriveExecution``; ``ToleratedFailureCount``
and ``ToleratedFailurePercentage`` (parsed and ignored: a Distributed Map tolerates
every failed item, which ends with a null result, even one that failed with
``States.Runtime``); JSONata (its evaluator is a jar LocalStack downloads).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, Optional, Union

import boto3
import pytest
from botocore.config import Config

from ..npm_tools import venv_install

REQUIREMENTS = Path(__file__).parent / "localstack" / "requirements.txt"
"""The pinned LocalStack and its dependencies."""

REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/state-machine"  # LocalStack checks no policy

TaskHandler = Callable[[Any], Any]
"""Serves a Task state: its input (see the module docstring) to its result."""

_NEEDED_BY = "the Step Functions tests"
_OLDEST_PYTHON = (3, 10)  # of the pinned packages (click 8.5, cachetools 8, ...)
_STARTUP_SECONDS = 120
_LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


class LocalStack:
    """A LocalStack server: where its clients connect."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(
        self, service: Literal["stepfunctions", "s3"], *, read_timeout: int = 60
    ) -> Any:
        """A boto3 client of ``service`` on this server, with test credentials."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(read_timeout=read_timeout),
        )


@contextlib.contextmanager
def localstack_server(root: Path) -> Iterator[LocalStack]:
    """LocalStack's Step Functions and S3 on a free local port, its files under
    ``root``; stopped on exit."""
    venv = venv_install(REQUIREMENTS, needed_by=_NEEDED_BY, python=_server_python())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        SERVICES="stepfunctions,s3,sts",
        OVERRIDE_IN_DOCKER="0",  # files under FILESYSTEM_ROOT, not /var/lib
        FILESYSTEM_ROOT=str(root),
        DNS_ADDRESS="0",
        SKIP_SSL_CERT_DOWNLOAD="1",
        DISABLE_EVENTS="1",
    )
    log = root / "localstack.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "localstack.runtime.main"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while not _healthy(endpoint):
            if process.poll() is not None:
                pytest.fail(f"LocalStack exited on start:\n{log.read_text()}")
            if time.monotonic() - started > _STARTUP_SECONDS:
                pytest.fail(f"LocalStack did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield LocalStack(endpoint)
    finally:
        process.terminate()
        try:  # it ignores SIGTERM for about 20 s; its state is disposable
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _server_python() -> str:
    """An interpreter for LocalStack: this one, unless it is older than the
    pinned packages allow, then the newest ``python3.1N`` on PATH that runs
    (on Python 3.9, CI's run of the tests)."""
    if sys.version_info >= _OLDEST_PYTHON:
        return sys.executable
    for minor in range(13, 9, -1):
        found = shutil.which(f"python3.{minor}")
        if found is not None:
            probe = subprocess.run([found, "-c", "import venv"], capture_output=True)
            if probe.returncode == 0:
                return found
    pytest.fail(f"{_NEEDED_BY} need Python 3.10 or newer on PATH (python3.1N)")


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2):
            return True
    except OSError:
        return False


class Execution(NamedTuple):
    """How an execution ended."""

    status: str
    """``SUCCEEDED``, ``FAILED``, ``TIMED_OUT`` or ``ABORTED``."""
    output: Any
    error: Optional[str]
    cause: Optional[str]
    history: list[dict[str, Any]]
    """GetExecutionHistory's events, oldest first."""


def run_state_machine(
    localstack: LocalStack,
    definition: Union[str, Mapping[str, Any]],
    tasks: Mapping[str, TaskHandler],
    execution_input: Any = None,
    *,
    name: Optional[str] = None,
    retry_seconds: Optional[int] = None,
    timeout: float = 300,
) -> Execution:
    """Run ``definition`` once, every Task state served by ``tasks[state name]``.

    ``name`` is the execution's (``$$.Execution.Name``). ``retry_seconds``, if
    given, is every retrier's wait (``IntervalSeconds``, with ``BackoffRate`` 1 and
    no ``MaxDelaySeconds``), so that a test of a retried path waits less than the
    definition would; which errors are retried, and how often, stay.

    Fails the test when a Task state has no callable or a callable no state, when
    a callable raises something other than an ``Exception`` (e.g. a failed
    assertion), or when the execution is still running after ``timeout`` seconds
    (a guard against a hung test, not a measurement).
    """
    document = copy.deepcopy(
        json.loads(definition) if isinstance(definition, str) else dict(definition)
    )
    every_state = list(_states(document["States"]))
    task_states = {key: state for key, state in every_state if state["Type"] == "Task"}
    if task_states.keys() != tasks.keys():
        pytest.fail(
            f"Task states {sorted(task_states)} and callables {sorted(tasks)} differ"
        )
    if retry_seconds is not None:
        for _, state in every_state:
            for retrier in state.get("Retry", ()):
                retrier.pop("MaxDelaySeconds", None)
                retrier.update(IntervalSeconds=retry_seconds, BackoffRate=1)
    sfn = localstack.client("stepfunctions")
    run = uuid.uuid4().hex[:12]
    servers = []
    for state_name, state in task_states.items():
        slug = re.sub(r"[^A-Za-z0-9_-]", "-", state_name)[:60]
        activity = sfn.create_activity(name=f"{slug}-{run}")["activityArn"]
        servers.append(
            _ActivityServer(localstack, activity, state["Resource"], tasks[state_name])
        )
        state["Resource"] = activity
    machine = sfn.create_state_machine(
        name=f"machine-{run}", definition=json.dumps(document), roleArn=ROLE
    )["stateMachineArn"]
    for server in servers:
        server.start()
    try:
        arn = sfn.start_execution(
            stateMachineArn=machine,
            name=name or run,
            input=json.dumps({} if execution_input is None else execution_input),
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while (described := sfn.describe_execution(executionArn=arn))[
            "status"
        ] == "RUNNING":
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=arn)
                pytest.fail(f"the execution still ran after {timeout} s")
            time.sleep(0.1)
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        if server.crash is not None:
            raise server.crash
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    output = described.get("output")
    return Execution(
        status=described["status"],
        output=None if output is None else json.loads(output),
        error=described.get("error"),
        cause=described.get("cause"),
        history=[event for page in pages for event in page["events"]],
    )


def _states(states: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those in Map and Parallel states included."""
    for name, state in states.items():
        yield name, state
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _states(state[key]["States"])
        for branch in state.get("Branches", ()):
            yield from _states(branch["States"])


class _ActivityServer:
    """Answers an activity's tasks with a callable, one thread per task."""

    def __init__(
        self, localstack: LocalStack, activity: str, resource: str, handler: TaskHandler
    ) -> None:
        # LocalStack holds a GetActivityTask up to 60 s.
        self._client = localstack.client("stepfunctions", read_timeout=90)
        self._activity = activity
        self._resource = resource
        self._handler = handler
        self._stopped = threading.Event()
        self._answering: list[threading.Thread] = []
        self.crash: Optional[BaseException] = None

    def start(self) -> None:
        # A daemon: after stop() its last poll may still wait for LocalStack's reply.
        threading.Thread(target=self._poll, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        for thread in list(self._answering):
            thread.join()

    def _poll(self) -> None:
        while not self._stopped.is_set():
            try:
                task = self._client.get_activity_task(activityArn=self._activity)
            except Exception:
                if self._stopped.is_set():  # LocalStack stopped first
                    return
                raise
            if task.get("taskToken"):
                thread = threading.Thread(
                    target=self._answer, args=(task["taskToken"], task["input"])
                )
                self._answering.append(thread)
                thread.start()

    def _answer(self, token: str, task_input: str) -> None:
        parameters = json.loads(task_input)
        invoke = self._resource.startswith(_LAMBDA_INVOKE)
        try:
            result = self._handler(parameters.get("Payload") if invoke else parameters)
        except Exception as exc:
            error, cause = type(exc).__name__, str(exc)
            if invoke:
                cause = json.dumps({"errorMessage": cause, "errorType": error})
            self._client.send_task_failure(taskToken=token, error=error, cause=cause)
        except BaseException as exc:
            self.crash = exc
            self._client.send_task_failure(taskToken=token, error="TestCrashed")
        else:
            if invoke:
                result = {
                    "ExecutedVersion": "$LATEST",
                    "Payload": result,
                    "StatusCode": 200,
                }
            self._client.send_task_success(taskToken=token, output=json.dumps(result))
