"""The options of the ``aep-extract`` commands, shared by :mod:`aep_extract.cli` and
its operations commands."""

from __future__ import annotations

import argparse

from .checkpoints import CheckpointStore, open_store
from .config import DEFAULT_LEASE_SECONDS, DEFAULT_SAFETY_LAG_SECONDS
from .errors import ConfigError
from .extractor import Deadline
from .models import parse_timestamp


def dataset_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="AEP dataset id")


def window_args(parser: argparse.ArgumentParser) -> None:
    dataset_arg(parser)
    parser.add_argument(
        "--start",
        required=True,
        help="window start, ISO 8601 with offset or Z (inclusive)",
    )
    parser.add_argument(
        "--end", required=True, help="window end, ISO 8601 with offset or Z (exclusive)"
    )


def plan_args(parser: argparse.ArgumentParser) -> None:
    """The window of ``run`` and ``plan``: given, or continued with --since-last."""
    dataset_arg(parser)
    parser.add_argument(
        "--start",
        help="window start, ISO 8601 with offset or Z (inclusive); with --since-last "
        "only for the dataset's first incremental run",
    )
    parser.add_argument(
        "--end",
        help="window end, ISO 8601 with offset or Z (exclusive); with --since-last "
        "the default is now minus --lag",
    )
    parser.add_argument(
        "--since-last",
        action="store_true",
        help="start where the last planned window of the dataset ended (the daily job)",
    )
    parser.add_argument(
        "--lag",
        type=duration,
        default=DEFAULT_SAFETY_LAG_SECONDS,
        metavar="DURATION",
        help="with --since-last, end this far before now, e.g. 900, 15m, 2h "
        f"(default {DEFAULT_SAFETY_LAG_SECONDS / 60:.0f}m)",
    )
    parser.add_argument(
        "--copy-replays",
        action="store_true",
        help="also copy batches that replay batches already copied "
        "(their data then appears twice); skipped by default",
    )
    store_arg(parser)
    split_arg(parser)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds from ``900``, ``90s``, ``15m``, ``2h`` or ``1d``."""
    number, unit = text.strip(), "s"
    if number[-1:].lower() in DURATION_UNITS:
        number, unit = number[:-1], number[-1].lower()
    try:
        value = float(number) * DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 900, 15m or 2h"
        ) from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def sink_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sink", required=True, help="s3://bucket/prefix, a directory, or file:///dir"
    )


def store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        required=True,
        help="sqlite:///state.db, dynamodb://TABLE or memory://",
    )
    parser.add_argument(
        "--create-table",
        action="store_true",
        help="create the DynamoDB table (on-demand billing) if it does not exist",
    )


def deadline(text: str) -> Deadline:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or give seconds)") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def split_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--files-per-unit",
        type=positive_int,
        default=None,
        help="split batches with more files into offset ranges of this many files "
        "(batches planned before keep their layout)",
    )


def work_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=8,
        help="files copied at once (default 8)",
    )
    parser.add_argument(
        "--max-rps",
        dest="max_requests_per_second",
        type=float,
        default=None,
        help="ceiling of AEP requests per second; the rate adapts below it on 429s "
        "(default 50, or AEP_MAX_RPS)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=None,
        help="AEP requests open at once (default 16, or AEP_MAX_IN_FLIGHT)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=positive_int,
        default=int(DEFAULT_LEASE_SECONDS),
        help="how long a unit of a crashed worker stays locked "
        f"(default {DEFAULT_LEASE_SECONDS:.0f})",
    )
    parser.add_argument(
        "--deadline",
        type=deadline,
        default=None,
        help="stop by this many seconds from now, or by this ISO 8601 time: files "
        "in flight are abandoned, leases given back; set it a minute before a Glue "
        "or Lambda timeout",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--metrics",
        choices=("none", "cloudwatch", "emf"),
        default="none",
        help="publish the run's metrics: cloudwatch (PutMetricData) or emf "
        "(an embedded-metric-format line on stdout); default none",
    )


STATUS_HELP = "show a dataset's units by status, progress, leases and errors"
STATUS_EPILOG = """\
exit status:
  0  every unit in scope is Completed, Skipped or Waiting (nothing to do now)
  1  some unit is Pending, InProgress or Failed, or no unit is recorded
     in scope (a mistyped dataset id, or a window without batches)
  2  usage error: a bad option, only one of --start and --end, or a time
     without a UTC offset"""


def status_args(parser: argparse.ArgumentParser) -> None:
    parser.epilog = STATUS_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    dataset_arg(parser)
    store_arg(parser)
    parser.add_argument(
        "--start", help="with --end: only units whose batch was created from here"
    )
    parser.add_argument("--end", help="with --start: ... up to here (exclusive)")
    parser.add_argument(
        "--units", action="store_true", help="also list every unit, one row each"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def open_store_arg(args: argparse.Namespace) -> CheckpointStore:
    """The store of ``--store`` (and ``--create-table``)."""
    if args.store.startswith("dynamodb://"):
        return open_store(args.store, create_table=args.create_table)
    return open_store(args.store)
