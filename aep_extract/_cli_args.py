"""The options of the ``aep-extract`` commands, shared by :mod:`aep_extract.cli` and
its operations commands, and :func:`check_args`, which checks them all before a
command opens anything."""

from __future__ import annotations

import argparse
import math
from datetime import datetime
from typing import Callable, Optional

from . import _cli_catalog as catalog_
from . import _cli_transform as transform_
from . import registry
from .checkpoints import CheckpointStore, check_store_url, open_store
from .config import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_SAFETY_LAG_SECONDS,
    DEFAULT_START_REQUESTS_PER_SECOND,
    IN_FLIGHT_PER_WORKER,
)
from .errors import ConfigError, MissingResourceError
from .extractor import Deadline
from .models import TimeWindow, parse_timestamp
from .sinks import check_sink_url
from .sources import check_source_url

# How a command takes its window (the ``window_rule`` default of its parser).
_REQUIRED, _OPTIONAL, _PLANNED = "required", "optional", "planned"


def dataset_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="ID", help="AEP dataset id")


def window_args(parser: argparse.ArgumentParser) -> None:
    dataset_arg(parser)
    parser.add_argument(
        "--start",
        required=True,
        metavar="TIME",
        help="window start, ISO 8601 with offset or Z (inclusive)",
    )
    parser.add_argument(
        "--end",
        required=True,
        metavar="TIME",
        help="window end, ISO 8601 with offset or Z (exclusive)",
    )
    parser.set_defaults(window_rule=_REQUIRED)


def optional_window_args(parser: argparse.ArgumentParser) -> None:
    """--start and --end, both or neither (``args.window`` is None without)."""
    parser.add_argument(
        "--start",
        metavar="TIME",
        help="with --end: only units whose batch was created from here",
    )
    parser.add_argument(
        "--end", metavar="TIME", help="with --start: ... up to here (exclusive)"
    )
    parser.set_defaults(window_rule=_OPTIONAL)


def plan_args(parser: argparse.ArgumentParser) -> None:
    """The window of ``run`` and ``plan``: given, or continued with --since-last."""
    dataset_arg(parser)
    parser.add_argument(
        "--start",
        metavar="TIME",
        help="window start, ISO 8601 with offset or Z (inclusive); with --since-last "
        "only for the dataset's first incremental run",
    )
    parser.add_argument(
        "--end",
        metavar="TIME",
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
    source_arg(parser)
    split_arg(parser)
    parser.set_defaults(window_rule=_PLANNED)


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


def source_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        default="aep://",
        metavar="URL",
        help=f"where the data comes from, one of: {registry.forms('source')} "
        "(default aep://)",
    )


def sink_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sink", required=True, metavar="URL", help=url_help("sink"))


def url_help(kind: registry.Kind) -> str:
    """The help of a URL option: the forms the registry knows."""
    return f"one of: {registry.forms(kind)}"


def store_arg(parser: argparse.ArgumentParser, *, writes: bool = True) -> None:
    """--store, and --create-table for a command that writes the store."""
    parser.add_argument("--store", required=True, metavar="URL", help=url_help("store"))
    if writes:
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


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


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
        metavar="N",
        help="split batches with more files into offset ranges of this many files "
        "(batches planned before keep their layout)",
    )


def work_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=8,
        metavar="N",
        help="files copied at once (default 8)",
    )
    parser.add_argument(
        "--max-rps",
        dest="max_requests_per_second",
        type=positive_number,
        default=None,
        metavar="N",
        help="safety ceiling of AEP requests per second; the rate starts at "
        f"{DEFAULT_START_REQUESTS_PER_SECOND:g} and probes up to it until 429s or "
        f"slower answers (default {DEFAULT_MAX_REQUESTS_PER_SECOND:g}, or AEP_MAX_RPS)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=None,
        metavar="N",
        help="AEP requests open at once (default "
        f"{IN_FLIGHT_PER_WORKER} x --workers, or AEP_MAX_IN_FLIGHT)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=positive_int,
        metavar="SECONDS",
        default=int(DEFAULT_LEASE_SECONDS),
        help="how long a unit of a crashed worker stays locked "
        f"(default {DEFAULT_LEASE_SECONDS:.0f})",
    )
    parser.add_argument(
        "--deadline",
        type=deadline,
        default=None,
        metavar="SECONDS|TIME",
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


def status_args(parser: argparse.ArgumentParser) -> None:
    dataset_arg(parser)
    store_arg(parser, writes=False)
    optional_window_args(parser)
    parser.add_argument(
        "--units", action="store_true", help="also list every unit, one row each"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def open_store_arg(
    args: argparse.Namespace, *, read_only: bool = False
) -> CheckpointStore:
    """The store of ``--store`` (and ``--create-table``); ``read_only`` for a
    command that only reads it, which then creates nothing.

    Raises:
        MissingResourceError: the SQLite file or DynamoDB table does not exist
            (and is not to be created).
    """
    options = {"create_table": True} if getattr(args, "create_table", False) else {}
    try:
        return open_store(args.store, read_only=read_only, **options)
    except MissingResourceError as exc:
        raise MissingResourceError(f"{exc}; check --store") from exc


_URL_OPTIONS: tuple[tuple[str, str, Callable[[str], None]], ...] = (
    ("source", "--source", check_source_url),
    ("store", "--store", check_store_url),
    ("sink", "--sink", check_sink_url),
    ("export_to", "--export-to", check_sink_url),
)


def check_args(args: argparse.Namespace) -> None:
    """Check every argument of a command before it opens anything, and report all
    errors at once. Sets ``args.window``: the window given (None without one).

    Raises:
        ConfigError: one or more arguments are wrong; the message lists them all.
    """
    errors: list[str] = []
    dataset = getattr(args, "dataset", None)
    if dataset is not None and not dataset.strip():
        errors.append("--dataset is empty")
    args.window = _window(args, errors)
    for name, flag, check in _URL_OPTIONS:
        url = getattr(args, name, None)
        if url is not None:
            try:
                check(url)
            except ConfigError as exc:
                errors.append(f"{flag}: {exc}")
    if getattr(args, "create_table", False) and not (
        (args.store or "").lower().startswith("dynamodb://")
    ):
        errors.append("--create-table needs a dynamodb:// --store")
    errors += catalog_.glue_table_errors(args)
    errors += transform_.transform_errors(args)
    if getattr(args, "export_to", None) and not args.store:
        errors.append("--export-to needs --store to checkpoint the export")
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        numbered = "; ".join(f"({n}) {error}" for n, error in enumerate(errors, 1))
        raise ConfigError(f"{len(errors)} errors in the arguments: {numbered}")


def _window(args: argparse.Namespace, errors: list[str]) -> Optional[TimeWindow]:
    """The window of --start and --end, checked as the command takes it."""
    rule = getattr(args, "window_rule", None)
    if rule is None:
        return None
    given = {flag: getattr(args, flag) for flag in ("start", "end")}
    moments: dict[str, datetime] = {}
    for flag, text in given.items():
        if text is not None:
            try:
                moments[flag] = parse_timestamp(text)
            except ConfigError as exc:
                errors.append(f"--{flag}: {exc}")
    count = sum(text is not None for text in given.values())
    if rule == _OPTIONAL and count == 1:
        errors.append("give both --start and --end, or neither")
    if rule == _PLANNED and count < 2 and not args.since_last:
        errors.append("give --start and --end, or --since-last")
    if len(moments) < 2:
        return None
    try:
        return TimeWindow(moments["start"], moments["end"])
    except ConfigError as exc:
        errors.append(str(exc))
        return None
