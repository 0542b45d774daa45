"""Sphinx configuration of the aep_extract documentation.

Build with ``sphinx-build -n -W -b html docs docs/_build/html`` (nitpicky, warnings
are errors) and ``sphinx-build -b doctest docs docs/_build/doctest``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

import aep_extract
from aep_extract import registry

if TYPE_CHECKING:
    from docutils import nodes
    from sphinx.application import Sphinx

project = "aep_extract"
author = "aep_extract developers"
copyright = "aep_extract developers"
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
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = False
napoleon_attr_annotations = True

# -- nitpicky ----------------------------------------------------------------------
# Every cross-reference must resolve. Without intersphinx (the build runs offline),
# names from the standard library and third-party packages have no target; these are
# the ones the public signatures and docstrings use. Our own names must all resolve.

nitpicky = True
nitpick_ignore = [
    # Standard library types in signatures and docstrings.
    ("py:class", "collections.abc.Collection"),
    ("py:class", "collections.abc.Iterable"),
    ("py:class", "collections.abc.Iterator"),
    ("py:class", "collections.abc.Mapping"),
    ("py:class", "collections.abc.Sequence"),
    ("py:class", "concurrent.futures._base.Future"),
    ("py:class", "concurrent.futures.Future"),
    ("py:class", "concurrent.futures.ThreadPoolExecutor"),
    ("py:class", "contextlib.AbstractContextManager"),
    ("py:class", "datetime.datetime"),
    ("py:class", "datetime.timedelta"),
    ("py:class", "os.PathLike"),
    ("py:class", "pathlib.Path"),
    ("py:func", "os.replace"),
    ("py:func", "time.time"),
    ("py:class", "logging.Logger"),
    # Third-party types in signatures.
    ("py:class", "boto3.Session"),
    ("py:class", "requests.sessions.Session"),
    ("py:class", "requests.structures.CaseInsensitiveDict"),
]
nitpick_ignore_regex = [
    # Stub-only boto3 client types, imported under TYPE_CHECKING.
    (
        "py:class",
        r"(mypy_boto3_\w+\.)?"
        r"(S3Client|DynamoDBClient|CloudWatchClient|GlueClient|SecretsManagerClient|"
        r"CloudFormationClient)",
    ),
    # Names in a signature that also has a stub-only type stay unresolved text.
    ("py:class", "datetime"),
    # azure-storage-blob's client types, and the sink's alias of its credentials.
    ("py:class", r"(azure\.[\w.]+\.)?(BlobServiceClient|ContainerClient)"),
    ("py:class", "AzureCredential"),
    # pyarrow's types in the transforms' signatures.
    ("py:class", r"pyarrow\.[\w.]+"),
    # The TypeVar of Scheduler.submit's signature.
    ("py:class", r"aep_extract\.schedulers\.\w+\.T"),
    # The self-types of the from_url classmethods.
    ("py:class", r"aep_extract\.(registry\._T|checkpoints\.base\._Store)"),
]


def _readable_defaults(
    app: object,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """Show a ``time.sleep`` default by name.

    Its repr, ``<built-in function sleep>``, is not Python: Sphinx would fail to parse
    the whole signature and print it raw. (``autodoc_preserve_defaults`` would fix this
    but shows attrs defaults as ``attr_dict['name'].default``.)
    """
    if signature:
        signature = signature.replace("<built-in function sleep>", "time.sleep")
    return signature, return_annotation


class BackendTable(SphinxDirective):
    """``.. aep-backends:: sink``: the registry's backends of a kind, as a table, so
    that the documented URL forms (transform specs) are the ones the code accepts."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        kind = self.arguments[0]
        form = "Spec" if kind == "transform" else "URL"
        rows = [
            f".. list-table:: {kind.capitalize()} {form}s",
            "   :header-rows: 1",
            "",
        ]
        rows += [f"   * - {form}", "     - Class", "     - What"]
        for backend in registry.backends(kind):  # type: ignore[arg-type]
            cls = backend.load()
            # Documented at the top if exported there eagerly (not the lazy AWS ones).
            public = vars(aep_extract).get(cls.__name__) is cls
            target = f"aep_extract.{cls.__name__}" if public else backend.target_name
            forms = ", ".join(f"``{form}``" for form in backend.forms)
            rows += [f"   * - {forms}", f"     - :class:`~{target}`"]
            rows += [f"     - {backend.summary}"]
        source = self.get_source_info()[0]
        return self.parse_text_to_nodes(StringList(rows, source))


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-signature", _readable_defaults)
    app.add_directive("aep-backends", BackendTable)
