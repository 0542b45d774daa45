"""The worker's arguments, read the same way in Glue (getResolvedOptions) and from
argv, and its deadline from a Glue job run (moto)."""

from __future__ import annotations

import argparse
import sys
import types
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from aep_extract import ConfigError
from aep_extract.aws import worker
from aep_extract.aws.worker import WorkerOptions, deadline_of, glue_deadline

# What Glue passes a Python shell job: its own arguments around the job's.
ARGV = [
    "--job-bookmark-option", "job-bookmark-disable",
    "--JOB_ID", "j_0123",
    "--dataset", "ds1",
    "--threads", "4",
    "--requests_per_second", "2.5",
    "--JOB_RUN_ID", "jr_0123",
    "--JOB_NAME", "aep-extract",
    "--secret_id", "arn:aws:secretsmanager:us-east-1:123456789012:secret:aep",
    "--enable-metrics", "true",
]  # fmt: skip
READ = {
    "dataset": "ds1",
    "threads": "4",
    "requests_per_second": "2.5",
    "secret_id": "arn:aws:secretsmanager:us-east-1:123456789012:secret:aep",
    "JOB_NAME": "aep-extract",
    "JOB_RUN_ID": "jr_0123",
}


def fake_get_resolved_options(asked: list[list[str]]):
    """Glue's getResolvedOptions as awsglue has it: every name asked for is
    required; Glue's reserved arguments are parsed too and returned."""

    def get_resolved_options(args, options):
        asked.append(list(options))
        parser = argparse.ArgumentParser()
        parser.add_argument("--job-bookmark-option")
        parser.add_argument("--JOB_ID")
        for option in options:
            parser.add_argument(f"--{option}", required=True)
        parsed, _ = parser.parse_known_args(args[1:])
        return vars(parsed)

    return get_resolved_options


@pytest.fixture
def in_glue(monkeypatch):
    """An ``awsglue.utils`` module, as in a Glue job; records what was asked."""
    asked: list[list[str]] = []
    package = types.ModuleType("awsglue")
    utils = types.ModuleType("awsglue.utils")
    utils.getResolvedOptions = fake_get_resolved_options(asked)  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "awsglue", package)
    monkeypatch.setitem(sys.modules, "awsglue.utils", utils)
    return asked


def test_argv_outside_glue_reads_the_options_and_ignores_the_rest():
    assert worker.read_arguments(ARGV) == READ


def test_glue_reads_the_same_options_with_get_resolved_options(in_glue):
    assert worker.read_arguments(ARGV) == READ
    given = ["dataset", "secret_id", "threads", "requests_per_second"]
    assert in_glue == [[*given, "JOB_NAME", "JOB_RUN_ID"]]


def test_options_default_to_the_environment_and_are_converted():
    env = {
        "AEP_EXTRACT_STORE": "dynamodb://aep-extract",
        "AEP_EXTRACT_SINK": "s3://landing/aep",
        "AEP_SECRET_ID": "from-env",
    }
    options = WorkerOptions.parse(
        {**READ, "deadline": "15m", "lease_seconds": "30"}, env
    )
    assert options == WorkerOptions(
        dataset="ds1",
        store="dynamodb://aep-extract",
        sink="s3://landing/aep",
        secret_id="arn:aws:secretsmanager:us-east-1:123456789012:secret:aep",
        threads=4,
        requests_per_second=2.5,
        lease_seconds=30.0,
        deadline=900.0,
        job_name="aep-extract",
        job_run_id="jr_0123",
    )
    assert WorkerOptions.parse({"dataset": "d"}, env).secret_id == "from-env"


BASE = {"dataset": "d", "store": "memory://", "sink": "memory://"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "missing --dataset, --store, --sink"),
        ({"dataset": "d", "store": "memory://"}, "missing --sink"),
        ({**BASE, "threads": "0"}, "--threads: 0 is not at least 1"),
        ({**BASE, "requests_per_second": "fast"}, "--requests_per_second: 'fast'"),
        ({**BASE, "deadline": "-5"}, "--deadline: -5 is negative"),
        ({**BASE, "metrics": "statsd"}, "--metrics must be one of none, cloudwatch"),
        ({**BASE, "store": "redis://x"}, "--store: unsupported store URL"),
        ({**BASE, "dataset": " "}, "--dataset is empty"),
    ],
)
def test_bad_options_are_config_errors(arguments, message):
    with pytest.raises(ConfigError, match=message):
        WorkerOptions.parse(arguments, {})


def test_main_exits_2_on_a_bad_option(capsys):
    assert worker.main(["--dataset", "d", "--store", "memory://"]) == 2
    assert "aep-extract-worker: error: missing --sink" in capsys.readouterr().err
    assert worker.main(["--dataset"]) == 2  # an option without its value


def start_glue_run(session, **run_options):
    glue = session.client("glue")
    glue.create_job(
        Name="aep-extract",
        Role="arn:aws:iam::123456789012:role/aep-extract-glue",
        Command={"Name": "pythonshell", "ScriptLocation": "s3://a/glue_job.py"},
    )
    run_id = glue.start_job_run(JobName="aep-extract", **run_options)["JobRunId"]
    run = glue.get_job_run(JobName="aep-extract", RunId=run_id)["JobRun"]
    return run_id, run["StartedOn"]


def test_the_deadline_is_the_glue_runs_start_plus_timeout_less_the_margin(aws):
    run_id, started = start_glue_run(aws, Timeout=60)
    expected = started + timedelta(minutes=60) - timedelta(seconds=120)
    assert glue_deadline("aep-extract", run_id) == expected
    assert glue_deadline("aep-extract", run_id, 600) == expected - timedelta(
        seconds=480
    )
    options = WorkerOptions(
        dataset="d",
        store="memory://",
        sink="memory://",
        job_name="aep-extract",
        job_run_id=run_id,
    )
    assert deadline_of(options) == expected
    # --deadline as well: the earlier of both.
    sooner = deadline_of(attrs.evolve(options, deadline=60.0))
    assert sooner is not None
    assert sooner < expected
    now = datetime.now(timezone.utc)
    assert now < sooner <= now + timedelta(seconds=60)


def test_a_glue_run_without_timeout_gives_no_deadline(aws):
    run_id, _ = start_glue_run(aws)
    assert glue_deadline("aep-extract", run_id) is None


def test_an_unknown_glue_run_is_a_config_error(aws):
    start_glue_run(aws, Timeout=60)
    with pytest.raises(ConfigError, match="glue:GetJobRun"):
        glue_deadline("aep-extract", "jr_unknown")
