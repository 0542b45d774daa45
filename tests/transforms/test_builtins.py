"""The built-in Parquet transforms on XDM-shaped files, read back with pyarrow and
json: the values they keep, the rows they drop, the bytes they write."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aep_extract import MemorySink, TransformError
from aep_extract.testing.xdm_parquet import XDM_SCHEMA, xdm_parquet, xdm_rows
from aep_extract.transforms import open_transform, run_transform

from .conftest import KEY, chunks, context, json_rows, parquet_table, run

ROWS = xdm_rows(100, seed=7)
EVAR2 = "_experience.analytics.customDimensions.eVars.eVar2"
SESSION = "_experience.analytics.session.num"


def dig(row, *path):
    for name in path:
        if row is None:
            return None
        row = row[name]
    return row


def ids(rows):
    return [row["_id"] for row in rows]


def test_project_keeps_the_selected_leaves_in_their_structs(xdm):
    output, data = run(
        "project:columns=identityMap,_experience.analytics.customDimensions.eVars.eVar1,"
        "productListItems.SKU,_id",
        xdm,
    )
    assert output.key == KEY
    table = parquet_table(data)
    assert table.schema.names == [
        "_id",
        "identityMap",
        "_experience",
        "productListItems",
    ]
    assert table.schema.field("_experience").type == pa.struct(
        [
            (
                "analytics",
                pa.struct(
                    [
                        (
                            "customDimensions",
                            pa.struct([("eVars", pa.struct([("eVar1", pa.string())]))]),
                        )
                    ]
                ),
            )
        ]
    )
    assert (
        table.schema.field("identityMap").type == XDM_SCHEMA.field("identityMap").type
    )
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 4
    for got, source in zip(table.to_pylist(), ROWS):
        assert got["_id"] == source["_id"]
        assert got["identityMap"] == source["identityMap"]
        evar1 = dig(
            source, "_experience", "analytics", "customDimensions", "eVars", "eVar1"
        )
        if source["_experience"] is None:
            assert got["_experience"] is None
        else:
            expected = {"analytics": {"customDimensions": {"eVars": {"eVar1": evar1}}}}
            assert got["_experience"] == expected
        assert got["productListItems"] == [
            {"SKU": item["SKU"]} for item in source["productListItems"]
        ]
    assert len(table) == len(ROWS)


def test_project_keeps_a_field_whole_when_it_and_a_leaf_of_it_are_named(xdm):
    _, data = run("project:columns=_acme.loyaltyTier,_acme", xdm)
    assert parquet_table(data).column("_acme").to_pylist() == [
        row["_acme"] for row in ROWS
    ]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("_id,nope", r"the file has no field 'nope' \(fields: _id, timestamp,"),
        (
            "web.webPageDetails.title",
            r"web.webPageDetails has no field 'title' \(fields: name, URL\)",
        ),
        (
            "identityMap.ECID",
            "identityMap is map<string, .*: it has no fields to select",
        ),
        ("_id.x", "_id is string: it has no fields to select"),
    ],
)
def test_project_of_a_field_the_file_lacks_fails_the_file(xdm, columns, message):
    sink = MemorySink()
    with pytest.raises(TransformError, match=message):
        run(f"project:columns={columns}", xdm, sink)
    assert list(sink.list_keys()) == []


def where(keep):
    return [row["_id"] for row in ROWS if keep(row)]


@pytest.mark.parametrize(
    ("expression", "keep"),
    [
        (
            "eventType = 'commerce.purchases' and commerce.order.priceTotal > 100",
            lambda r: (
                r["eventType"] == "commerce.purchases"
                and r["commerce"]["order"]["priceTotal"] > 100
            ),
        ),
        # A null compares to nothing: neither = nor != keeps it.
        (
            "eventType != 'commerce.purchases'",
            lambda r: r["eventType"] not in (None, "commerce.purchases"),
        ),
        (
            "not eventType = 'commerce.purchases'",
            lambda r: r["eventType"] not in (None, "commerce.purchases"),
        ),
        ("eventType is null", lambda r: r["eventType"] is None),
        ("_experience is not null", lambda r: r["_experience"] is not None),
        (
            f"{EVAR2} in ('segment-0', 'segment-2')",
            lambda r: dig(r, *EVAR2.split(".")) in ("segment-0", "segment-2"),
        ),
        (
            f"{EVAR2} not in ('segment-0')",
            lambda r: dig(r, *EVAR2.split(".")) not in (None, "segment-0"),
        ),
        (
            "timestamp >= timestamp '2024-06-10T02:10:00+02:00'"
            " and timestamp < timestamp '2024-06-10T00:20:00Z'",
            lambda r: (
                datetime(2024, 6, 10, 0, 10, tzinfo=timezone.utc)
                <= r["timestamp"]
                < datetime(2024, 6, 10, 0, 20, tzinfo=timezone.utc)
            ),
        ),
        # 'and' binds tighter than 'or'...
        (
            f"eventType = 'web.formFilledOut' or {SESSION} > 30"
            " and _acme.loyaltyTier = 'gold'",
            lambda r: (
                r["eventType"] == "web.formFilledOut"
                or (
                    (dig(r, *SESSION.split(".")) or 0) > 30
                    and r["_acme"]["loyaltyTier"] == "gold"
                )
            ),
        ),
        # ...unless parentheses say otherwise.
        (
            f"(eventType = 'web.formFilledOut' or {SESSION} > 30)"
            " and _acme.loyaltyTier = 'gold'",
            lambda r: (
                (
                    r["eventType"] == "web.formFilledOut"
                    or (dig(r, *SESSION.split(".")) or 0) > 30
                )
                and r["_acme"]["loyaltyTier"] == "gold"
            ),
        ),
    ],
)
def test_filter_keeps_the_rows_the_expression_holds_for(xdm, expression, keep):
    expected = where(keep)
    assert 0 < len(expected) < len(ROWS)
    _, data = run(f"filter:expr={expression}", xdm)
    table = parquet_table(data)
    assert table.column("_id").to_pylist() == expected
    assert table.schema.remove_metadata() == XDM_SCHEMA


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            "filter:expr=_experience.analytics.session.num = 'many'",
            "no kernel matching input types",
        ),
        ("filter:expr=web.title = 'x'", "web has no field 'title'"),
        (
            "filter:expr=productListItems.SKU = 'x'",
            "productListItems is list<.*not a struct",
        ),
        (
            ["project:columns=_id", "filter:expr=eventType is null"],
            "the file has no field 'eventType' \\(fields: _id\\)",
        ),
    ],
)
def test_filter_on_a_field_or_type_the_file_lacks_fails_the_file(xdm, specs, message):
    sink = MemorySink()
    with pytest.raises(TransformError, match=message):
        run(specs, xdm, sink)
    assert list(sink.list_keys()) == []


def test_jsonl_writes_each_row_as_one_json_object(xdm):
    output, data = run("jsonl", xdm)
    assert output.key == KEY.replace(".parquet", ".jsonl.gz")
    assert data[4:8] == b"\0\0\0\0"  # no time in the gzip header
    rows = json_rows(data)
    assert len(rows) == len(ROWS)
    for got, source in zip(rows, ROWS):
        assert list(got) == XDM_SCHEMA.names
        assert got["timestamp"] == source["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert (
            got["_acme"]["signature"]
            == base64.b64encode(source["_acme"]["signature"]).decode()
        )
        last = source["_acme"]["lastPurchase"]
        assert got["_acme"]["lastPurchase"] == (
            last and last.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        )
        assert got["identityMap"] == (
            source["identityMap"] and dict(source["identityMap"])
        )
        for name in (
            "_id",
            "eventType",
            "_experience",
            "web",
            "commerce",
            "productListItems",
        ):
            assert got[name] == source[name]


def test_jsonl_formats_every_timestamp_unit_and_odd_value():
    table = pa.table(
        {
            "ns": pa.array(
                [1_718_000_000_123_456_789, None], pa.timestamp("ns", "UTC")
            ),
            "s": pa.array([0, -1], pa.timestamp("s")),
            "ms": pa.array([1, 2], pa.timestamp("ms", "America/New_York")),
            "f": pa.array([float("nan"), float("-inf")]),
            "d": pa.array([datetime(2024, 1, 2).date(), None]),
            "m": pa.array([[(1, "x")], []], pa.map_(pa.int32(), pa.string())),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        coerce_timestamps=None,
        use_deprecated_int96_timestamps=False,
        version="2.6",
    )
    _, data = run("jsonl", buffer.getvalue())
    assert json_rows(data) == [
        {
            "ns": "2024-06-10T06:13:20.123456789Z",
            "s": "1970-01-01T00:00:00.000",  # Parquet stores seconds as ms
            "ms": "1970-01-01T00:00:00.001Z",
            "f": "NaN",
            "d": "2024-01-02",
            "m": {"1": "x"},
        },
        {
            "ns": None,
            "s": "1969-12-31T23:59:59.000",
            "ms": "1970-01-01T00:00:00.002Z",
            "f": "-Infinity",
            "d": None,
            "m": {},
        },
    ]


@pytest.mark.parametrize(
    ("compression", "codec"),
    [
        ("zstd", "ZSTD"),
        ("snappy", "SNAPPY"),
        ("gzip", "GZIP"),
        ("none", "UNCOMPRESSED"),
    ],
)
def test_parquet_rewrites_the_same_rows_with_another_compression(
    xdm, compression, codec
):
    _, data = run(f"parquet:compression={compression}", xdm)
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.num_row_groups == 4
    assert {
        parquet.metadata.row_group(0).column(i).compression
        for i in range(parquet.metadata.num_columns)
    } == {codec}
    assert parquet.read().to_pylist() == ROWS
    assert parquet.schema_arrow == XDM_SCHEMA


def test_steps_fuse_into_one_pass(xdm):
    _, data = run(
        [
            "filter:expr=eventType = 'commerce.purchases'",
            "project:columns=_id,commerce.order.priceTotal",
            "jsonl",
        ],
        xdm,
    )
    assert json_rows(data) == [
        {
            "_id": row["_id"],
            "commerce": {
                "order": {"priceTotal": row["commerce"]["order"]["priceTotal"]}
            },
        }
        for row in ROWS
        if row["eventType"] == "commerce.purchases"
    ]


def test_a_filter_that_keeps_nothing_writes_an_empty_file_of_the_schema(xdm):
    _, data = run(["project:columns=_id", "filter:expr=_id = 'none'"], xdm)
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert (parquet.num_row_groups, parquet.schema_arrow.names) == (0, ["_id"])
    _, data = run(["filter:expr=_id = 'none'", "jsonl"], xdm)
    assert json_rows(data) == []


SPECS = [
    "project:columns=_id,_experience.analytics.customDimensions.eVars.eVar1",
    "filter:expr=eventType is not null",
    "jsonl",
    "parquet:compression=zstd",
    "parquet:compression=snappy",
    "parquet:compression=gzip",
    "parquet:compression=none",
]


@pytest.mark.parametrize("spec", SPECS)
def test_every_builtin_writes_the_same_bytes_on_a_rerun(spec):
    first = run(spec, xdm_parquet(rows=100, row_group_rows=25, seed=7))
    second = run(spec, xdm_parquet(rows=100, row_group_rows=25, seed=7), MemorySink())
    assert first == second


@pytest.mark.parametrize("spec", SPECS)
def test_a_file_that_is_not_parquet_fails_with_a_transform_error(spec):
    sink = MemorySink()
    with pytest.raises(
        TransformError, match=r"part-00000.parquet \(.*\): .*Parquet magic bytes"
    ):
        run(spec, b"PAR1 but not really a parquet file", sink)
    assert list(sink.list_keys()) == []


def test_a_short_download_fails_before_any_output(xdm):
    sink = MemorySink()
    from aep_extract import IncompleteDownload

    with pytest.raises(
        IncompleteDownload, match=f"got {len(xdm) - 10} of {len(xdm)} bytes"
    ):
        run_transform(open_transform("jsonl"), chunks(xdm[:-10]), context(xdm), sink)
    assert list(sink.list_keys()) == []


def test_the_spool_file_leaves_nothing_behind(xdm, tmp_path):
    sink = MemorySink()
    spooled = context(xdm).__class__(
        unit=context(xdm).unit, file=context(xdm).file, key=KEY, spool_dir=str(tmp_path)
    )
    (output,) = run_transform(open_transform("jsonl"), chunks(xdm), spooled, sink)
    assert len(json_rows(sink.read_bytes(output.key))) == len(ROWS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("specs", "columns"),
    [
        (
            ["filter:expr=eventType is null", "project:columns=_id,web.webPageDetails"],
            ["_id", "eventType", "web"],
        ),
        (["project:columns=_id", "filter:expr=_id = 'x'", "jsonl"], ["_id"]),
        (["jsonl"], XDM_SCHEMA.names),
    ],
)
def test_files_are_read_a_row_group_at_a_time_and_only_the_columns_needed(
    xdm, monkeypatch, specs, columns
):
    reads = []
    read_row_group = pq.ParquetFile.read_row_group

    def spy(self, index, columns=None, **options):
        reads.append((index, columns))
        return read_row_group(self, index, columns=columns, **options)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    run(specs, xdm)
    assert reads == [(index, columns) for index in range(4)]
