"""Sphinx configuration of the aep_extract documentation.

Build with ``sphinx-build -n -W -b html docs docs/_build/html`` (nitpicky, warnings
are errors) and ``sphinx-build -b doctest docs docs/_build/doctest``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import attrs
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

import aep_extract
from aep_extract import registry

if TYPE_CHECKING:
    from docutils import nodes
    from sphinx.application import Sphinx

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "aep_extract"
author = "aep_extract developers"
copyright = "aep_extract developers"
version = aep_extract.__version__
release = aep_extract.__version__

# The docs build offline: nothing here downloads anything (see intersphinx below).
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_copybutton",
    "clidoc",  # docs/_ext: the CLI reference, read from the argument parser
]

exclude_patterns = ["_build"]
root_doc = "index"
language = "en"

html_theme = "furo"
html_title = f"aep_extract {release}"
html_static_path = ["_static"]
html_css_files = ["aep.css"]

# Copy the commands of a block, not the prompts ("$ ", ">>> ") or the output shown.
copybutton_prompt_text = r"\$ |>>> |\.\.\. "
copybutton_prompt_is_regexp = True
copybutton_line_continuation_character = "\\"

# -- intersphinx --------------------------------------------------------------------
# Links to the Python, requests, boto3 and attrs docs. The build runs offline (CI has
# no internet), so each inventory is a vendored subset, docs/_intersphinx/PROJECT.inv:
# only the names our pages and signatures use, with their real URLs, written by
# docs/_intersphinx/make.py. A new name that does not resolve fails the nitpicky
# build; add it there.

intersphinx_mapping = {
    name: (base, f"_intersphinx/{name}.inv")
    for name, base in (
        ("python", "https://docs.python.org/3/"),
        ("requests", "https://requests.readthedocs.io/en/latest/"),
        ("boto3", "https://boto3.amazonaws.com/v1/documentation/api/latest/"),
        ("attrs", "https://www.attrs.org/en/stable/"),
    )
}

# -- autodoc and napoleon ---------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = False
napoleon_attr_annotations = True

# -- nitpicky ----------------------------------------------------------------------
# Every cross-reference must resolve, through intersphinx for other projects' names.
# The exceptions: types of packages whose docs have no inventory (stubs, pyarrow,
# azure) and names typing leaves unresolvable.

nitpicky = True
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
    """Show defaults as the code spells them.

    An attrs class's ``__init__`` has ``NOTHING`` for a field with a factory: show
    what the factory makes, ``[]`` or ``RetryConfig()``. ``time.sleep``'s repr,
    ``<built-in function sleep>``, is not Python: Sphinx would fail to parse the whole
    signature and print it raw. (``autodoc_preserve_defaults`` would fix this but
    shows attrs defaults as ``attr_dict['name'].default``.)
    """
    if not signature:
        return signature, return_annotation
    signature = signature.replace("<built-in function sleep>", "time.sleep")
    if what == "class" and attrs.has(obj):  # type: ignore[arg-type]
        for field in attrs.fields(obj):
            if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                shown = _made_by(field.default.factory)
                signature = re.sub(
                    rf"((?<![\w.]){field.alias}: [^=]*?= )NOTHING\b",
                    rf"\g<1>{shown}",
                    signature,
                )
    return signature, return_annotation


def _made_by(factory: Callable[..., object]) -> str:
    """How a default made by ``factory`` reads: ``[]``, ``{}``, ``RetryConfig()``,
    ``time.time()``."""
    if factory in (list, dict, tuple):
        return repr(factory())
    if factory.__module__ in ("builtins", "collections") or isinstance(factory, type):
        return f"{factory.__qualname__}()"
    return f"{factory.__module__}.{factory.__qualname__}()"


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
