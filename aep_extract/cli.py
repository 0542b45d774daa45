"""The ``aep-extract`` command line: the Extractor's verbs over URLs and ``AEP_*``.

Exit codes: 0 every unit Completed, Skipped or Waiting on AEP; 1 some unit Failed or
left unfinished, or a check found a discrepancy; 2 usage or configuration error (one
line on stderr).

Every argument is checked before a command opens anything, so a rejected command
leaves no file, directory or table behind; commands that only read the store open it
read-only and never create it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from collections.abc import Sequence
from typing import Any, Callable, Optional

from . import __version__
from . import _cli_args as args_
from . import _cli_aws as aws_
from . import _cli_catalog as catalog_
from . import _cli_help as help_
from . import _cli_ops as _ops
from . import _cli_transform as transform_
from ._entry import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    configure_logging,
    exit_code,
    metrics_publisher,
    publish_metrics,
    stop_on_signals,
)
from ._status_format import format_status
from .config import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_WORKERS,
    ConcurrencyConfig,
    ExtractorConfig,
)
from .extractor import Extractor
from .models import TimeWindow
from .report import DatasetStatus
from .sinks import open_sink
from .sources import open_source

logger = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code is already 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``aep-extract``."""
    parser = _Parser(
        prog="aep-extract",
        description="Copy Adobe Experience Platform datasets to S3 or a directory, "
        "restartably and exactly once. AEP credentials come from AEP_* variables.",
        epilog=help_.epilog(),
        formatter_class=help_.Formatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"aep-extract {__version__} (Python {platform.python_version()})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v each unit and retry, -vv every request (debug)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="log errors only, and show no progress bar",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or one JSON object per line, with "
        "dataset, batch and file fields (for CloudWatch Logs)",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=help_.epilog(name),
            formatter_class=help_.Formatter,
        )

    run = command("run", "plan the window, then copy every planned unit")
    args_.plan_args(run)
    args_.sink_arg(run)
    args_.work_args(run)
    catalog_.glue_table_arg(run)
    transform_.transform_args(run)
    plan = command("plan", "register the window's batches as Pending units")
    args_.plan_args(plan)
    plan.add_argument("--json", action="store_true", help="print JSON")
    args_.status_args(command("status", args_.STATUS_HELP))
    retry = command("retry-failed", "put Failed units back to Pending")
    args_.dataset_arg(retry)
    args_.store_arg(retry)
    retry.add_argument(
        "--unit", action="append", metavar="UNIT_ID", help="only this unit (repeatable)"
    )
    retry.add_argument("--json", action="store_true", help="print JSON")
    _ops.add_verify(command("verify", _ops.VERIFY_HELP))
    _ops.add_cleanup(command("cleanup", _ops.CLEANUP_HELP))
    _ops.add_reset(command("reset", _ops.RESET_HELP))
    _ops.add_failed(command("failed", _ops.FAILED_HELP))
    aws_.add_aws(command("aws", aws_.AWS_HELP))
    demo = command("demo", "extract a sample dataset from a built-in fake AEP")
    demo.add_argument(
        "--dir",
        default="aep-extract-demo",
        metavar="DIR",
        help="where the demo writes its files and state (default "
        "./aep-extract-demo; a second run there copies nothing new)",
    )
    demo.add_argument(
        "--workers",
        type=args_.positive_int,
        default=4,
        metavar="N",
        help="files copied at once (default 4)",
    )
    demo.add_argument(
        "--faults",
        metavar="SPEC",
        default=None,
        help="faults for the fake platform to inject, e.g. "
        "'429=0.1,reset=0.05,5xx=0.05,truncate=0.05' (see the testing docs)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``aep-extract``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors (code 2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:  # a bare aep-extract: what it can do
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(
        args.verbose,
        args.quiet,
        # The demo narrates its units in the log unless a progress bar shows them.
        default_info=args.command == "demo" and not sys.stderr.isatty(),
        log_format=args.log_format,
    )
    handler: Callable[[argparse.Namespace], int] = _COMMANDS[args.command]

    def work() -> int:
        args_.check_args(args)  # every argument error at once, before AEP_* are read
        return handler(args)

    return exit_code("aep-extract", work)


def _configure_logging(
    verbose: int, quiet: bool, *, default_info: bool, log_format: str = "text"
) -> None:
    level = logging.WARNING
    if verbose or default_info:
        level = logging.INFO
    if verbose > 1:
        level = logging.DEBUG
    if quiet:
        level = logging.ERROR
    configure_logging(level, log_format)


def _extractor(args: argparse.Namespace, sink_url: str) -> Extractor:
    # One concurrency for every part; of the AEP limits only what was given:
    # AEP_MAX_RPS / AEP_MAX_IN_FLIGHT apply otherwise.
    concurrency = ConcurrencyConfig(workers=getattr(args, "workers", DEFAULT_WORKERS))
    limits = {
        name: getattr(args, name)
        for name in ("max_requests_per_second", "max_in_flight")
        if getattr(args, name, None) is not None
    }
    source = open_source(args.source, concurrency=concurrency, **limits)
    # Before the store is opened (a SQLite file would be created): a wrong secret or
    # dataset id leaves nothing behind.
    source.get_dataset(args.dataset)
    sink = open_sink(sink_url, concurrency=concurrency)
    return Extractor(
        source,
        store=args_.open_store_arg(args),
        sink=sink,
        hooks=catalog_.partition_hooks(args, sink),
        config=ExtractorConfig(
            files_per_unit=args.files_per_unit,
            lease_seconds=getattr(args, "lease_seconds", DEFAULT_LEASE_SECONDS),
            safety_lag_seconds=args.lag,
            copy_replays=args.copy_replays,
            concurrency=concurrency,
            spool_dir=transform_.spool_dir(args),
        ),
        progress=False if args.quiet else None,
        transform=getattr(args, "transformer", None),
    )


def _window(args: argparse.Namespace) -> dict[str, Any]:
    """The window arguments of ``run``/``plan`` (checked by ``check_args``)."""
    return {"start": args.start, "end": args.end}


def _cmd_run(args: argparse.Namespace) -> int:
    window = _window(args)
    publisher = metrics_publisher(args.metrics)
    extractor = _extractor(args, args.sink)
    with extractor, stop_on_signals(extractor), catalog_.registering(extractor):
        if args.since_last:
            report = extractor.run_since_last(
                args.dataset, deadline=args.deadline, **window
            )
        else:
            report = extractor.run(args.dataset, deadline=args.deadline, **window)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    publish_metrics(publisher, report)
    return EXIT_OK if report.ok else EXIT_INCOMPLETE


def _cmd_plan(args: argparse.Namespace) -> int:
    window = _window(args)
    with _extractor(args, "memory://") as extractor:
        if args.since_last:
            result = extractor.plan_since_last(args.dataset, **window)
        else:
            result = extractor.plan(args.dataset, **window)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    window: Optional[TimeWindow] = args.window
    with args_.open_store_arg(args, read_only=True) as store:
        status = DatasetStatus.from_store(store, args.dataset, window)
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    if not status.units:
        scope = "" if window is None else f" with a batch created in {window}"
        print(
            f"aep-extract: no units recorded for dataset {args.dataset}{scope}",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    if not args.json:
        print(format_status(status, units=args.units))
    return EXIT_OK if status.ok else EXIT_INCOMPLETE


def _cmd_retry_failed(args: argparse.Namespace) -> int:
    with args_.open_store_arg(args) as store:
        moved = store.retry_failed(args.dataset, args.unit)
    if args.json:
        print(json.dumps({"datasetId": args.dataset, "unitsMoved": moved}))
    else:
        print(f"{moved} unit(s) back to Pending")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir, workers=args.workers, faults=args.faults)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _cmd_run,
    "plan": _cmd_plan,
    "status": _cmd_status,
    "retry-failed": _cmd_retry_failed,
    "demo": _cmd_demo,
    "verify": _ops.cmd_verify,
    "cleanup": _ops.cmd_cleanup,
    "reset": _ops.cmd_reset,
    "failed": _ops.cmd_failed,
    "aws": aws_.cmd_aws,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
