"""Write the intersphinx inventories that docs/conf.py vendors.

The docs build offline (CI has no internet), so intersphinx cannot download the
``objects.inv`` of Python, requests, boto3 and attrs. These are subsets of them: the
names our signatures and pages refer to, each with its page on the project's site.
Add a name here when a new one shows up as an unresolved reference (``sphinx-build
-n``), then run ``python docs/_intersphinx/make.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).parent

# project: (base URL, {page: [(name, role), ...]}); a name's anchor is the name.
PROJECTS: dict[str, tuple[str, dict[str, list[tuple[str, str]]]]] = {
    "python": (
        "https://docs.python.org/3/",
        {
            "library/collections.abc.html": [
                ("collections.abc.Collection", "class"),
                ("collections.abc.Iterable", "class"),
                ("collections.abc.Iterator", "class"),
                ("collections.abc.Mapping", "class"),
                ("collections.abc.Sequence", "class"),
            ],
            "library/concurrent.futures.html": [
                ("concurrent.futures.Future", "class"),
                ("concurrent.futures.ThreadPoolExecutor", "class"),
            ],
            "library/contextlib.html": [
                ("contextlib.AbstractContextManager", "class"),
            ],
            "library/datetime.html": [
                ("datetime.datetime", "class"),
                ("datetime.timedelta", "class"),
            ],
            "library/logging.html": [("logging.Logger", "class")],
            "library/os.html": [
                ("os.PathLike", "class"),
                ("os.replace", "function"),
            ],
            "library/pathlib.html": [("pathlib.Path", "class")],
            "library/time.html": [
                ("time.sleep", "function"),
                ("time.time", "function"),
            ],
        },
    ),
    "requests": (
        "https://requests.readthedocs.io/en/latest/",
        {
            "api/": [("requests.Session", "class")],
            "dev/internals/": [("requests.structures.CaseInsensitiveDict", "class")],
        },
    ),
    "boto3": (
        "https://boto3.amazonaws.com/v1/documentation/api/latest/",
        {"reference/core/session.html": [("boto3.session.Session", "class")]},
    ),
    "attrs": (
        "https://www.attrs.org/en/stable/",
        {
            "api.html": [
                ("attrs.Factory", "class"),
                ("attrs.define", "function"),
                ("attrs.evolve", "function"),
                ("attrs.frozen", "function"),
            ],
        },
    ),
}

# Names our signatures spell by another path than the docs that define them.
ALIASES = {
    "concurrent.futures._base.Future": "concurrent.futures.Future",
    "requests.sessions.Session": "requests.Session",
    "boto3.Session": "boto3.session.Session",
}


def inventory(project: str) -> bytes:
    """The ``objects.inv`` (Sphinx inventory version 2) of one project."""
    _, pages = PROJECTS[project]
    entries = {
        name: (role, f"{page}#{name}")
        for page, names in pages.items()
        for name, role in names
    }
    entries.update(
        (alias, entries[name]) for alias, name in ALIASES.items() if name in entries
    )
    lines = [
        f"{name} py:{role} 1 {uri} -" for name, (role, uri) in sorted(entries.items())
    ]
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(line + "\n" for line in lines)
    return header.encode() + zlib.compress(body.encode(), 9)


def main() -> None:
    for project in PROJECTS:
        (HERE / f"{project}.inv").write_bytes(inventory(project))


if __name__ == "__main__":
    main()
