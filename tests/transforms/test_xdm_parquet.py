"""The XDM-shaped test files: deterministic, nested, with nulls and row groups."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from aep_extract.testing.xdm_parquet import XDM_SCHEMA, xdm_parquet


def test_the_same_arguments_give_the_same_bytes():
    assert xdm_parquet(rows=50, seed=3) == xdm_parquet(rows=50, seed=3)
    assert xdm_parquet(rows=50, seed=3) != xdm_parquet(rows=50, seed=4)


def test_a_file_has_the_xdm_shape_row_groups_and_nulls_at_every_level():
    parquet = pq.ParquetFile(io.BytesIO(xdm_parquet(rows=100, row_group_rows=30)))
    assert parquet.num_row_groups == 4
    assert parquet.schema_arrow.remove_metadata() == XDM_SCHEMA
    table = parquet.read()
    for column in ("identityMap", "_experience", "commerce", "eventType"):
        assert 0 < table.column(column).null_count < len(table)
    evars = [
        row["_experience"]["analytics"]["customDimensions"]["eVars"]
        for row in table.to_pylist()
        if row["_experience"] is not None
    ]
    assert {evar["eVar2"] is None for evar in evars} == {True, False}
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
