"""The console sessions the quickstart shows are what the commands print.

Each ``$ aep-extract ...`` line of a ``console`` block in docs/quickstart.rst that
runs offline (the demo, then ``status`` of its state) is run in one directory, in that
order; its output must equal the block's lines once ports, timings and timestamps are
masked. A page that drifts from the code fails here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from aep_extract.cli import main

QUICKSTART = Path(__file__).parents[1] / "docs" / "quickstart.rst"
OFFLINE = ("demo", "status")
"""Commands that need no credentials: the only ones the quickstart may show output of
that this test cannot check are those against real AEP (they show none)."""

_VOLATILE = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"in \d+\.\d+s \(\d+\.\d+ MB/s\)"), "in Ts (R MB/s)"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "YYYY-MM-DDTHH:MM:SSZ"),
]


def _mask(text: str) -> list[str]:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def console_sessions(page: Path) -> list[tuple[list[str], list[str]]]:
    """Each ``$ aep-extract`` command of the page's console blocks with the output
    lines shown under it."""
    sessions: list[tuple[list[str], list[str]]] = []
    in_block = False
    command = ""  # a command continued on the next line (ends with a backslash)
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith(".. code-block:: console"):
            in_block = True
            continue
        if in_block and line and not line.startswith(" "):
            in_block = False
        if not in_block or not line.startswith("   "):
            continue
        text = line[3:]
        if command or text.startswith("$ "):
            command += text.strip().rstrip("\\") + " "
            if text.endswith("\\"):
                continue
            words = shlex.split(command, comments=True)[1:]
            ours = words[:1] == ["aep-extract"]
            sessions.append((words[1:] if ours else [], []))  # others: not our output
            command = ""
        elif sessions:
            sessions[-1][1].append(text)
    return sessions


def _offline(argv: list[str]) -> bool:
    return any(word in OFFLINE for word in argv if not word.startswith("-"))


def test_the_quickstart_shows_offline_sessions():
    shown = [argv for argv, out in console_sessions(QUICKSTART) if out]
    assert [argv for argv in shown if _offline(argv)] == [
        ["-q", "demo"],
        [
            "status",
            "--dataset",
            "5e8f81cf7a4ecb28a8d85b22",
            "--store",
            "sqlite:///aep-extract-demo/state.db",
        ],
    ]


def test_the_quickstart_output_is_what_the_commands_print(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    for argv, shown in console_sessions(QUICKSTART):
        if not (argv and shown and _offline(argv)):
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
    ],
)
def test_masking_hides_only_what_changes_between_runs(text, masked):
    assert _mask(text) == masked
