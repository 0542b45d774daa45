"""The ``aep-extract`` command line, in-process and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aep_extract import LocalSink, SQLiteCheckpointStore
from aep_extract.cli import main

from .helpers import DATASET, END, START, expected_tree, run_args, sink_tree

NAIVE = "2024-06-10T00:00:00"
"""A time without a UTC offset."""


def cli_args(paths, *extra: str) -> list[str]:
    return run_args(paths["sink"], paths["store"], *extra)


def listing(root: Path) -> list[str]:
    """Every file and directory under ``root``, relative, sorted."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def rejected(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command that must be refused with exit 2; its one-line stderr."""
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    return err


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
def test_bad_input_exits_2_with_one_line(
    fake_aep_env, paths, tmp_path, capsys, change, message
):
    args = cli_args(paths, "--workers", "2")
    for flag, value in change.items():
        args[args.index(flag) + 1] = value
    assert message in rejected(args, capsys)
    assert listing(tmp_path) == [], "a rejected run leaves nothing behind"


DB, TYPO = "sqlite:///state.db", "sqlite:///typo/state.db"
WINDOW = ["--dataset", DATASET, "--start", START, "--end", END]


def status_args(store: str, *extra: str) -> list[str]:
    return ["status", "--dataset", DATASET, "--store", store, *extra]


def verify_args(store: str, sink: str, *extra: str) -> list[str]:
    return ["verify", *WINDOW, "--sink", sink, "--store", store, *extra]


# A repeated option overrides the one before (argparse keeps the last).
REJECTED = {
    "run, naive start": run_args("out", DB, "--start", NAIVE),
    "run, reversed window": run_args("out", DB, "--start", END, "--end", START),
    "run, no end": ["run", *WINDOW[:4], "--sink", "out", "--store", DB],
    "run, bad sink": run_args("gs://bucket/x", DB),
    "run, bad bucket": run_args("s3://Bad_Bucket/x", DB),
    "run, bad store": run_args("out", "sqlite://state.db"),
    "run, empty dataset": run_args("out", DB, "--dataset", " "),
    "run, --create-table on SQLite": run_args("out", DB, "--create-table"),
    "run, unknown dataset": run_args("out", DB, "--dataset", "no-such-dataset"),
    "plan, naive end": ["plan", *WINDOW, "--end", NAIVE, "--store", DB],
    "status, missing file": status_args(TYPO),
    "status, start only": status_args(DB, "--start", START),
    "verify, missing file": verify_args(TYPO, "out", "--no-catalog"),
    "verify, reversed window": verify_args(DB, "out", "--start", END, "--end", START),
    "reset, naive time": ["reset", *WINDOW, "--end", NAIVE, "--store", DB, "--yes"],
    "retry-failed, bad store": ["retry-failed", *WINDOW[:2], "--store", "sqlite:s.db"],
    "failed, export without store": ["failed", *WINDOW, "--export-to", "out"],
    "cleanup, bad sink": ["cleanup", "--sink", "file://remote-host/out"],
}


@pytest.mark.parametrize("argv", REJECTED.values(), ids=REJECTED)
def test_a_rejected_command_leaves_nothing_behind(
    fake_aep_env, tmp_path, monkeypatch, capsys, argv
):
    monkeypatch.chdir(tmp_path)
    rejected(argv, capsys)
    assert listing(tmp_path) == []


def test_every_argument_error_is_reported_at_once(
    fake_aep_env, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = [
        "run", "--dataset", "", "--start", NAIVE, "--end", "tomorrow",
        "--sink", "gs://bucket/x", "--store", "postgres://db", "--create-table",
    ]  # fmt: skip
    err = rejected(argv, capsys)
    assert err.startswith("aep-extract: error: 6 errors in the arguments: (1) ")
    for message in (
        "(1) --dataset is empty",
        "(2) --start: timestamp '2024-06-10T00:00:00' has no UTC offset",
        "(3) --end: not an ISO 8601 timestamp: 'tomorrow'",
        "(4) --store: unsupported store URL 'postgres://db'",
        "(5) --sink: unsupported sink URL 'gs://bucket/x'",
        "(6) --create-table needs a dynamodb:// --store",
    ):
        assert message in err
    assert listing(tmp_path) == []


def test_argument_errors_come_before_missing_credentials(tmp_path, monkeypatch, capsys):
    for name in ("AEP_CLIENT_ID", "AEP_CLIENT_SECRET", "AEP_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    err = rejected(run_args("out", "sqlite:///state.db", "--end", NAIVE), capsys)
    assert "--end: timestamp '2024-06-10T00:00:00' has no UTC offset" in err
    assert "AEP_CLIENT_ID" not in err
    err = rejected(run_args("out", "sqlite:///state.db"), capsys)
    assert "missing environment variable(s): AEP_CLIENT_ID" in err
    assert listing(tmp_path) == []


def test_status_of_a_mistyped_store_path_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = rejected(status_args("sqlite:///typo/state.db"), capsys)
    assert err == (
        f"aep-extract: error: no state database at {tmp_path}/typo/state.db; "
        "check --store"
    )
    assert listing(tmp_path) == []


def test_status_and_verify_open_the_store_read_only(paths, capsys):
    SQLiteCheckpointStore(paths["db"]).close()
    before = paths["db"].read_bytes()
    assert main(status_args(paths["store"])) == 1  # no units recorded
    code = main([*verify_args(paths["store"], paths["sink"]), "--no-catalog"])
    assert code == 0
    assert paths["db"].read_bytes() == before
    assert not paths["out"].exists()
    err = rejected([*status_args(paths["store"]), "--create-table"], capsys)
    assert "unrecognized arguments: --create-table" in err


def test_wrong_secret_exits_2_without_the_secret(
    fake_aep_env, paths, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("AEP_CLIENT_SECRET", "s3cr3t-wrong")
    assert main(cli_args(paths)) == 2
    err = capsys.readouterr().err
    assert "s3cr3t-wrong" not in err
    assert "invalid_client" in err
    assert listing(tmp_path) == [], "refused before the store was opened"


def test_missing_credentials_exit_2(paths, tmp_path, capsys, monkeypatch):
    for name in ("AEP_CLIENT_ID", "AEP_CLIENT_SECRET", "AEP_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    assert main(cli_args(paths)) == 2
    assert "AEP_CLIENT_ID" in capsys.readouterr().err
    assert listing(tmp_path) == []


def test_usage_error_exits_2(capsys):
    assert main(["run", "--dataset", DATASET]) == 2
    assert "required" in capsys.readouterr().err


def test_status_of_unknown_dataset_exits_1(paths, capsys):
    SQLiteCheckpointStore(paths["db"]).close()
    assert main(["status", "--dataset", "typo", "--store", paths["store"]]) == 1
    assert "no units recorded for dataset typo" in capsys.readouterr().err


def test_demo_twice_as_a_subprocess(tmp_path):
    command = [
        sys.executable,
        "-m",
        "aep_extract",
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
    assert "holds an earlier demo" in second.stdout
    assert "nothing left to copy: earlier runs copied every file" in second.stdout
    assert "verified 34 of 34" in second.stdout
