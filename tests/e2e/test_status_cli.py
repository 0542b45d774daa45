"""``aep-extract status`` over the fake platform with a SQLite store and a local sink:
the table and JSON agree with the store, windows, leases, errors, notes, exit codes."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest

from aep_extract import (
    CheckpointStore,
    ConfigError,
    Extractor,
    HttpAepSource,
    LocalSink,
    SQLiteCheckpointStore,
    TimeWindow,
    UnitStatus,
    WorkUnit,
)
from aep_extract._status_format import duration, human_bytes
from aep_extract.cli import main

from .helpers import DATASET, END, START, expected_tree

MIDDLE = "2024-06-11T00:00:00Z"
"""Splits the demo window: some of its batches were created before, some after."""

NOW = 1_750_000_000.0
"""The clock of planted units and of the status read, 2025-06-15T15:06:40Z."""

JSON_KEYS = {
    "datasetId",
    "start",
    "end",
    "asOf",
    "ok",
    "counts",
    "filesDone",
    "bytesDone",
    "byStatus",
    "oldestLease",
    "expiredLeases",
    "lastErrors",
    "unitsWithErrors",
    "waiting",
    "skipped",
    "units",
}


@pytest.fixture
def copied(fake_aep, fake_aep_env, paths, capsys):
    """A finished run of the demo window; the tree it copied."""
    args = [
        "run", "--dataset", DATASET, "--start", START, "--end", END,
        "--sink", paths["sink"], "--store", paths["store"],
    ]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    return expected_tree(fake_aep)


@pytest.fixture
def store(paths):
    with SQLiteCheckpointStore(paths["db"]) as opened:
        yield opened


@pytest.fixture
def fixed_clock(monkeypatch):
    """Stores opened by the command read the time as NOW."""
    monkeypatch.setattr(CheckpointStore, "clock", staticmethod(lambda: NOW))


def status(paths, capsys, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["status", "--dataset", DATASET, "--store", paths["store"], *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def status_json(paths, capsys, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = status(paths, capsys, "--json", *extra)
    return code, json.loads(out)


def line(text: str, prefix: str) -> str:
    (found,) = [row for row in text.splitlines() if row.startswith(prefix)]
    return found


def plant(store: CheckpointStore, batch_id: str, *, created: str = MIDDLE) -> WorkUnit:
    """Register one Pending unit of a made-up batch of the dataset."""
    unit = WorkUnit(
        dataset_id=DATASET,
        batch_id=batch_id,
        batch_created_ms=TimeWindow.parse(created, END).start_ms,
    )
    assert store.register([unit]) == 1
    return unit


def claim(store: CheckpointStore, owner: str, at: float, lease_seconds: float):
    """Claim the one Pending unit of the dataset at time ``at``."""
    store.clock = lambda: at
    lease = store.claim(DATASET, owner, lease_seconds)
    assert lease is not None
    return lease


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_table_and_json_after_a_run_match_the_store(copied, paths, store, capsys):
    units = store.list(DATASET)
    files = sum(cp.files_done for cp in units)
    size = sum(cp.bytes_done for cp in units)
    assert (files, size) == (len(copied), sum(map(len, copied.values())))
    assert (files, size) == (34, 6370388)
    counts = store.summary(DATASET)
    assert counts[UnitStatus.COMPLETED] == 9
    assert {cp.status for cp in units} <= {
        UnitStatus.COMPLETED,
        UnitStatus.WAITING,
        UnitStatus.SKIPPED,
    }

    code, out, err = status(paths, capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"dataset {DATASET} (every batch) as of ")
    assert f": {len(units)} units: 9 Completed" in line(out, "dataset ")
    rows = out.splitlines()
    assert rows[1].split() == ["STATUS", "UNITS", "FILES", "DONE", "BYTES", "DONE"]
    table = {row.split()[0]: row.split()[1:] for row in rows[2:9]}
    assert list(table) == [s.value for s in UnitStatus] + ["total"]
    assert table["Completed"] == ["9", "34", "6.1", "MiB"]
    assert table["InProgress"] == table["Failed"] == ["0", "0", "0", "B"]
    assert table["total"] == [str(len(units)), "34", "6.1", "MiB"]
    for s in UnitStatus:
        assert table[s.value][0] == str(counts[s])
    assert line(out, "oldest lease:") == "oldest lease: none (no unit InProgress)"
    assert line(out, "last errors:") == "last errors: none"
    # No row per unit without --units: no Completed unit is named.
    completed = [cp.unit_id for cp in units if cp.status is UnitStatus.COMPLETED]
    assert not any(unit_id in out for unit_id in completed)
    assert "units:" not in out.splitlines()
    # Units waiting for AEP (the demo's loading batch) show with their note.
    for cp in store.list(DATASET, UnitStatus.WAITING):
        assert re.search(rf"^  {cp.unit_id}\s+{re.escape(cp.error)}\s", out, re.M)

    code, data = status_json(paths, capsys)
    assert code == 0
    assert set(data) == JSON_KEYS
    assert data["datasetId"] == DATASET
    assert (data["start"], data["end"]) == (None, None)
    assert data["ok"] is True
    assert data["counts"] == {s.value: n for s, n in counts.items()}
    assert (data["filesDone"], data["bytesDone"]) == (34, 6370388)
    assert data["byStatus"]["Completed"] == {
        "units": 9,
        "filesDone": 34,
        "bytesDone": 6370388,
    }
    assert data["oldestLease"] is None
    assert data["expiredLeases"] == 0
    assert (data["lastErrors"], data["unitsWithErrors"]) == ([], 0)
    assert [w["unit"] for w in data["waiting"]] == [
        cp.unit_id for cp in store.list(DATASET, UnitStatus.WAITING)
    ]
    assert [u["unit"] for u in data["units"]] == [cp.unit_id for cp in units]
    assert sum(u["bytesDone"] for u in data["units"]) == 6370388


def test_a_window_selects_the_units_of_its_batches(copied, paths, store, capsys):
    window = TimeWindow.parse(START, MIDDLE)
    inside = [
        cp for cp in store.list(DATASET) if window.contains_ms(cp.unit.batch_created_ms)
    ]
    assert 0 < len(inside) < len(store.list(DATASET))

    code, data = status_json(paths, capsys, "--start", START, "--end", MIDDLE)
    assert code == 0
    assert (data["start"], data["end"]) == (
        "2024-06-10T00:00:00+00:00",
        "2024-06-11T00:00:00+00:00",
    )
    assert [u["unit"] for u in data["units"]] == [cp.unit_id for cp in inside]
    expected = Counter(cp.status.value for cp in inside)
    assert {s: n for s, n in data["counts"].items() if n} == dict(expected)
    assert data["filesDone"] == sum(cp.files_done for cp in inside)
    assert data["bytesDone"] == sum(cp.bytes_done for cp in inside)
    assert data["filesDone"] < 34

    code, out, _ = status(paths, capsys, "--start", START, "--end", MIDDLE)
    assert code == 0
    assert f"dataset {DATASET} (batches created in {window}) as of " in line(
        out, "dataset "
    )
    total = line(out, "total").split()
    assert total[:3] == ["total", str(len(inside)), str(data["filesDone"])]
    assert " ".join(total[3:]) == human_bytes(data["bytesDone"])

    # A window with no batch: nothing in scope, exit 1, the JSON still printed.
    later = ("--start", "2030-01-01T00:00:00Z", "--end", "2030-01-02T00:00:00Z")
    code, out, err = status(paths, capsys, *later)
    assert (code, out) == (1, "")
    assert "no units recorded for dataset" in err
    assert "with a batch created in [2030-01-01" in err
    code, data = status_json(paths, capsys, *later)
    assert code == 1
    assert data["units"] == []
    assert data["ok"] is False
    assert set(data["counts"].values()) == {0}


def test_extractor_status_is_what_the_command_shows(
    copied, fake_aep, paths, fixed_clock, capsys
):
    source = HttpAepSource.from_env(fake_aep.env())
    store = SQLiteCheckpointStore(paths["db"])
    sink = LocalSink(paths["out"])
    with source, store, Extractor(source, store=store, sink=sink) as extractor:
        whole = extractor.status(DATASET)
        start = datetime(2024, 6, 10, tzinfo=timezone.utc)
        part = extractor.status(DATASET, start, MIDDLE)
        with pytest.raises(ConfigError, match="both start and end"):
            extractor.status(DATASET, START)
        with pytest.raises(ConfigError, match="no UTC offset"):
            extractor.status(DATASET, "2024-06-10T00:00:00", END)
    assert whole.window is None
    assert whole.as_of == NOW
    assert whole.ok
    assert (whole.files_done, whole.bytes_done) == (34, 6370388)
    assert part.window == TimeWindow.parse(START, MIDDLE)
    assert 0 < len(part.units) < len(whole.units)

    assert status_json(paths, capsys) == (0, whole.to_dict())
    assert status(paths, capsys) == (0, f"{whole}\n", "")
    window = ("--start", START, "--end", MIDDLE)
    assert status_json(paths, capsys, *window) == (0, part.to_dict())


def test_the_oldest_lease_and_whether_its_worker_is_gone(
    copied, paths, store, fixed_clock, capsys
):
    plant(store, "planted-dead")
    claim(store, "worker-gone", at=NOW - 2000, lease_seconds=300)
    dead = claim(store, "worker-dead", at=NOW - 1000, lease_seconds=300)  # takeover
    plant(store, "planted-live", created="2024-06-12T00:00:00Z")
    claim(store, "worker-live", at=NOW - 10, lease_seconds=610)

    code, data = status_json(paths, capsys)
    assert code == 1
    assert data["ok"] is False
    assert data["counts"]["InProgress"] == 2
    assert data["oldestLease"] == {
        "unit": "planted-dead",
        "owner": "worker-dead",
        "attempts": 0,
        "crashes": 1,
        "leaseExpiresAt": NOW - 700,
        "expired": True,
    }
    assert data["expiredLeases"] == 1
    assert data["asOf"] == NOW

    code, out, _ = status(paths, capsys)
    assert code == 1
    text = out.splitlines()
    at = text.index(line(out, "oldest lease:"))
    assert text[at : at + 2] == [
        "oldest lease: unit planted-dead of worker-dead (attempt 1, 1 crash), "
        f"expired {utc(NOW - 700)} (11m 40s ago); "
        "2 unit(s) InProgress, 1 lease(s) expired",
        "  its worker stopped renewing it (likely dead): "
        "the next run takes the unit over",
    ]
    assert line(out, "InProgress").split() == ["InProgress", "2", "0", "0", "B"]

    # The dead worker's unit is done (say, taken over): the live lease is next.
    store.clock = lambda: NOW
    store.complete(dead)
    code, data = status_json(paths, capsys)
    assert code == 1
    assert data["oldestLease"]["unit"] == "planted-live"
    assert data["oldestLease"]["expired"] is False
    assert data["expiredLeases"] == 0
    code, out, _ = status(paths, capsys)
    assert line(out, "oldest lease:") == (
        "oldest lease: unit planted-live of worker-live (attempt 1), "
        f"expires {utc(NOW + 600)} (in 10m 0s); "
        "1 unit(s) InProgress, 0 lease(s) expired"
    )
    assert "its worker stopped renewing it" not in out


def test_last_errors_newest_first_and_notes_apart(
    copied, paths, store, fixed_clock, capsys
):
    long_error = "SourceError: HTTP 500 from /files\n" + "x" * 300
    failures = {}  # unit -> (time, status, attempts, error)
    crashes = {"planted-6": 2}  # unit -> lease takeovers before its failure
    for i in range(7):
        batch = f"planted-{i}"
        plant(store, batch)
        at = NOW - 100 + i * 10
        for crash in range(crashes.get(batch, 0)):
            claim(
                store,
                f"worker-{i}-{crash}",
                at=at - 1000 + crash * 300,
                lease_seconds=300,
            )
        lease = claim(store, f"worker-{i}", at=at, lease_seconds=300)
        error = long_error if i == 5 else f"SinkError: write {i} refused"
        store.fail(lease, error, max_attempts=1)
        failures[batch] = (at, "Failed", 1, error)
    for i in (1, 3, 5):  # back to Pending, attempts reset, the error kept
        at, _, _, error = failures[f"planted-{i}"]
        store.clock = lambda at=at: at
        assert store.retry_failed(DATASET, [f"planted-{i}"]) == 1
        failures[f"planted-{i}"] = (at, "Pending", 0, error)
    # Notes are newer than every error and still not errors.
    store.clock = lambda: NOW
    waiting = plant(store, "planted-waiting")
    store.settle(store.get(waiting.batch_id), UnitStatus.WAITING, "AEP status 'staged'")
    store.register(
        [WorkUnit(dataset_id=DATASET, batch_id="planted-skip", batch_created_ms=0)],
        status=UnitStatus.SKIPPED,
        reason="superseded by batch planted-6",
    )

    code, data = status_json(paths, capsys)
    assert code == 1
    newest = sorted(failures, key=lambda b: -failures[b][0])[:5]
    assert [e["unit"] for e in data["lastErrors"]] == newest
    for entry in data["lastErrors"]:
        at, state, attempts, error = failures[entry["unit"]]
        assert entry == {
            "unit": entry["unit"],
            "status": state,
            "attempts": attempts,
            "crashes": crashes.get(entry["unit"], 0) if state == "Failed" else 0,
            "updatedAt": at,
            "error": error,
        }
    assert data["unitsWithErrors"] == 7
    assert (data["counts"]["Failed"], data["counts"]["Pending"]) == (4, 3)
    waiting_units = store.list(DATASET, UnitStatus.WAITING)
    assert len(data["waiting"]) == data["counts"]["Waiting"] == len(waiting_units)
    assert {
        "unit": "planted-waiting",
        "batchId": "planted-waiting",
        "note": "AEP status 'staged'",
        "createdAt": NOW,
        "updatedAt": NOW,
    } in data["waiting"]
    assert data["skipped"] == [
        {
            "unit": "planted-skip",
            "batchId": "planted-skip",
            "reason": "superseded by batch planted-6",
            "createdAt": NOW,
            "updatedAt": NOW,
        }
    ]

    code, out, _ = status(paths, capsys)
    assert code == 1
    text = out.splitlines()
    at = text.index("last errors (5 of 7 unit(s) with an error, newest first):")
    assert text[at + 1].split() == [
        *("UPDATED", "UNIT", "STATUS", "ATTEMPTS", "CRASHES", "ERROR"),
    ]
    rows = [row.split(None, 5) for row in text[at + 2 : at + 7]]
    assert [row[1] for row in rows] == newest
    assert rows[0] == [
        utc(NOW - 40),
        "planted-6",
        "Failed",
        "1",
        "2",
        failures["planted-6"][3],
    ]
    assert rows[1][:5] == [utc(NOW - 50), "planted-5", "Pending", "0", "0"]
    flat = "SourceError: HTTP 500 from /files " + "x" * 300  # one line, cut to 100
    assert rows[1][5] == flat[:97] + "..."
    assert len(text) == at + 7  # nothing after the errors without --units
    assert re.search(
        rf"^waiting for AEP .*\({len(waiting_units)}; every plan checks again\):$",
        out,
        re.M,
    )
    assert re.search(
        rf"^  planted-waiting\s+AEP status 'staged'\s+{utc(NOW)}\s+{utc(NOW)}$",
        out,
        re.M,
    )
    assert re.search(r"^skipped, not to be copied \(1\):$", out, re.M)
    assert re.search(r"^  planted-skip\s+superseded by batch planted-6\s", out, re.M)


def test_units_lists_every_unit_only_when_asked(
    copied, paths, store, fixed_clock, capsys
):
    code, out, _ = status(paths, capsys, "--units")
    assert code == 0
    text = out.splitlines()
    at = text.index("units:")
    assert text[at + 1].split() == [
        "UNIT", "STATUS", "LAST", "OFFSET", "FILES", "BYTES", "ATTEMPTS", "CRASHES",
        "NOTE",
    ]  # fmt: skip
    rows = [row.split(None, 7) for row in text[at + 2 :]]
    units = store.list(DATASET)
    assert len(rows) == len(units)
    for row, cp in zip(rows, units):
        assert row[:8] == [
            cp.unit_id,
            cp.status.value,
            str(cp.last_processed_offset),
            str(cp.files_done),
            str(cp.bytes_done),
            str(cp.attempts),
            str(cp.crashes),
        ] + ([cp.error] if cp.error else [])
    # The summary comes first, unchanged.
    _, short, _ = status(paths, capsys)
    assert out.startswith(short.rstrip("\n"))


def test_exit_codes(copied, fake_aep_env, paths, store, capsys):
    # Completed, Waiting and Skipped: settled, nothing failed.
    store.register(
        [WorkUnit(dataset_id=DATASET, batch_id="planted-skip", batch_created_ms=0)],
        status=UnitStatus.SKIPPED,
        reason="replays batches already copied",
    )
    assert status(paths, capsys)[0] == 0
    # A Pending unit is work left.
    plant(store, "planted-pending")
    assert status(paths, capsys)[0] == 1
    # Only the window without it is settled.
    assert status(paths, capsys, "--start", START, "--end", MIDDLE)[0] == 0
    lease = claim(store, "w", at=NOW, lease_seconds=60)
    assert status(paths, capsys)[0] == 1  # InProgress
    store.fail(lease, "boom", max_attempts=1)
    assert status(paths, capsys)[0] == 1  # Failed
    assert store.retry_failed(DATASET) == 1
    store.clock = CheckpointStore.clock
    lease = store.claim(DATASET, "w", 60)
    assert lease is not None
    store.complete(lease)
    assert status(paths, capsys)[0] == 0

    # An unknown dataset: nothing recorded, 1.
    capsys.readouterr()
    assert main(["status", "--dataset", "typo", "--store", paths["store"]]) == 1
    assert "no units recorded for dataset typo" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--start", START], "give both --start and --end, or neither"),
        (["--end", END], "give both --start and --end, or neither"),
        (["--start", "2024-06-10T00:00:00", "--end", END], "no UTC offset"),
        (["--start", END, "--end", START], "is not before"),
        (["--start", "yesterday", "--end", END], "not an ISO 8601 timestamp"),
        (["--unknown"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_one_line(copied, paths, capsys, extra, message):
    code, out, err = status(paths, capsys, *extra)
    assert (code, out) == (2, "")
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_help_documents_the_exit_status(capsys):
    assert main(["status", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--start", "--end", "--units", "--json"):
        assert option in out
    assert (
        "exit codes:\n  0  every unit in scope is Completed, Skipped or Waiting" in out
    )
    assert "  2  usage error" in out


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (6370388, "6.1 MiB"),
        (3 * 1024**3 // 2, "1.5 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (2048 * 1024**5, "2048.0 PiB"),
    ],
)
def test_human_bytes(size, text):
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (700, "11m 40s"),
        (7500, "2h 5m"),
        (2 * 86400 + 3600, "2d 1h"),
    ],
)
def test_duration(seconds, text):
    assert duration(seconds) == text
