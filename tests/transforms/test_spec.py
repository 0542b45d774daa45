"""Specs (NAME[:key=value;...]) and the ConfigErrors of bad ones."""

from __future__ import annotations

import pytest

from aep_extract import ConfigError
from aep_extract.transforms import TransformSpec, open_transform, parse_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jsonl", TransformSpec("jsonl", {})),
        ("Project:Columns=a,b.c", TransformSpec("project", {"columns": "a,b.c"})),
        (
            "filter:expr=a = 'x;y' and b in (1, 2)",
            TransformSpec("filter", {"expr": "a = 'x;y' and b in (1, 2)"}),
        ),
        (
            'filter:expr=a = "q\\";" ; extra = 1',
            TransformSpec("filter", {"expr": 'a = "q\\";"', "extra": "1"}),
        ),
        (
            "parquet: compression = zstd ",
            TransformSpec("parquet", {"compression": "zstd"}),
        ),
    ],
)
def test_specs_parse(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected NAME"),
        (":columns=a", "expected NAME"),
        ("two words", "expected NAME"),
        ("jsonl:", "an empty option"),
        ("parquet:compression=zstd;", "an empty option"),
        ("project:columns", "'columns' is not key=value"),
        ("project:1x=a", "'1x=a' is not key=value"),
        ("parquet:compression=zstd;compression=gzip", "'compression' given twice"),
        ("filter:expr=a = 'open", "unclosed '"),
    ],
)
def test_malformed_specs_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(text)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            "csv",
            r"unknown transform 'csv'; expected one of: project:columns=PATH,\.\.\., "
            r"filter:expr=EXPRESSION, jsonl, "
            r"parquet:compression=zstd\|snappy\|gzip\|none",
        ),
        ("jsonl:level=3", "transform jsonl: unknown option 'level'; options: none"),
        ("project", r"transform project needs columns= \(comma-separated"),
        ("project:columns=a,,b", "'' is not a dotted field path"),
        ("project:columns=a..b", "'a..b' is not a dotted field path"),
        ("filter:expression=a = 1", "unknown option 'expression'; options: expr"),
        ("filter:expr=a = ", "expected a literal"),
        ("parquet:compression=lz4", "'lz4' is not one of zstd, snappy, gzip, none"),
        (
            ["jsonl", "project:columns=a"],
            "'jsonl' writes the output: it must come last",
        ),
        (["parquet", "jsonl"], "'parquet:compression=zstd' writes the output"),
        ([], "no transform given"),
    ],
)
def test_bad_transforms_are_config_errors_that_say_why(specs, message):
    with pytest.raises(ConfigError, match=message):
        open_transform(specs)


def test_specs_compose_and_their_canonical_text_rebuilds_them():
    transform = open_transform(
        [
            "project:columns=_id, timestamp ,_experience.analytics",
            "filter:expr=NOT a=1 AND b IS NOT NULL",
            "parquet:compression=GZIP",
        ]
    )
    assert transform.spec == (
        "project:columns=_id,timestamp,_experience.analytics"
        " | filter:expr=(not (a = 1)) and (not (b is null))"
        " | parquet:compression=gzip"
    )
    assert transform.suffixes == (".parquet",)
    assert open_transform(transform.spec.split(" | ")) == transform
    assert open_transform(["project:columns=a", "filter:expr=a=1"]).suffixes == (
        ".parquet",
    )
    assert open_transform(["filter:expr=a=1", "jsonl"]).suffixes == (".jsonl.gz",)
