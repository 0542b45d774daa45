"""Tables over the copied files: partitions registered in a data catalog.

:class:`TableCatalog` is the interface (one table, partitioned by ``date``);
:class:`~aep_extract.tables.glue.GlueCatalog` keeps it in the AWS Glue Data Catalog,
so that Athena, Redshift Spectrum or Spark query new data as soon as it lands.
:class:`PartitionHooks` registers each completed unit's ``date=`` partition during a
run, and :meth:`PartitionHooks.repair` the partitions of every Completed unit (a crash
between upload and registration is repaired by the next run).
"""

from __future__ import annotations

from .base import TableCatalog
from .hive_types import Column, SchemaLike, hive_type, table_columns
from .partitions import PartitionHooks, table_location

__all__ = [
    "Column",
    "PartitionHooks",
    "SchemaLike",
    "TableCatalog",
    "hive_type",
    "table_columns",
    "table_location",
]
