"""The ``aep-extract`` command line, in-process and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aep_extract import LocalSink
from aep_extract.cli import main

from .helpers import DATASET, END, START, expected_tree, run_args, sink_tree


def cli_args(paths, *extra: str) -> list[str]:
    return run_args(paths["sink"], paths["store"], *extra)


def test_run_then_status(fake_aep, fake_aep_env, paths, capsys):
    assert main(cli_args(paths, "--workers", "3")) == 0
    out = capsys.readouterr().out
    assert "copied 34 files" in out
    assert sink_tree(LocalSink(paths["out"])) == expected_tree(fake_aep)

    status = ["status", "--dataset", DATASET, "--store", paths["store"]]
    assert main([*status, "--units"]) == 0
    table = capsys.readouterr().out
    assert "9 Completed" in table
    # The summary line, the Completed row of the counts, and one row a unit.
    assert table.count("Completed") == 11

    assert (
        main(["status", "--dataset", DATASET, "--store", paths["store"], "--json"]) == 0
    )
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["Completed"] == 9


def test_rerun_with_file_url_sink_copies_nothing(fake_aep_env, paths, capsys):
    assert main(cli_args(paths)) == 0
    capsys.readouterr()
    paths["sink"] = f"file://{paths['out']}"
    assert main(cli_args(paths, "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["filesCopied"] == 0


def test_plan_registers_pending_units(fake_aep_env, paths, capsys):
    assert (
        main(
            [
                "plan",
                "--dataset",
                DATASET,
                "--start",
                START,
                "--end",
                END,
                "--store",
                paths["store"],
            ]
        )
        == 0
    )
    assert "9 units (9 new)" in capsys.readouterr().out
    assert main(["status", "--dataset", DATASET, "--store", paths["store"]]) == 1
    assert "9 Pending" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--start": "2024-06-10T00:00:00"}, "no UTC offset"),
        ({"--start": END, "--end": START}, "is not before"),
        ({"--start": "yesterday"}, "not an ISO 8601 timestamp"),
        ({"--dataset": "unknown-dataset"}, "unknown-dataset"),
        ({"--store": "postgres://x"}, "postgres"),
        ({"--workers": "0"}, "is not at least 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(fake_aep_env, paths, capsys, change, message):
    args = cli_args(paths, "--workers", "2")
    for flag, value in change.items():
        args[args.index(flag) + 1] = value
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not paths["out"].exists() or not any(paths["out"].rglob("*.parquet"))


def test_wrong_secret_exits_2_without_the_secret(
    fake_aep_env, paths, capsys, monkeypatch
):
    monkeypatch.setenv("AEP_CLIENT_SECRET", "s3cr3t-wrong")
    assert main(cli_args(paths)) == 2
    err = capsys.readouterr().err
    assert "s3cr3t-wrong" not in err
    assert "invalid_client" in err


def test_missing_credentials_exit_2(paths, capsys, monkeypatch):
    for name in ("AEP_CLIENT_ID", "AEP_CLIENT_SECRET", "AEP_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    assert main(cli_args(paths)) == 2
    assert "AEP_CLIENT_ID" in capsys.readouterr().err


def test_usage_error_exits_2(capsys):
    assert main(["run", "--dataset", DATASET]) == 2
    assert "required" in capsys.readouterr().err


def test_status_of_unknown_dataset_exits_1(paths, capsys):
    assert main(["status", "--dataset", "typo", "--store", paths["store"]]) == 1
    assert "no units recorded for dataset typo" in capsys.readouterr().err


def test_demo_twice_as_a_subprocess(tmp_path):
    command = [
        sys.executable,
        "-m",
        "aep_extract.cli",
        "demo",
        "--dir",
        str(tmp_path / "demo"),
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "copied 34 files" in first.stdout
    assert "verified 34 of 34 files byte-identical" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "copied 0 files" in second.stdout
    assert "verified 34 of 34" in second.stdout
