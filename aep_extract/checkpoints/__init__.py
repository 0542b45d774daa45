"""Checkpoint stores: the interface, the built-in stores and :func:`open_store`."""

from __future__ import annotations

from typing import Any

from .. import registry
from .base import CheckpointStore
from .memory import MemoryCheckpointStore
from .sqlite import SQLiteCheckpointStore

__all__ = [
    "CheckpointStore",
    "MemoryCheckpointStore",
    "SQLiteCheckpointStore",
    "check_store_url",
    "open_store",
]


def open_store(url: str, *, read_only: bool = False, **kwargs: Any) -> CheckpointStore:
    """Open the checkpoint store a URL names; :mod:`aep_extract.registry` lists the
    schemes (``aep-extract run --help`` too).

    The forms follow SQLAlchemy's for SQLite: what follows ``sqlite:///`` is the path
    verbatim, so three slashes give a relative path and four an absolute one:

    - ``memory://``: a :class:`MemoryCheckpointStore` (this process only);
    - ``sqlite:///state.db``: ``state.db`` relative to the working directory;
    - ``sqlite:////var/lib/aep/state.db``: the absolute path ``/var/lib/aep/state.db``;
    - ``sqlite://``: a private in-memory SQLite database;
    - ``dynamodb://TABLE``: the DynamoDB table ``TABLE``.

    Args:
        url: the store URL.
        read_only: open an existing store to read it, creating nothing: a SQLite
            file must exist, a DynamoDB table is never created; writes raise
            :exc:`~aep_extract.errors.CheckpointError`. (A ``memory://`` store is
            new and empty either way.)
        **kwargs: passed to the store's constructor (``clock``, ``timeout``, ...).

    Raises:
        ConfigError: the URL has none of these forms, or names an unavailable store.
        MissingResourceError: ``read_only`` and the SQLite file or the DynamoDB
            table does not exist.
    """
    store: CheckpointStore = registry.open_url(
        "store", url, read_only=read_only, **kwargs
    )
    return store


def check_store_url(url: str) -> None:
    """Check that :func:`open_store` accepts the URL's form, opening nothing.

    Raises:
        ConfigError: see :func:`open_store`.
    """
    registry.check_url("store", url)
