"""Checkpoint stores: the interface, the built-in stores and :func:`open_store`."""

from __future__ import annotations

import importlib
import re
from typing import Any

from .._validators import text_arg
from ..errors import ConfigError
from .base import CheckpointStore
from .memory import MemoryCheckpointStore
from .sqlite import MEMORY, SQLiteCheckpointStore

__all__ = [
    "CheckpointStore",
    "MemoryCheckpointStore",
    "SQLiteCheckpointStore",
    "check_store_url",
    "open_store",
]

STORE_URL_FORMS = (
    "memory://",
    "sqlite:///relative/path.db",
    "sqlite:////absolute/path.db",
    "dynamodb://TABLE",
)
"""The store URLs :func:`open_store` accepts."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def check_table_name(name: object) -> str:
    """``name`` if it is a valid DynamoDB table name.

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(name, str) or not _TABLE_NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a DynamoDB table name "
            "(3-255 characters of A-Z, a-z, 0-9, '_', '-', '.')"
        )
    return name


def open_store(url: str, *, read_only: bool = False, **kwargs: Any) -> CheckpointStore:
    """Open the checkpoint store a URL names.

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
    kind, target = _parse(url)
    if kind == "memory":
        return MemoryCheckpointStore(**kwargs)
    if kind == "sqlite":
        return SQLiteCheckpointStore(target, read_only=read_only, **kwargs)
    return _open_dynamodb(target, read_only=read_only, **kwargs)


def check_store_url(url: str) -> None:
    """Check that :func:`open_store` accepts the URL's form, opening nothing.

    Raises:
        ConfigError: see :func:`open_store`.
    """
    _parse(url)


def _parse(url: str) -> tuple[str, str]:
    """The kind of store a URL names (memory, sqlite, dynamodb) and its path or
    table."""
    match = _SCHEME.match(text_arg(url, "store URL"))
    scheme = match.group(1).lower() if match else ""
    rest = url[match.end() :] if match else ""
    if scheme == "memory" and rest in ("", "/"):
        return scheme, ""
    if scheme == "sqlite":
        if rest == "":
            return scheme, MEMORY
        if rest.startswith("/"):
            if rest == "/":
                raise ConfigError(f"store URL {url!r} names no file")
            return scheme, rest[1:]
        # sqlite://name would put the path where a URL's host goes: refuse to guess.
        raise ConfigError(
            f"store URL {url!r}: write sqlite:///{rest} for the relative path "
            f"{rest!r}, or sqlite:////{rest} for the absolute path /{rest}"
        )
    if scheme == "dynamodb":
        try:
            return scheme, check_table_name(rest.rstrip("/"))
        except ConfigError as exc:
            raise ConfigError(f"store URL {url!r}: {exc}") from None
    raise ConfigError(
        f"unsupported store URL {url!r}; expected one of: {', '.join(STORE_URL_FORMS)}"
    )


def _open_dynamodb(table: str, **kwargs: Any) -> CheckpointStore:
    module_name = f"{__name__}.dynamodb"
    # Imported by name and lazily: boto3 loads only when a DynamoDB store is used.
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise ConfigError(f"dynamodb:// store cannot be imported: {exc}") from exc
        raise ConfigError("dynamodb:// store is not available yet") from exc
    store: CheckpointStore = module.DynamoDBCheckpointStore(table, **kwargs)
    return store
