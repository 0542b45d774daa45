"""``--glue-table DATABASE.TABLE`` of ``run`` and ``verify``: the Glue table whose
``date=`` partitions a run registers and ``verify`` checks."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

from .errors import ConfigError
from .tables.base import check_name
from .tables.partitions import PartitionHooks, table_location

if TYPE_CHECKING:
    from .extractor import Extractor
    from .sinks.base import Sink
    from .tables.glue import GlueCatalog

RUN_HELP = (
    "register each copied day as a date= partition of this Glue table, creating "
    "the table from the files' Parquet schema on first use (needs pyarrow), and "
    "register what an earlier run left out; the database must exist, the sink "
    "must be s3://"
)
VERIFY_HELP = "also report days copied but missing from this Glue table's partitions"


def glue_table_arg(parser: argparse.ArgumentParser, *, verify: bool = False) -> None:
    """Add ``--glue-table DATABASE.TABLE`` (default None) to ``run`` or ``verify``."""
    parser.add_argument(
        "--glue-table",
        type=glue_table,
        default=None,
        metavar="DATABASE.TABLE",
        help=VERIFY_HELP if verify else RUN_HELP,
    )


def glue_table(text: str) -> tuple[str, str]:
    """``(database, table)`` of a ``DATABASE.TABLE`` argument."""
    database, dot, table = text.partition(".")
    try:
        if not dot:
            raise ConfigError(f"{text!r} is not DATABASE.TABLE")
        return check_name(database, "Glue database"), check_name(table, "Glue table")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def glue_table_errors(args: argparse.Namespace) -> list[str]:
    """What is wrong with ``--glue-table`` given the other arguments (for
    ``check_args``): it needs an ``s3://`` sink."""
    if getattr(args, "glue_table", None) is None:
        return []
    if not str(getattr(args, "sink", "")).startswith("s3://"):
        return [f"--glue-table needs an s3:// --sink, not {args.sink!r}"]
    return []


def open_glue_table(args: argparse.Namespace, sink_url: str) -> Optional[GlueCatalog]:
    """The table of ``--glue-table`` over ``args.dataset`` in ``sink_url``, or None
    without the option.

    Raises:
        ConfigError: see :class:`~aep_extract.tables.glue.GlueCatalog` and
            :func:`~aep_extract.tables.table_location`.
    """
    if getattr(args, "glue_table", None) is None:
        return None
    from .tables.glue import GlueCatalog  # boto3, only when asked for

    database, table = args.glue_table
    location = table_location(sink_url, args.dataset)
    return GlueCatalog(database, table, location=location)


def partition_hooks(args: argparse.Namespace, sink: Sink) -> Optional[PartitionHooks]:
    """The hooks registering the run's partitions in ``--glue-table`` (reading a
    schema from ``sink`` if the table must be created), or None without the
    option."""
    catalog = open_glue_table(args, sink.url)
    if catalog is None:
        return None
    return PartitionHooks(catalog, args.dataset, sink=sink)


@contextlib.contextmanager
def registering(extractor: Extractor) -> Iterator[None]:
    """Around a run: when the extractor has :class:`PartitionHooks`, register
    the partitions earlier runs left out before the block (failing early when
    Glue cannot be used), and after it those this run's hooks could not. A block
    that raises skips the second repair: the next run's first one does it."""
    hooks = next(
        (h for h in extractor.hooks.hooks if isinstance(h, PartitionHooks)), None
    )
    if hooks is None:
        yield
        return
    hooks.repair(extractor.store)
    yield
    hooks.repair(extractor.store)
