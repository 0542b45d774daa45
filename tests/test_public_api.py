"""The public surface DESIGN.md promises: names, lazy AWS imports, typing marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_importing_the_package_does_not_import_boto3():
    code = "import sys, aep_extract; print('boto3' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


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
