"""``--transform SPEC`` and ``--spool-dir DIR`` of ``run``: the per-file transform a
run applies (:doc:`/transforms`)."""

from __future__ import annotations

import argparse
from typing import Optional

from .errors import ConfigError
from .transforms.base import Transform
from .transforms.spec import open_transform

TRANSFORM_HELP = (
    "process each file on the way: NAME[:key=value;...], e.g. "
    "'project:columns=_id,timestamp', \"filter:expr=eventType = 'x'\", jsonl, "
    "parquet:compression=zstd; repeat to compose, in order (the built-ins need "
    "the parquet extra: pyarrow)"
)
SPOOL_HELP = (
    "where transforms spool each file they read (one per worker at a time; "
    "default: the system's temporary directory)"
)


def transform_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--transform SPEC`` (repeatable) and ``--spool-dir DIR`` to ``run``."""
    parser.add_argument(
        "--transform", action="append", metavar="SPEC", help=TRANSFORM_HELP
    )
    parser.add_argument("--spool-dir", metavar="DIR", help=SPOOL_HELP)


def transform_errors(args: argparse.Namespace) -> list[str]:
    """What is wrong with ``--transform`` (for ``check_args``). Sets
    ``args.transformer``: the transform built from the specs, or None."""
    args.transformer = None
    specs = getattr(args, "transform", None)
    if not specs:
        return []
    try:
        transform: Transform = open_transform(specs)
    except ConfigError as exc:
        return [f"--transform: {exc}"]
    args.transformer = transform
    if getattr(args, "glue_table", None) is not None:
        other = [s for s in transform.suffixes if not s.endswith(".parquet")]
        if other:
            return [
                f"--glue-table needs Parquet outputs, but --transform writes "
                f"{', '.join(other)}"
            ]
    return []


def spool_dir(args: argparse.Namespace) -> Optional[str]:
    """The ``--spool-dir`` given, or None."""
    return getattr(args, "spool_dir", None)
