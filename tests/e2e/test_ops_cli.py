"""``verify``, ``cleanup``, ``reset`` and ``failed`` over the fake platform with a
local sink and a SQLite store."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from aep_extract import LocalSink
from aep_extract.cli import main
from aep_extract.testing import FakeAepPlatform, FakeBatch, FakeFile

from ..ops_scenarios import check_fail_then_retry, fail_then_retry
from .helpers import DATASET, END, START, expected_tree, sink_tree


def window(*extra: str) -> list[str]:
    return ["--dataset", DATASET, "--start", START, "--end", END, *extra]


def verify(paths, capsys, *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(
        [
            "verify",
            *window("--sink", paths["sink"], "--store", paths["store"], "--json"),
            *extra,
        ]
    )
    return code, json.loads(capsys.readouterr().out)


def findings(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["kind"], f["key"]) for f in report["findings"]}


@pytest.fixture
def copied(fake_aep, fake_aep_env, paths, capsys):
    """A finished run of the demo window."""
    args = ["run", *window("--sink", paths["sink"], "--store", paths["store"])]
    assert main(args) == 0
    capsys.readouterr()
    return expected_tree(fake_aep)


def test_verify_passes_on_a_clean_run(copied, paths, capsys):
    code, report = verify(paths, capsys)
    assert code == 0, report["findings"]
    assert report["ok"] is True
    assert report["findings"] == []
    assert (report["batches"], report["manifests"]) == (9, 9)
    assert report["objects"] == len(copied) == 34
    assert report["bytesRead"] == sum(map(len, copied.values()))
    assert report["strayChecked"]
    assert report["catalogChecked"]

    assert (
        main(["verify", *window("--sink", paths["sink"], "--store", paths["store"])])
        == 0
    )
    assert "OK: sink, store and Catalog agree" in capsys.readouterr().out


def test_verify_catches_deleted_corrupted_and_stray_objects(copied, paths, capsys):
    deleted, corrupted, truncated = sorted(k for k in copied if copied[k])[:3]
    (paths["out"] / deleted).unlink()
    data = copied[corrupted]
    (paths["out"] / corrupted).write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    (paths["out"] / truncated).write_bytes(copied[truncated][:-1])
    stray = f"{DATASET}/date=2024-06-11/stray.bin"
    (paths["out"] / stray).write_bytes(b"nobody wrote me")

    code, report = verify(paths, capsys)
    assert code == 1
    assert report["ok"] is False
    assert findings(report) == {
        ("missing-object", deleted),
        ("checksum-mismatch", corrupted),
        ("size-mismatch", truncated),
        ("stray-object", stray),
    }
    assert all(f["unit"] for f in report["findings"] if f["kind"] != "stray-object")

    # Sizes only: the same-size corruption goes unnoticed, the rest does not.
    code, report = verify(paths, capsys, "--no-checksums")
    assert code == 1
    assert report["bytesRead"] == 0
    assert {kind for kind, _ in findings(report)} == {
        "missing-object",
        "size-mismatch",
        "stray-object",
    }

    capsys.readouterr()
    assert (
        main(["verify", *window("--sink", paths["sink"], "--store", paths["store"])])
        == 1
    )
    text = capsys.readouterr().out
    assert "4 discrepancy(ies):" in text
    assert f"stray-object: {stray}" in text


def test_verify_catches_store_and_manifest_disagreeing(copied, paths, capsys):
    sink = LocalSink(paths["out"])
    manifest = sorted(k for k in sink.list_keys() if "_manifest" in k)[0]
    named = [f["key"] for f in json.loads(sink.read_bytes(manifest))["files"]]
    (paths["out"] / manifest).unlink()
    code, report = verify(paths, capsys)
    assert code == 1
    assert findings(report) == {("completed-without-manifest", manifest)} | {
        ("stray-object", key) for key in named
    }

    reset = ["reset", "--dataset", DATASET, "--store", paths["store"], "--yes"]
    assert main(reset) == 0
    code, report = verify(paths, capsys)
    assert code == 1
    kinds = [f["kind"] for f in report["findings"]]
    assert kinds.count("missing-manifest") == 1  # no unit, no manifest
    assert kinds.count("manifest-without-completed-unit") == 8
    assert kinds.count("stray-object") == len(named)


def test_verify_without_the_catalog_needs_no_credentials(
    copied, paths, capsys, monkeypatch
):
    monkeypatch.delenv("AEP_CLIENT_SECRET")
    code, report = verify(paths, capsys, "--no-catalog")
    assert code == 0
    assert report["catalogChecked"] is False
    assert report["objects"] == 34
    capsys.readouterr()
    args = ["verify", *window("--sink", paths["sink"], "--store", paths["store"])]
    assert main(args) == 2
    assert "AEP_CLIENT_SECRET" in capsys.readouterr().err


def test_verify_of_an_unknown_dataset_is_a_usage_error(fake_aep_env, paths, capsys):
    args = ["verify", *window("--sink", paths["sink"], "--store", paths["store"])]
    args[args.index(DATASET)] = "no-such-dataset"
    assert main(args) == 2
    assert "no-such-dataset" in capsys.readouterr().err


def test_cleanup_removes_only_old_temporary_files(paths, capsys):
    sink = LocalSink(paths["out"])
    sink.write_bytes("ds/date=2024-06-10/batch=b/f/kept.parquet", b"data")
    directory = paths["out"] / "ds/date=2024-06-10/batch=b/f"
    old = directory / ".a.parquet.0123456789abcdef.part"
    fresh = directory / ".b.parquet.fedcba9876543210.part"
    elsewhere = paths["out"] / "other/.c.parquet.00.part"
    for path in (old, fresh, elsewhere):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    hour_ago = time.time() - 3600
    for path in (old, elsewhere):
        os.utime(path, (hour_ago, hour_ago))

    args = ["cleanup", "--sink", paths["sink"], "--older-than", "600"]
    assert main([*args, "--prefix", "ds/", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert not old.exists()
    assert fresh.exists()
    assert elsewhere.exists()
    assert main(args) == 0
    assert "removed 1 incomplete write(s)" in capsys.readouterr().out
    assert not elsewhere.exists()
    assert fresh.exists()
    assert sink.read_bytes("ds/date=2024-06-10/batch=b/f/kept.parquet") == b"data"
    assert main(["cleanup", "--sink", paths["sink"], "--older-than", "-1"]) == 2


def test_reset_then_run_copies_only_what_is_missing(copied, paths, capsys):
    missing = sorted(copied)[0]
    (paths["out"] / missing).unlink()
    reset = ["reset", "--dataset", DATASET, "--store", paths["store"]]
    # A window holding some batches forgets only their units.
    assert (
        main(
            [
                *reset,
                "--start",
                START,
                "--end",
                "2024-06-11T00:00:00Z",
                "--yes",
                "--json",
            ]
        )
        == 0
    )
    some = json.loads(capsys.readouterr().out)["forgotten"]
    assert 0 < some < 10  # 9 Completed units and 1 Waiting (the loading batch)
    assert main([*reset, "--yes"]) == 0
    assert f"forgot {10 - some} unit(s)" in capsys.readouterr().out
    assert main(["status", "--dataset", DATASET, "--store", paths["store"]]) == 1
    capsys.readouterr()

    run = ["run", *window("--sink", paths["sink"], "--store", paths["store"], "--json")]
    assert main(run) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["filesCopied"], report["filesSkipped"]) == (1, 33)
    assert report["units"]["Completed"] == 9
    assert sink_tree(LocalSink(paths["out"])) == copied


def test_reset_refuses_without_a_terminal_or_yes(copied, paths, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["reset", "--dataset", DATASET, "--store", paths["store"]]) == 2
    err = capsys.readouterr().err
    assert "--yes" in err
    assert len(err.strip().splitlines()) == 1
    assert (
        main(
            ["reset", "--dataset", DATASET, "--store", paths["store"], "--start", START]
        )
        == 2
    )
    assert "both --start and --end" in capsys.readouterr().err
    assert main(["status", "--dataset", DATASET, "--store", paths["store"]]) == 0


def test_reset_asks_for_the_dataset_id(copied, paths, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    prompts = []
    answers = iter(["wrong", DATASET])

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("builtins.input", answer)
    reset = ["reset", "--dataset", DATASET, "--store", paths["store"]]
    assert main(reset) == 2
    assert "did not match" in capsys.readouterr().err
    assert main(reset) == 0
    assert "forgot 10 unit(s)" in capsys.readouterr().out
    assert prompts == ["Type the dataset id to confirm: "] * 2


def failed_batch(platform: FakeAepPlatform):
    (batch,) = [b for b in platform.batches_of(DATASET) if b.status == "failed"]
    return batch


def test_failed_lists_batches_with_their_errors(fake_aep, fake_aep_env, capsys):
    batch = failed_batch(fake_aep)
    assert main(["failed", *window()]) == 0
    text = capsys.readouterr().out
    assert "1 failed batch(es)" in text
    assert batch.batch_id in text
    assert "INGEST-1212-400: Encountered 2 errors in the data" in text
    assert main(["failed", *window("--json")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [b["batchId"] for b in data["batches"]] == [batch.batch_id]
    assert data["batches"][0]["errors"][0]["code"] == "INGEST-1212-400"
    assert data["export"] is None
    assert main(["failed", *window("--export-to", "out")]) == 2
    assert "--store" in capsys.readouterr().err


def test_failed_exports_failed_files_once(fake_aep, fake_aep_env, paths, capsys):
    batch = failed_batch(fake_aep)
    assert batch.failed_files
    args = [
        "failed",
        *window("--export-to", paths["sink"], "--store", paths["store"], "--json"),
    ]
    assert main(args) == 0
    export = json.loads(capsys.readouterr().out)["export"]
    assert export["ok"]
    assert export["filesCopied"] == len(batch.failed_files)
    date = time.strftime("%Y-%m-%d", time.gmtime(batch.created_ms / 1000))
    prefix = f"failed/{DATASET}/date={date}/batch={batch.batch_id}/"
    tree = sink_tree(LocalSink(paths["out"]))
    assert tree == {prefix + f.name: f.content for f in batch.failed_files}
    assert (paths["out"] / prefix / "_manifest.json").exists()

    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["export"]["filesCopied"] == 0
    # The export's units live apart from the dataset's data units.
    assert main(["status", "--dataset", DATASET, "--store", paths["store"]]) == 1
    assert "no units recorded" in capsys.readouterr().err
    status = ["status", "--dataset", f"{DATASET}:failed", "--store", paths["store"]]
    assert main(status) == 0

    # A data run beside it: verify of the data ignores the failed prefix.
    run = ["run", *window("--sink", paths["sink"], "--store", paths["store"])]
    assert main(run) == 0
    code, report = verify(paths, capsys)
    assert code == 0, report["findings"]


def test_failed_file_named_like_the_manifest_fails_its_unit(
    fake_aep, fake_aep_env, paths, capsys
):
    """A failed file ``_manifest.json`` would overwrite its batch's manifest: its
    unit fails before anything is exported; the other failed batch is exported."""
    other = failed_batch(fake_aep)
    bad = FakeBatch(
        "bad-names",
        DATASET,
        "failed",
        other.created_ms + 1,
        failed_files=[FakeFile("_manifest.json", b"{}"), FakeFile("rows.json", b"[]")],
    )
    fake_aep.add_batches([bad])
    args = [
        "failed",
        *window("--export-to", paths["sink"], "--store", paths["store"], "--json"),
    ]
    assert main(args) == 1
    export = json.loads(capsys.readouterr().out)["export"]
    date = time.strftime("%Y-%m-%d", time.gmtime(bad.created_ms / 1000))
    key = f"failed/{DATASET}/date={date}/batch=bad-names/_manifest.json"
    assert export["failures"] == [
        {
            "unit": "bad-names",
            "error": "KeyCollisionError: the manifest of unit bad-names and "
            "dataSetFileId 'bad-names' name '_manifest.json' both map to sink key "
            f"{key!r}",
        }
    ]
    tree = sink_tree(LocalSink(paths["out"]))
    assert [k for k in LocalSink(paths["out"]).list_keys() if "bad-names" in k] == []
    prefix = f"failed/{DATASET}/date={date}/batch={other.batch_id}/"
    assert tree == {prefix + f.name: f.content for f in other.failed_files}
    assert (paths["out"] / prefix / "_manifest.json").exists()


@pytest.mark.parametrize("command", ["verify", "cleanup", "reset", "failed"])
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "--json" in capsys.readouterr().out


def test_plan_fail_retry_failed_then_run(fake_aep, fake_aep_env, tmp_path, capsys):
    sink, store = str(tmp_path / "out"), f"sqlite:///{tmp_path / 'retry.db'}"
    steps = fail_then_retry(fake_aep, sink, store, capsys)
    check_fail_then_retry(steps)
    assert sink_tree(LocalSink(sink)) == expected_tree(fake_aep)
