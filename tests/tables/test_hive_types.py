"""Arrow types as Hive types, and Glue column dicts taken as they are."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aep_extract.errors import CatalogError
from aep_extract.tables import hive_type, table_columns


def test_xdm_shapes_map_to_nested_hive_types():
    schema = pa.schema(
        [
            ("_id", pa.string()),
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("local_time", pa.timestamp("ms")),
            ("day", pa.date32()),
            ("amount", pa.decimal128(18, 4)),
            ("payload", pa.binary()),
            ("digest", pa.binary(32)),
            ("counts", pa.list_(pa.int64())),
            ("ratio", pa.float32()),
            ("flags", pa.dictionary(pa.int8(), pa.string())),
            ("small", pa.uint32()),
            (
                "identityMap",
                pa.map_(
                    pa.string(),
                    pa.list_(pa.struct([("id", pa.string()), ("primary", pa.bool_())])),
                ),
            ),
            (
                "_experience",
                pa.struct(
                    [
                        (
                            "analytics",
                            pa.struct(
                                [
                                    ("session", pa.int32()),
                                    ("tags", pa.large_list(pa.large_string())),
                                ]
                            ),
                        )
                    ]
                ),
            ),
        ]
    )
    assert table_columns(schema) == [
        {"Name": "_id", "Type": "string"},
        {"Name": "timestamp", "Type": "timestamp"},
        {"Name": "local_time", "Type": "timestamp"},
        {"Name": "day", "Type": "date"},
        {"Name": "amount", "Type": "decimal(18,4)"},
        {"Name": "payload", "Type": "binary"},
        {"Name": "digest", "Type": "binary"},
        {"Name": "counts", "Type": "array<bigint>"},
        {"Name": "ratio", "Type": "float"},
        {"Name": "flags", "Type": "string"},
        {"Name": "small", "Type": "bigint"},
        {
            "Name": "identityMap",
            "Type": "map<string,array<struct<id:string,primary:boolean>>>",
        },
        {
            "Name": "_experience",
            "Type": "struct<analytics:struct<session:int,tags:array<string>>>",
        },
    ]


def test_glue_column_dicts_pass_through_without_pyarrow():
    given = [
        {"Name": "_id", "Type": "string", "Comment": "XDM id"},
        {"Name": "web", "Type": " struct<url:string> "},
    ]
    assert table_columns(iter(given)) == [
        {"Name": "_id", "Type": "string", "Comment": "XDM id"},
        {"Name": "web", "Type": "struct<url:string>"},
    ]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (pa.schema([("t", pa.time64("us"))]), "has no Hive type"),
        (pa.schema([("d", pa.duration("s"))]), "has no Hive type"),
        (pa.schema([("n", pa.decimal256(50, 2))]), "at most 38 digits"),
        (pa.schema([("s", pa.struct([("a b", pa.int8())]))]), "'s.a b'"),
        (pa.schema([("Date", pa.string())]), "partition key"),
        (pa.schema([("Id", pa.string()), ("id", pa.int8())]), "only in case"),
        ([{"Name": "x"}], "'Type'"),
        ([{"Name": "x,y", "Type": "int"}], "cannot be spelled"),
        ([], "at least one column"),
    ],
)
def test_what_hive_cannot_hold_is_refused(schema, message):
    with pytest.raises(CatalogError, match=message):
        table_columns(schema)


def test_an_error_names_the_nested_field():
    kind = pa.struct([("inner", pa.list_(pa.time32("s")))])
    with pytest.raises(CatalogError, match=r"field outer\.inner\[\]"):
        hive_type(kind, path="outer")
