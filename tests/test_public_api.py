"""The public surface DESIGN.md promises: names, lazy AWS imports, typing marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import aep_extract

DESIGN_NAMES = (
    "Extractor",
    "AepSource",
    "CheckpointStore",
    "Sink",
    "Scheduler",
    "DynamoDBCheckpointStore",
    "SQLiteCheckpointStore",
    "S3Sink",
    "ThreadPoolScheduler",
    "TimeWindow",
)


def test_all_names_resolve_and_are_sorted():
    assert list(aep_extract.__all__) == sorted(aep_extract.__all__)
    for name in aep_extract.__all__:
        assert getattr(aep_extract, name) is not None, name
    assert set(DESIGN_NAMES) <= set(aep_extract.__all__)


def test_import_config_and_help_import_no_http_or_aws_library():
    # A notebook that builds a config, and --help, pay for neither.
    code = """
import contextlib, io, sys
HEAVY = ("requests", "urllib3", "boto3", "botocore", "tenacity", "tqdm")
def heavy():
    print(*[name for name in HEAVY if name in sys.modules], sep=",")
import aep_extract
heavy()
from aep_extract import ExtractorConfig
heavy()
from aep_extract.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert main(["--help"]) == 0
assert "usage: aep-extract" in out.getvalue()
heavy()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["", "", ""]


def test_names_come_from_their_modules():
    from aep_extract import checkpoints, errors, sinks, sources

    assert aep_extract.ConfigError is errors.ConfigError
    assert aep_extract.open_store is checkpoints.open_store
    assert aep_extract.LocalSink is sinks.LocalSink
    assert aep_extract.AepSource is sources.AepSource
    assert set(aep_extract.__all__) <= set(dir(aep_extract))
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        aep_extract.Nothing  # noqa: B018 (the lookup is the test)


def test_errors_share_one_base():
    from aep_extract import errors

    classes = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == errors.__name__
    ]
    assert len(classes) > 10
    assert all(issubclass(cls, aep_extract.AepExtractError) for cls in classes)


def test_package_is_typed():
    assert (Path(aep_extract.__file__).parent / "py.typed").is_file()
