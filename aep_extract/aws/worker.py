"""One worker of the pipeline's Map: ``python -m aep_extract.aws.worker --dataset ID``.

It runs :meth:`Extractor.execute <aep_extract.Extractor.execute>` on one dataset
(the plan step planned it); the workers of a dataset share its units through the
store's leases, and a killed worker's units are taken over when its lease expires.

Options, one spelling for Glue job arguments and the command line:

=========================== ==============================================
``--dataset``               the dataset (required)
``--store``                 store URL (default ``AEP_EXTRACT_STORE``)
``--sink``                  sink URL (default ``AEP_EXTRACT_SINK``)
``--secret_id``             secret of the AEP credentials (default
                            ``AEP_SECRET_ID``; without one, the ``AEP_*``
                            variables)
``--threads``               files copied at once (default 8)
``--requests_per_second``   ceiling of this worker's AEP request rate
``--lease_seconds``         lease of a claimed unit (default 300)
``--deadline``              stop within this many seconds (or ``15m``, ``2h``)
``--deadline_margin``       in Glue, stop this long before the job run's
                            timeout (default 120)
``--metrics``               ``none`` (default), ``cloudwatch`` or ``emf``
=========================== ==============================================

Other ``--name value`` pairs (Glue adds ``--JOB_NAME``, ``--JOB_RUN_ID``,
``--job-bookmark-option`` ...) are ignored. In Glue (``awsglue`` importable) the
arguments are read with ``getResolvedOptions``; elsewhere from argv. With
``--JOB_NAME`` and ``--JOB_RUN_ID``, the deadline is the job run's start plus its
timeout less the margin (``glue:GetJobRun``); with ``--deadline`` as well, the earlier
of both. SIGTERM (an ECS task stopped at its timeout) stops as the command line does.

Exit codes as ``aep-extract run``: 0 every unit done, 1 some unit failed or
unfinished, 2 a configuration error. The run's report goes to stdout as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

import attrs

from .. import _cli_args as args_
from .._entry import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    configure_logging,
    exit_code,
    metrics_publisher,
    publish_metrics,
    stop_on_signals,
)
from ..checkpoints import open_store
from ..config import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_WORKERS,
    ConcurrencyConfig,
    ExtractorConfig,
)
from ..errors import AepExtractError, ConfigError
from ..extractor import Extractor
from ..sinks import open_sink
from .secrets import aep_source

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient

__all__ = [
    "OPTIONS",
    "WorkerOptions",
    "deadline_of",
    "glue_deadline",
    "main",
    "read_arguments",
    "run",
]

logger = logging.getLogger(__name__)

PROG = "aep-extract-worker"
OPTIONS = (
    "dataset",
    "store",
    "sink",
    "secret_id",
    "threads",
    "requests_per_second",
    "lease_seconds",
    "deadline",
    "deadline_margin",
    "metrics",
)
"""The worker's options (``--NAME value``)."""
GLUE_RUN = ("JOB_NAME", "JOB_RUN_ID")
"""The arguments by which Glue names the job run the worker is."""
DEFAULT_DEADLINE_MARGIN = 120.0
METRICS = ("none", "cloudwatch", "emf")


def read_arguments(argv: Sequence[str]) -> dict[str, str]:
    """The options given in ``argv`` (and Glue's ``JOB_NAME``, ``JOB_RUN_ID``), by
    name, as text: with ``awsglue.utils.getResolvedOptions`` where ``awsglue``
    imports, else with argparse; other arguments are ignored."""
    names = OPTIONS + GLUE_RUN
    try:
        glue_utils: Any = importlib.import_module("awsglue.utils")
    except ImportError:
        parser = argparse.ArgumentParser(prog=PROG, allow_abbrev=False)
        for name in names:
            parser.add_argument(f"--{name}")
        known, _ = parser.parse_known_args(argv)
        return {k: v for k, v in vars(known).items() if v is not None}
    # getResolvedOptions requires every name it is asked for: ask for those given.
    given = [n for n in names if any(a.split("=")[0] == f"--{n}" for a in argv)]
    resolved = glue_utils.getResolvedOptions([PROG, *argv], given)
    return {name: str(resolved[name]) for name in given}


@attrs.frozen(kw_only=True)
class WorkerOptions:
    """The worker's options, checked (see the module's table).

    Attributes:
        job_name: the Glue job (``--JOB_NAME``), None outside Glue.
        job_run_id: the Glue job run (``--JOB_RUN_ID``), None outside Glue.
    """

    dataset: str
    store: str
    sink: str
    secret_id: Optional[str] = None
    threads: int = DEFAULT_WORKERS
    requests_per_second: Optional[float] = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    deadline: Optional[float] = None
    deadline_margin: float = DEFAULT_DEADLINE_MARGIN
    metrics: str = "none"
    job_name: Optional[str] = None
    job_run_id: Optional[str] = None

    @classmethod
    def parse(
        cls, arguments: Mapping[str, str], env: Optional[Mapping[str, str]] = None
    ) -> WorkerOptions:
        """Options from :func:`read_arguments`; ``--store``, ``--sink`` and
        ``--secret_id`` default to ``AEP_EXTRACT_STORE``, ``AEP_EXTRACT_SINK`` and
        ``AEP_SECRET_ID`` of ``env`` (``os.environ``).

        Raises:
            ConfigError: a missing or malformed option, or a URL of the wrong form.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "store": env.get("AEP_EXTRACT_STORE"),
            "sink": env.get("AEP_EXTRACT_SINK"),
            "secret_id": env.get("AEP_SECRET_ID") or None,
        }
        values.update(arguments)
        missing = [f"--{n}" for n in ("dataset", "store", "sink") if not values.get(n)]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)}")
        for name, convert in _CONVERSIONS.items():
            if name in arguments:
                try:
                    values[name] = convert(arguments[name])
                except argparse.ArgumentTypeError as exc:
                    raise ConfigError(f"--{name}: {exc}") from None
        if values.get("metrics", "none") not in METRICS:
            raise ConfigError(f"--metrics must be one of {', '.join(METRICS)}")
        values["job_name"] = values.pop("JOB_NAME", None)
        values["job_run_id"] = values.pop("JOB_RUN_ID", None)
        # The command line's checks of the dataset id and the URLs' forms.
        args_.check_args(argparse.Namespace(**values))
        return cls(**values)


_CONVERSIONS: dict[str, Callable[[str], object]] = {
    "threads": args_.positive_int,
    "requests_per_second": args_.positive_number,
    "lease_seconds": args_.positive_number,
    "deadline": args_.duration,
    "deadline_margin": args_.duration,
}


def glue_deadline(
    job_name: str,
    run_id: str,
    margin: float = DEFAULT_DEADLINE_MARGIN,
    *,
    client: Optional[GlueClient] = None,
) -> Optional[datetime]:
    """When a Glue job run must have stopped: its ``StartedOn`` plus its
    ``Timeout`` (minutes) less ``margin`` seconds; None if the run has no timeout.

    Raises:
        ConfigError: the run cannot be read (it must exist and the role needs
            ``glue:GetJobRun``).
        AepExtractError: Glue throttled or failed; a retry may pass.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from .._aws_errors import aws_config_errors, transient_kind

    try:
        with aws_config_errors():
            if client is None:
                import boto3

                client = boto3.client("glue")
            run = client.get_job_run(JobName=job_name, RunId=run_id)["JobRun"]
    except (BotoCoreError, ClientError) as exc:
        error = AepExtractError if transient_kind(exc) else ConfigError
        raise error(
            f"cannot read Glue job run {run_id} of job {job_name} "
            f"(the role needs glue:GetJobRun): {exc}"
        ) from exc
    timeout = run.get("Timeout")
    if not timeout or "StartedOn" not in run:
        logger.warning("Glue job run %s has no timeout: no deadline from it", run_id)
        return None
    return run["StartedOn"] + timedelta(minutes=timeout, seconds=-margin)


def deadline_of(options: WorkerOptions) -> Optional[datetime]:
    """The earlier of ``--deadline`` and the Glue job run's deadline, if any."""
    deadlines = []
    if options.deadline is not None:
        now = datetime.now(timezone.utc)
        deadlines.append(now + timedelta(seconds=options.deadline))
    if options.job_name and options.job_run_id:
        glue = glue_deadline(
            options.job_name, options.job_run_id, options.deadline_margin
        )
        if glue is not None:
            deadlines.append(glue)
    return min(deadlines, default=None)


def run(options: WorkerOptions) -> int:
    """Execute the dataset's planned units; print the report; the exit code."""
    concurrency = ConcurrencyConfig(
        workers=options.threads, max_requests_per_second=options.requests_per_second
    )
    publisher = metrics_publisher(options.metrics)
    deadline = deadline_of(options)
    if deadline is not None:
        logger.info("deadline %s", deadline.isoformat())
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(
            aep_source(options.secret_id, concurrency=concurrency)
        )
        source.get_dataset(options.dataset)  # wrong credentials or id: exit 2
        extractor = Extractor(
            source,
            store=stack.enter_context(open_store(options.store)),
            sink=stack.enter_context(open_sink(options.sink, concurrency=concurrency)),
            config=ExtractorConfig(
                lease_seconds=options.lease_seconds, concurrency=concurrency
            ),
            progress=False,
        )
        stack.enter_context(extractor)
        stack.enter_context(stop_on_signals(extractor))
        report = extractor.execute(options.dataset, deadline=deadline)
    print(json.dumps(report.to_dict()), flush=True)
    publish_metrics(publisher, report)
    return EXIT_OK if report.ok else EXIT_INCOMPLETE


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The worker's entry point (argv default ``sys.argv[1:]``); returns the exit
    code."""
    argv = sys.argv[1:] if argv is None else argv
    configure_logging(logging.INFO)
    try:
        arguments = read_arguments(argv)
    except SystemExit as exit_:  # --help, or an option without its value
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return exit_code(PROG, lambda: run(WorkerOptions.parse(arguments)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
