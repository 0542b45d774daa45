"""The docs site builds as CI builds it (``sphinx-build -n -W``), and its pages read
as pages: Markdown rendered, not shown raw; code that scrolls rather than being cut
off, and CLI synopses narrow enough not to need it."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

import pytest

DOCS = Path(__file__).parents[2] / "docs"

SYNOPSIS_WIDTH = 80
"""Columns of a CLI synopsis (``docs/_ext/clidoc.py``): a terminal's, and within the
~94 monospace characters furo's 46em content column shows at its code font size."""

_RAW_MARKDOWN = [
    re.compile(r"(^|\n)\s*#{1,6} \S"),  # a heading
    re.compile(r"```"),  # a fence
    re.compile(r"\[[^\]\n]+\]\((https?://|[\w./-]+\.(md|rst|html))[^)\s]*\)"),  # a link
]


class _Page(HTMLParser):
    """A built page's main content: its text outside code, its code blocks (each
    with the classes of its ``highlight-LANGUAGE`` wrapper) and its headings."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.blocks: list[tuple[str, str]] = []
        self.headings: list[str] = []
        self._pre = self._code = 0
        self._language = ""
        self._heading: Optional[list[str]] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        classes = dict(attrs).get("class") or ""
        if tag == "div" and "highlight-" in classes:
            self._language = classes
        elif tag == "pre":
            self._pre += 1
            self.blocks.append((self._language, ""))
        elif tag in ("code", "script", "style"):
            self._code += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre -= 1
        elif tag in ("code", "script", "style"):
            self._code -= 1
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading).strip("¶ \n"))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)
        if self._pre:
            language, text = self.blocks[-1]
            self.blocks[-1] = (language, text + data)
        elif not self._code:
            self.text.append(data)


def _page(path: Path) -> _Page:
    html = path.read_text(encoding="utf-8")
    main = re.search(r'<article role="main".*?</article>', html, re.DOTALL)
    assert main, path.name
    page = _Page()
    page.feed(main.group())
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs, built once as CI builds them: nitpicky, warnings are errors."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-n", "-W", "-q", "-b", "html", DOCS, out],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(
        path
        for path in site.glob("*.html")
        if path.stem not in ("genindex", "search", "py-modindex")
    )


def test_every_source_page_is_built(site):
    sources = {p.stem for p in DOCS.glob("*.rst")} | {p.stem for p in DOCS.glob("*.md")}
    assert sources <= {p.stem for p in _pages(site)}


def test_no_page_shows_raw_markdown(site):
    for path in _pages(site):
        page = _page(path)
        text = "".join(page.text)
        for pattern in _RAW_MARKDOWN:
            match = pattern.search(text)
            assert match is None, f"{path.name}: {match and match.group()!r}"
        languages = [language for language, _ in page.blocks]
        assert not [c for c in languages if "highlight-markdown" in c], path.name


def test_the_changelog_is_rendered(site):
    changelog = (DOCS.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    expected = [
        line.lstrip("#").strip()
        for line in changelog.splitlines()
        if re.match(r"#{1,6} ", line)
    ]
    assert _page(site / "changelog.html").headings == expected


def test_code_scrolls_instead_of_being_cut_off(site):
    css = (site / "_static" / "styles" / "furo.css").read_text(encoding="utf-8")
    assert re.search(r"(^|[},])pre\{[^}]*overflow:auto", css)
    assert not re.search(r"(^|[},])pre\{[^}]*overflow:hidden", css)


def test_cli_synopses_fit_without_scrolling(site):
    blocks = [text for _, text in _page(site / "cli.html").blocks]
    synopses = [text for text in blocks if text.startswith("usage: aep-extract")]
    assert len(synopses) >= 10  # the top level and every command
    for text in synopses:
        wide = [line for line in text.splitlines() if len(line) > SYNOPSIS_WIDTH]
        assert not wide, wide


def test_cli_page_lists_every_option_and_variable(site):
    text = (site / "cli.html").read_text(encoding="utf-8")
    for name in ("--metrics", "--log-format", "AEP_MAX_RPS", "AEP_MAX_IN_FLIGHT"):
        assert name in text


def test_api_reference_shows_factory_defaults(site):
    page = _page(site / "api.html")
    text = "".join(page.text)
    assert "NOTHING" not in text
    assert "retry: RetryConfig = RetryConfig()" in text


def test_vendored_inventories_are_what_make_py_writes():
    make = runpy.run_path(str(DOCS / "_intersphinx" / "make.py"))
    for project in make["PROJECTS"]:
        vendored = (DOCS / "_intersphinx" / f"{project}.inv").read_bytes()
        written: bytes = make["inventory"](project)
        # Compare the text: zlib builds may compress it to other bytes.
        header, _, body = vendored.partition(b"zlib.\n")
        header_written, _, body_written = written.partition(b"zlib.\n")
        assert header == header_written
        assert zlib.decompress(body) == zlib.decompress(body_written)
