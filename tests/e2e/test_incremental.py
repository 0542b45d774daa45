"""Daily runs with ``--since-last`` and batches that change status between runs,
on the embedded backends (SQLite store, local directory) through the CLI."""

from __future__ import annotations

import json

from aep_extract import LocalSink, SQLiteCheckpointStore
from aep_extract.cli import main

from ..incremental_scenario import check_three_days, three_days
from .helpers import DATASET, expected_tree, run_args, sink_tree, unit_statuses


def test_three_daily_runs_copy_each_batch_once(tmp_path, monkeypatch, capsys):
    outcome = three_days(
        str(tmp_path / "out"), f"sqlite:///{tmp_path / 'state.db'}", monkeypatch, capsys
    )
    check_three_days(outcome, sink_tree(LocalSink(tmp_path / "out")))


def test_a_batch_loading_at_the_first_run_is_copied_by_the_second(
    fake_aep, fake_aep_env, tmp_path, capsys
):
    (loading,) = [b for b in fake_aep.batches_of(DATASET) if b.status == "loading"]
    args = run_args(str(tmp_path / "out"), f"sqlite:///{tmp_path / 'state.db'}")
    assert main([*args, "--json"]) == 0
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    assert unit_statuses(store)[loading.batch_id] == "Waiting"
    waiting = store.get(loading.batch_id)
    assert waiting is not None
    assert waiting.error == "AEP status 'loading'"
    before = sink_tree(LocalSink(tmp_path / "out"))
    assert not any(loading.batch_id in key for key in before)

    fake_aep.set_batch_status(loading.batch_id, "success")
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["filesCopied"] == loading.file_count
    assert unit_statuses(store)[loading.batch_id] == "Completed"
    assert sink_tree(LocalSink(tmp_path / "out")) == expected_tree(fake_aep)


def test_since_last_without_a_start_or_with_nothing_new_is_a_usage_error(
    fake_aep_env, tmp_path, capsys
):
    store = f"sqlite:///{tmp_path / 'state.db'}"
    base = ["run", "--dataset", DATASET, "--since-last", "--sink", str(tmp_path)]
    assert main([*base, "--store", store]) == 2
    assert "no planned window yet" in capsys.readouterr().err
    assert main(["run", "--dataset", DATASET, "--sink", "x", "--store", store]) == 2
    assert "give --start and --end, or --since-last" in capsys.readouterr().err
    plan = ["plan", "--dataset", DATASET, "--store", store, "--json"]
    assert main([*plan, "--start", "2024-06-10T00:00:00Z", "--end",
                 "2024-06-12T00:00:00Z"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*plan, "--since-last", "--end", "2024-06-11T00:00:00Z"]) == 2
    assert "nothing new to plan" in capsys.readouterr().err
    assert main([*plan, "--since-last", "--end", "2024-06-14T00:00:00Z"]) == 0
    result = capsys.readouterr().out
    assert '"start": "2024-06-12T00:00:00+00:00"' in result
