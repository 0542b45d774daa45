"""Operations subcommands of ``aep-extract``: ``verify``, ``cleanup``, ``reset`` and
``failed``. :mod:`aep_extract.cli` adds them to its parser and command table."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import timedelta
from typing import Any, Optional

from . import _cli_args as args_
from . import _cli_catalog as catalog_
from .config import ConcurrencyConfig
from .errors import ConfigError
from .failed import export_failed_files, failed_batches, failed_prefix
from .models import TimeWindow
from .schedulers import ThreadPoolScheduler
from .sinks import open_sink
from .sources import open_source
from .verify import verify

EXIT_OK, EXIT_DISCREPANCY, EXIT_USAGE = 0, 1, 2

VERIFY_HELP = "check the sink against the store and the Catalog"
CLEANUP_HELP = "remove incomplete writes (temporary files, multipart uploads)"
RESET_HELP = "forget the recorded state of a dataset or a window"
FAILED_HELP = "list batches that failed ingestion; optionally export their files"
CONFIRM_PROMPT = "Type the dataset id to confirm: "


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_verify(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``verify``."""
    args_.window_args(parser)
    args_.sink_arg(parser)
    args_.store_arg(parser, writes=False)
    args_.source_arg(parser)
    parser.add_argument(
        "--no-checksums",
        dest="checksums",
        action="store_false",
        help="compare sizes only; by default every object is read back and its "
        "SHA-256 compared with its manifest",
    )
    catalog_.glue_table_arg(parser, verify=True)
    parser.add_argument(
        "--no-catalog",
        dest="catalog",
        action="store_false",
        help="do not read the Catalog (no AEP credentials needed): the store's "
        "units stand for the window's batches",
    )
    _json_flag(parser)


def add_cleanup(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cleanup``."""
    args_.sink_arg(parser)
    parser.add_argument(
        "--older-than",
        type=_seconds,
        default=86400.0,
        metavar="SECONDS",
        help="only leftovers begun this long ago (default 86400: a day); a shorter "
        "time can break a run that is writing now",
    )
    parser.add_argument(
        "--prefix",
        default="",
        metavar="KEY_PREFIX",
        help="only under this key prefix of the sink",
    )
    _json_flag(parser)


def add_reset(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reset``."""
    args_.dataset_arg(parser)
    args_.store_arg(parser)
    args_.optional_window_args(parser)
    parser.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation"
    )
    _json_flag(parser)


def add_failed(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``failed``."""
    args_.window_args(parser)
    parser.add_argument(
        "--export-to",
        metavar="URL",
        help="copy the failed files to this sink under failed/DATASET/ (needs --store)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help=f"for --export-to: {args_.url_help('store')}",
    )
    args_.source_arg(parser)
    parser.add_argument(
        "--create-table",
        action="store_true",
        help="create the DynamoDB table (on-demand billing) if it does not exist",
    )
    parser.add_argument(
        "--workers", type=args_.positive_int, default=4, help=argparse.SUPPRESS
    )
    _json_flag(parser)


def _print(args: argparse.Namespace, data: Any, text: object) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def cmd_verify(args: argparse.Namespace) -> int:
    """``aep-extract verify``."""
    window: TimeWindow = args.window
    source = open_source(args.source) if args.catalog else None
    try:
        if source is not None:
            source.get_dataset(args.dataset)  # an unknown dataset exits 2
        store = args_.open_store_arg(args, read_only=True)
        table = catalog_.open_glue_table(args, args.sink)
        with store, open_sink(args.sink) as sink, table or contextlib.nullcontext():
            report = verify(
                source=source,
                store=store,
                sink=sink,
                dataset_id=args.dataset,
                window=window,
                checksums=args.checksums,
                table=table,
            )
    finally:
        if source is not None:
            source.close()
    _print(args, report.to_dict(), report)
    return EXIT_OK if report.ok else EXIT_DISCREPANCY


def cmd_cleanup(args: argparse.Namespace) -> int:
    """``aep-extract cleanup``."""
    with open_sink(args.sink) as sink:
        removed = sink.cleanup_incomplete(
            args.prefix, older_than=timedelta(seconds=args.older_than)
        )
    _print(
        args,
        {"sink": args.sink, "prefix": args.prefix, "removed": removed},
        f"removed {removed} incomplete write(s) from {args.sink}"
        + (f" under {args.prefix}" if args.prefix else ""),
    )
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    """``aep-extract reset``."""
    window: Optional[TimeWindow] = args.window
    scope = f"dataset {args.dataset}" + ("" if window is None else f" in {window}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"reset would forget the state of {scope}; stdin is not a terminal, "
                "so pass --yes to confirm"
            )
        print(f"This forgets the recorded state of {scope} in {args.store}.")
        if input(CONFIRM_PROMPT).strip() != args.dataset:
            raise ConfigError("confirmation did not match; nothing was forgotten")
    with args_.open_store_arg(args) as store:
        try:
            forgotten = store.forget(args.dataset, window)
        except NotImplementedError as exc:
            raise ConfigError(str(exc)) from exc
    _print(
        args,
        {"datasetId": args.dataset, "forgotten": forgotten},
        f"forgot {forgotten} unit(s) of {scope}; objects in the sink are kept "
        "and a rerun skips them",
    )
    return EXIT_OK


def cmd_failed(args: argparse.Namespace) -> int:
    """``aep-extract failed``."""
    window: TimeWindow = args.window
    concurrency = ConcurrencyConfig(workers=args.workers)
    with open_source(args.source, concurrency=concurrency) as source:
        source.get_dataset(args.dataset)
        batches = failed_batches(source, args.dataset, window)
        report = None
        if args.export_to:
            sink = open_sink(args.export_to, concurrency=concurrency)
            with args_.open_store_arg(args) as store, sink:
                report = export_failed_files(
                    source,
                    store=store,
                    sink=sink,
                    dataset_id=args.dataset,
                    start=window.start,
                    end=window.end,
                    scheduler=ThreadPoolScheduler(concurrency.workers),
                )
    data = {
        "datasetId": args.dataset,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "batches": [
            {
                "batchId": b.batch_id,
                "status": b.status,
                "created": b.created.isoformat(),
                "errors": [dict(e) for e in b.errors],
            }
            for b in batches
        ],
        "export": None if report is None else report.to_dict(),
    }
    lines = [f"dataset {args.dataset} {window}: {len(batches)} failed batch(es)"]
    for b in batches:
        lines.append(f"{b.batch_id}  {b.status}  created {b.created.isoformat()}")
        lines += [
            f"  {e.get('code', '?')}: {e.get('description', '')}" for e in b.errors
        ]
    if report is not None:
        lines.append(
            f"exported to {args.export_to} under {failed_prefix(args.dataset)}"
        )
        lines.append(str(report))
    _print(args, data, "\n".join(lines))
    return EXIT_OK if report is None or report.ok else EXIT_DISCREPANCY
