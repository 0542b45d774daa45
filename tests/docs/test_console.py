"""The console sessions the docs show are what the commands print.

Each ``$ aep-extract ...`` line of a console block (``.. code-block:: console`` in
docs/quickstart.rst and docs/cli.rst, a fenced block in README.md) shown with its
output is run in one directory, in the page's order, with the ``AEP_*`` variables of
the fake platform (which serves the demo's dataset); its output must equal the block's
lines once ports, timings and timestamps are masked. A page that drifts from the code
fails here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from aep_extract.cli import main
from aep_extract.testing import FakeAepPlatform

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.rst"
CLI = ROOT / "docs" / "cli.rst"
README = ROOT / "README.md"

_VOLATILE = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"in \d+\.\d+s \(\d+\.\d+ MB/s\)"), "in Ts (R MB/s)"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "YYYY-MM-DDTHH:MM:SSZ"),
    (
        re.compile(r'"(durationSeconds|throughputBytesPerSecond)": [\d.]+'),
        r'"\1": N',
    ),
]


def _mask(text: str) -> list[str]:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def console_sessions(page: Path) -> list[tuple[list[str], list[str]]]:
    """Each ``$ aep-extract`` command of the page's console blocks with the output
    lines shown under it (another program's command gets an empty argv)."""
    sessions: list[tuple[list[str], list[str]]] = []
    indent = None  # the block's indent while in a console block
    command = ""  # a command continued on the next line (ends with a backslash)
    other_fence = False  # in a Markdown fence of another language
    for line in page.read_text(encoding="utf-8").splitlines():
        if other_fence:
            other_fence = line != "```"
            continue
        if indent is None:
            if line.startswith(".. code-block:: console"):
                indent = "   "
            elif line in ("```", "```console"):
                indent = ""
            else:
                other_fence = line.startswith("```")
            continue
        if (line == "```") if indent == "" else (line and line[:1] != " "):
            indent = None
            continue
        if not line.startswith(indent) or not line.strip():
            continue
        text = line[len(indent) :]
        if command or text.startswith("$ "):
            command += text.strip().rstrip("\\") + " "
            if text.endswith("\\"):
                continue
            words = shlex.split(command, comments=True)[1:]
            ours = words[:1] == ["aep-extract"]
            sessions.append((words[1:] if ours else [], []))
            command = ""
        elif sessions:
            sessions[-1][1].append(text)
    return sessions


def _shown(page: Path) -> list[str]:
    """The commands of the page shown with their output."""
    return [
        argv[0] if argv[0] != "-q" else argv[1]
        for argv, shown in console_sessions(page)
        if argv and shown
    ]


def test_the_pages_show_sessions():
    assert _shown(QUICKSTART) == ["demo", "status"]
    assert _shown(README) == ["status", "verify"]
    assert _shown(CLI) == ["run", "run", "plan", "plan", "status", "failed"]


@pytest.fixture(scope="module")
def platform():
    with FakeAepPlatform.generate() as platform:
        yield platform


@pytest.mark.parametrize("page", [QUICKSTART, CLI, README], ids=lambda page: page.name)
def test_the_output_shown_is_what_the_commands_print(
    page, platform, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    for name, value in platform.env().items():
        monkeypatch.setenv(name, value)
    if page == README:  # the README shows what follows the demo
        assert main(["-q", "demo"]) == 0
        capsys.readouterr()
    for argv, shown in console_sessions(page):
        if not (argv and shown):
            continue
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, captured.err
        printed = _mask(captured.out + captured.err)
        assert printed == _mask("\n".join(shown)), " ".join(argv)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("at http://127.0.0.1:38853; x", ["at http://127.0.0.1:PORT; x"]),
        ("in 0.3s (23.5 MB/s);", ["in Ts (R MB/s);"]),
        ("since 2026-12-03T08:54:28Z", ["since YYYY-MM-DDTHH:MM:SSZ"]),
        ('"durationSeconds": 0.232,', ['"durationSeconds": N,']),
    ],
)
def test_masking_hides_only_what_changes_between_runs(text, masked):
    assert _mask(text) == masked
