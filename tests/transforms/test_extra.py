"""The parquet extra is optional: the core never imports pyarrow, and a missing
pyarrow is a ConfigError that names the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aep_extract.transforms import open_transform

BLOCK_PYARROW = "import sys; sys.modules['pyarrow'] = None\n"  # import pyarrow fails


def python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_importing_the_package_and_the_interface_does_not_import_pyarrow():
    code = (
        "import sys, aep_extract, aep_extract.transforms\n"
        "from aep_extract.transforms import parse_spec\n"
        "parse_spec('jsonl')\n"
        "print('pyarrow' in sys.modules)"
    )
    assert python(code) == "False"


@pytest.mark.parametrize(
    "spec", ["project:columns=a", "filter:expr=a = 1", "jsonl", "parquet"]
)
def test_a_builtin_without_pyarrow_is_a_config_error_naming_the_extra(spec):
    code = BLOCK_PYARROW + (
        "from aep_extract import ConfigError\n"
        "from aep_extract.transforms import open_transform\n"
        "try:\n"
        f"    open_transform({spec!r})\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    name = spec.partition(":")[0]
    out = python(code)
    assert out.startswith(f"transform {name} backend aep_extract.transforms.")
    assert "cannot be imported: " in out
    assert out.endswith("; pip install 'aep-extract[parquet]'")


def test_with_pyarrow_every_builtin_opens():
    for spec in ("project:columns=a", "filter:expr=a = 1", "jsonl", "parquet"):
        assert open_transform(spec).spec.startswith(spec.partition(":")[0])
