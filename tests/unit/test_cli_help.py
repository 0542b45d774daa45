"""What ``aep-extract`` tells a user who asks: help, usage, version, entry points;
and what a bare ``import aep_extract`` loads."""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys

import pytest

from aep_extract import __version__
from aep_extract.cli import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = (
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    return dict(commands.choices)


def test_a_bare_command_prints_usage_and_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: aep-extract")
    for command in ("run", "plan", "status", "verify", "demo", "aws"):
        assert f"\n    {command} " in err


def test_version_names_the_package_and_python(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"aep-extract {__version__} (Python {platform.python_version()})"


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "aep_extract", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"aep-extract {__version__} ")


def test_every_option_has_help_and_a_short_metavar():
    parsers = {"aep-extract": build_parser(), **_subparsers()}
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if action.help == argparse.SUPPRESS:  # a hidden alias
                continue
            assert action.help, f"{name} {action.option_strings}: no help"
            takes_value = action.nargs != 0 and action.option_strings
            if takes_value and action.choices is None:
                assert action.metavar, f"{name} {action.option_strings}: no metavar"
                assert len(str(action.metavar)) <= 16


def test_run_help_has_examples_exit_codes_and_environment(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = capsys.readouterr().out
    assert "examples:\n  # one window" in out
    assert "exit codes:\n  0 " in out
    for variable in ("AEP_CLIENT_ID", "AEP_SANDBOX", "AEP_MAX_RPS", "AEP_IMS_URL"):
        assert variable in out
    # the placeholders are short words, not argparse's dest names
    assert "MAX_REQUESTS_PER_SECOND" not in out
    assert "--max-rps N" in out


def test_commands_that_never_call_aep_list_no_aep_variables(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    assert "AEP_CLIENT_ID" not in out


def test_import_loads_neither_requests_nor_tenacity_nor_boto3():
    code = (
        "import sys, aep_extract, aep_extract.cli; "
        "print(sorted(m for m in ('requests', 'urllib3', 'tenacity', 'boto3', "
        "'importlib.metadata') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_lazy_names_still_resolve():
    import aep_extract
    import aep_extract.sources

    assert aep_extract.HttpAepSource is aep_extract.sources.HttpAepSource
    assert aep_extract.HttpAepSource.__name__ == "HttpAepSource"
    with pytest.raises(AttributeError):
        aep_extract.sources.NoSuchThing  # noqa: B018
