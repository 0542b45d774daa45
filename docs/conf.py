"""Sphinx configuration of the aep_extract documentation.

Build with ``sphinx-build -n -W -b html docs docs/_build/html`` (nitpicky, warnings
are errors) and ``sphinx-build -b doctest docs docs/_build/doctest``.
"""

from __future__ import annotations

import aep_extract

project = "aep_extract"
author = "aep_extract developers"
copyright = "aep_extract developers"  # noqa: A001 - Sphinx's name for the setting
version = aep_extract.__version__
release = aep_extract.__version__

# Only extensions that ship with Sphinx: the docs build offline.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
root_doc = "index"
language = "en"

html_theme = "alabaster"
html_title = f"aep_extract {release}"

# -- autodoc and napoleon ---------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_attr_annotations = True

# -- nitpicky ----------------------------------------------------------------------
# Every cross-reference must resolve. Without intersphinx (the build runs offline),
# names from the standard library and third-party packages have no target; these are
# the ones the public signatures and docstrings use. Our own names must all resolve.

nitpicky = True
nitpick_ignore = [
    # Standard library types in signatures and docstrings.
    ("py:class", "abc.ABC"),
    ("py:class", "concurrent.futures._base.Future"),
    ("py:class", "concurrent.futures.Future"),
    ("py:class", "contextlib.AbstractContextManager"),
    ("py:class", "datetime.datetime"),
    ("py:class", "datetime.timedelta"),
    ("py:class", "enum.Enum"),
    ("py:class", "os.PathLike"),
    ("py:class", "types.TracebackType"),
    ("py:class", "typing.BinaryIO"),
    ("py:func", "os.replace"),
    ("py:func", "tempfile.mkstemp"),
    ("py:func", "time.time"),
    ("py:class", "concurrent.futures.ThreadPoolExecutor"),
    # Third-party types accepted by constructors.
    ("py:class", "requests.Session"),
    ("py:class", "boto3.Session"),
    ("py:class", "boto3.session.Session"),
    ("py:class", "pytest.MonkeyPatch"),
    ("py:class", "_pytest.monkeypatch.MonkeyPatch"),
]
nitpick_ignore_regex = [
    # Stub-only boto3 client types, imported under TYPE_CHECKING.
    ("py:class", r"(mypy_boto3_\w+\.)?(S3Client|DynamoDBClient)"),
]

# -- doctest -----------------------------------------------------------------------

doctest_global_setup = """
import os
import tempfile
"""
