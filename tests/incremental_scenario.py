"""Daily runs on a Catalog that changes between them, for any store and sink.

Used by the embedded (SQLite + directory) and AWS (DynamoDB + S3 on moto) tests, which
run it through the CLI and check what it returns.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import attrs
import pytest

from aep_extract.checkpoints import open_store
from aep_extract.cli import main
from aep_extract.models import parse_timestamp, to_epoch_ms
from aep_extract.testing import FakeAepPlatform, FakeBatch

from .e2e.helpers import DATASET, expected_tree, unit_statuses

DAYS = [f"2024-07-0{n}T00:00:00Z" for n in (1, 2, 3, 4)]
"""Midnights of three consecutive days."""
CATALOG_PATH = "/data/foundation/catalog/batches"
DOWNLOAD_PATH = "/data/foundation/export/files/"


def at(day: int, hours: float) -> str:
    """ISO text of ``hours`` after midnight of ``DAYS[day]``."""
    moment = parse_timestamp(DAYS[day]) + timedelta(hours=hours)
    return moment.isoformat()


@attrs.frozen
class Outcome:
    """What three daily runs did: the platform and batches, and what was served."""

    platform: FakeAepPlatform
    late: FakeBatch
    replay: FakeBatch
    exits: list[int]
    reports: list[dict]  # type: ignore[type-arg]
    listed_windows: list[tuple[int, int]]
    downloads: Counter[tuple[str, str]]
    batch_reads: list[str]
    statuses: dict[str, str]
    verify_exit: int

    def expected(self) -> dict[str, bytes]:
        """Every file of the exportable batches of the three days but the replay."""
        tree = expected_tree(self.platform, DAYS[0], DAYS[3])
        return {k: v for k, v in tree.items() if self.replay.batch_id not in k}


def three_days(
    sink: str,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> Outcome:
    """Day 1: three batches and a late one still ``loading``. Day 2: three more, and
    the late one succeeds. Day 3: two more, and a consolidation replaying a day-1
    batch already copied. One ``run --since-last`` at the end of each day."""
    platform = FakeAepPlatform({DATASET: {"name": "Daily events"}})
    day1 = FakeAepPlatform.make_batches(DATASET, DAYS[0], at(0, 20), 3, seed=1)
    (late,) = FakeAepPlatform.make_batches(
        DATASET, at(0, 23), DAYS[1], 1, seed=2, status="loading"
    )
    day2 = FakeAepPlatform.make_batches(DATASET, DAYS[1], DAYS[2], 3, seed=3)
    day3 = FakeAepPlatform.make_batches(DATASET, DAYS[2], at(2, 20), 2, seed=4)
    (replay,) = FakeAepPlatform.make_batches(DATASET, at(2, 21), DAYS[3], 1, seed=5)
    args = ["--since-last", "--sink", sink, "--store", store, *extra]
    exits, reports = [], []
    with platform:
        for name, value in platform.env().items():
            monkeypatch.setenv(name, value)

        def daily(end: str) -> None:
            capsys.readouterr()
            exits.append(main(["-q", "run", "--dataset", DATASET, "--json", *args,
                               "--start", DAYS[0], "--end", end]))  # fmt: skip
            reports.append(json.loads(capsys.readouterr().out))

        platform.add_batches([*day1, late])
        daily(DAYS[1])
        platform.add_batches(day2)
        platform.set_batch_status(late.batch_id, "success")
        daily(DAYS[2])
        platform.add_batches(day3)
        platform.replay([day1[0].batch_id], replay, predecessor_status=None)
        daily(DAYS[3])
        requests = platform.requests
        verify = ["verify", "--dataset", DATASET, "--start", DAYS[0], "--end", DAYS[3]]
        verify_exit = main(["-q", *verify, "--sink", sink, "--store", store])
    return Outcome(
        platform=platform,
        late=late,
        replay=replay,
        exits=exits,
        reports=reports,
        listed_windows=sorted(
            {
                (int(r.query["createdAfter"]), int(r.query["createdBefore"]))
                for r in requests
                if r.path == CATALOG_PATH and r.query.get("start") == "0"
            }
        ),
        downloads=Counter(
            (r.path, r.query["path"])
            for r in requests
            if r.path.startswith(DOWNLOAD_PATH) and "path" in r.query
        ),
        batch_reads=[
            r.path.rsplit("/", 1)[1]
            for r in requests
            if r.path.startswith(CATALOG_PATH + "/")
        ],
        statuses=unit_statuses(open_store(store)),
        verify_exit=verify_exit,
    )


def check_three_days(outcome: Outcome, sink_tree: dict[str, bytes]) -> None:
    """Each batch copied once, windows that do not overlap, the replay skipped."""
    assert outcome.exits == [0, 0, 0]
    assert sink_tree == outcome.expected()
    assert set(outcome.downloads.values()) == {1}  # every file fetched once
    assert len(outcome.downloads) == len(outcome.expected())
    day_ms = [to_epoch_ms(parse_timestamp(day)) for day in DAYS]
    # Each day is listed in slices that tile it, and no two days overlap
    # (createdAfter is exclusive: one below a slice's start).
    slices = [(after + 1, before) for after, before in outcome.listed_windows]
    assert slices[0][0] == day_ms[0]
    assert slices[-1][1] == day_ms[3]
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
    assert {day_ms[1], day_ms[2]} <= {start for start, _ in slices}
    # Day 2 asked about the late batch, outside its window, once; day 3 not again.
    assert outcome.batch_reads == [outcome.late.batch_id]
    copied = [r["filesCopied"] for r in outcome.reports]
    per_batch = {b.batch_id: b.file_count for b in outcome.platform.batches_of(DATASET)}
    assert outcome.reports[0]["units"]["Waiting"] == 1
    assert outcome.reports[1]["units"]["Waiting"] == 0
    assert copied == [
        sum(per_batch[b] for b in list(per_batch)[:3]),
        sum(per_batch[b] for b in list(per_batch)[3:7]),
        sum(per_batch[b] for b in list(per_batch)[7:9]),
    ]
    statuses = outcome.statuses
    assert statuses.pop(outcome.replay.batch_id) == "Skipped"
    assert set(statuses.values()) == {"Completed"}
    assert len(statuses) == 9
    assert outcome.verify_exit == 0
