"""The TableCatalog interface: one external table partitioned by ``date``."""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable

from .._closeable import Closeable
from ..errors import ConfigError
from .hive_types import SchemaLike

PARTITION_KEY = "date"
"""The table's one partition key (a string, ``YYYY-MM-DD``), as in the sink's keys."""

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


class TableCatalog(Closeable, abc.ABC):
    """One table of a data catalog over a dataset's copy, partitioned by ``date``.

    Every method is idempotent: creating a table that exists, or adding a
    partition that exists, succeeds and changes nothing.
    """

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """The table's location (``s3://bucket/prefix/dataset_id/``); the partition
        ``date=D`` is at ``{location}date=D/``."""

    @abc.abstractmethod
    def table_exists(self) -> bool:
        """Whether the table exists."""

    @abc.abstractmethod
    def ensure_table(self, schema: SchemaLike) -> bool:
        """Create the table with these columns unless it exists.

        Returns:
            True if this call created it.
        """

    @abc.abstractmethod
    def add_partitions(self, dates: Iterable[str]) -> int:
        """Add the partitions of these days (``YYYY-MM-DD``); existing ones stay.

        Returns:
            How many were new.
        """

    @abc.abstractmethod
    def missing_partitions(self, dates: Iterable[str]) -> list[str]:
        """The days among ``dates`` that have no partition, sorted (all of them when
        the table does not exist)."""

    def partition_location(self, date: str) -> str:
        """Where the partition of one day is."""
        return f"{self.location}{PARTITION_KEY}={check_date(date)}/"


def check_date(date: object) -> str:
    """``date`` if it is a partition value ``YYYY-MM-DD``.

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(date, str) or not _DATE.match(date):
        raise ConfigError(f"partition date {date!r} is not YYYY-MM-DD")
    return date


def check_name(name: object, what: str = "table") -> str:
    """``name`` if it is a usable database or table name: 1-255 of ``A-Z``,
    ``a-z``, ``0-9``, ``_`` and ``-`` (what Glue and Athena both accept).

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a {what} name "
            "(1-255 characters of A-Z, a-z, 0-9, '_', '-')"
        )
    return name
