"""Whole extractions over real HTTP while the fake platform injects faults.

Each test runs the real client (small retry waits) against one fault kind and checks
that the run completes with the exact tree, and that the client's counters agree
with the faults the platform says it served.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from aep_extract import (
    Extractor,
    ExtractorConfig,
    HttpAepSource,
    LocalSink,
    RetryConfig,
    RunReport,
    SQLiteCheckpointStore,
    ThreadPoolScheduler,
)
from aep_extract.cli import main
from aep_extract.testing import FakeAepPlatform, FaultPlan, FaultRule

from .helpers import DATASET, END, START, expected_tree, sink_tree

RETRY = RetryConfig(attempts=10, initial_wait=0.01, max_wait=0.2)
CHUNK = 256 * 1024
BIG_CHUNK = 4 * 1024 * 1024
"""Ranges of 4 MiB are read in 1 MiB pieces, so a broken range keeps some progress."""
_PLATFORM = ("catalog", "listing", "download")
"""urllib3 2 raises on a body shorter than its Content-Length; 1.26 hands it over."""

MAX_RPS = 1000.0
"""The client paces itself (AIMD) and halves its rate on every round of 429/503
answers; a high ceiling keeps these runs fast."""


@attrs.frozen
class Run:
    """A finished extraction: its report and the source's counters of the whole run
    (the report's ``requests``, ``retries`` and ``throttled`` leave out planning)."""

    report: RunReport
    counters: Mapping[str, int]


def extract(
    platform: FakeAepPlatform,
    tmp_path: Path,
    *,
    chunk_size: int = CHUNK,
    unit_attempts: int = 3,
    **options: Any,
) -> Run:
    """Extract the demo window with 4 threads into tmp_path."""
    source = HttpAepSource.from_env(
        platform.env(),
        retry=RETRY,
        chunk_size=chunk_size,
        max_requests_per_second=MAX_RPS,
        **options,
    )
    with Extractor(
        source,
        store=SQLiteCheckpointStore(tmp_path / "state.db"),
        sink=LocalSink(tmp_path / "out"),
        scheduler=ThreadPoolScheduler(4),
        config=ExtractorConfig(unit_attempts=unit_attempts),
    ) as extractor:
        report = extractor.run(DATASET, START, END)
    counters = dict(source.counters())
    source.close()
    return Run(report, counters)


def assert_complete(run: Run, platform: FakeAepPlatform, tmp_path: Path) -> None:
    assert run.report.ok, str(run.report)
    assert sink_tree(LocalSink(tmp_path / "out")) == expected_tree(platform)


def assert_retried(run: Run, count: int, *, throttled: bool = False) -> None:
    """Each fault cost one retry (and one 429 when ``throttled``), and the report
    shows those of the copying phase."""
    assert run.counters["retries"] == count
    assert 0 < run.report.retries <= count
    assert run.counters["throttled"] == (count if throttled else 0)
    assert run.report.throttled == (run.report.retries if throttled else 0)


@pytest.fixture
def platform() -> Iterator[FakeAepPlatform]:
    with FakeAepPlatform.generate() as started:
        yield started


def faulted(platform: FakeAepPlatform, *rules: FaultRule, **plan: Any) -> None:
    platform.set_faults(FaultPlan(rules=rules, seed=plan.pop("seed", 11), **plan))


def served(platform: FakeAepPlatform, kind: str) -> int:
    count = platform.faults_served[kind]
    assert count > 0, f"no {kind} fault was served: the test proves nothing"
    return count


def range_starts(platform: FakeAepPlatform) -> dict[str, list[int]]:
    """The first byte of every ranged download request, in order, by file."""
    starts: dict[str, list[int]] = defaultdict(list)
    for r in platform.requests:
        if "path" in r.query and "Range" in r.headers:
            first = r.headers["Range"].partition("=")[2].partition("-")[0]
            starts[f"{r.path}?{r.query['path']}"].append(int(first))
    return starts


def inside_ranges(platform: FakeAepPlatform, chunk: int) -> list[int]:
    """Range requests that started inside a chunk: resumed mid-range, mid-file."""
    return [s for found in range_starts(platform).values() for s in found if s % chunk]


def big_file_path(platform: FakeAepPlatform) -> str:
    """The download path of the largest file (the 5 MiB one)."""
    window = (0, 2**62)
    _, file_id, _ = max(
        platform.expected_files(DATASET, *window), key=lambda x: x[2].length
    )
    return f"/files/{file_id}$"


# -- answers instead of the platform ---------------------------------------------------


@pytest.mark.parametrize("retry_after", [1.0, None])
def test_429_is_retried_and_counted(platform, tmp_path, retry_after):
    faulted(
        platform,
        FaultRule("429", probability=0.1, retry_after=retry_after, routes=_PLATFORM),
        max_faults=4,
    )
    run = extract(platform, tmp_path)
    assert_complete(run, platform, tmp_path)
    count = served(platform, "429")
    assert_retried(run, count, throttled=True)
    answered = [r for r in platform.requests if r.status == 429]
    assert len(answered) == count
    assert run.report.failures == ()


def test_429_from_ims_is_retried(platform, tmp_path):
    faulted(platform, FaultRule("429", routes="token", max_faults=2))
    run = extract(platform, tmp_path)
    assert_complete(run, platform, tmp_path)
    assert run.counters["retries"] == served(platform, "429") == 2
    # IMS answers are not platform answers: the client does not count them as
    # throttled (and the token is fetched while planning, outside the report).
    assert run.counters["throttled"] == 0


def test_5xx_is_retried(platform, tmp_path):
    faulted(platform, FaultRule("5xx", probability=0.1), max_faults=5)
    run = extract(platform, tmp_path)
    assert_complete(run, platform, tmp_path)
    assert_retried(run, served(platform, "5xx"))
    statuses = [r.status for r in platform.requests if r.status >= 500]
    assert len(statuses) == platform.faults_served["5xx"]
    assert set(statuses) <= {500, 502, 503, 504}
    assert len(set(statuses)) > 1
    assert run.report.failures == ()


def test_rate_limit_is_obeyed(platform, tmp_path):
    faulted(platform, FaultRule("rate", per_second=60, routes=_PLATFORM))
    run = extract(platform, tmp_path)
    assert_complete(run, platform, tmp_path)
    assert_retried(run, served(platform, "rate"), throttled=True)
    assert run.report.failures == ()
    throttled = [r for r in platform.requests if r.status == 429]
    assert throttled


# -- broken bodies: the download resumes inside the file -------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "reset",
        "truncate",
    ],
)
def test_broken_bodies_resume_inside_the_file(platform, tmp_path, kind):
    faulted(
        platform,
        FaultRule(kind, probability=0.1),
        # The 5 MiB file's first 4 MiB range breaks after 2 MiB, twice.
        FaultRule(kind, routes="download", match=big_file_path(platform), max_faults=2),
    )
    run = extract(platform, tmp_path, chunk_size=BIG_CHUNK)
    assert_complete(run, platform, tmp_path)
    assert_retried(run, served(platform, kind))
    assert run.report.failures == ()
    assert inside_ranges(platform, BIG_CHUNK), "no request resumed inside the file"


def test_cut_responses_resume_where_they_were_cut(platform, tmp_path):
    cut = 1536 * 1024
    faulted(platform, FaultRule("cut", after_bytes=cut))
    run = extract(platform, tmp_path, chunk_size=BIG_CHUNK)
    assert_complete(run, platform, tmp_path)
    assert_retried(run, served(platform, "cut"))
    assert inside_ranges(platform, BIG_CHUNK), "no request resumed inside the file"
    for starts in range_starts(platform).values():  # no response went past the cut
        assert all(0 < b - a <= cut for a, b in zip(starts, starts[1:]))


def test_slow_bodies_arrive_whole(platform, tmp_path):
    faulted(platform, FaultRule("slow", probability=0.2, delay=0.02))
    run = extract(platform, tmp_path)
    assert_complete(run, platform, tmp_path)
    assert served(platform, "slow") > 0
    assert run.counters["retries"] == 0


def test_stalled_bodies_time_out_and_are_retried(platform, tmp_path):
    faulted(
        platform,
        FaultRule("slow", probability=0.1, delay=1.0, routes="download"),
        max_faults=4,
    )
    run = extract(platform, tmp_path, read_timeout=0.4)
    assert_complete(run, platform, tmp_path)
    # Each stall outlasts the read timeout once; a loaded machine may add timeouts.
    assert run.report.retries >= served(platform, "slow")
    assert run.report.failures == ()


# -- tokens ----------------------------------------------------------------------------


def test_revoked_tokens_are_renewed(platform, tmp_path):
    faulted(platform, FaultRule("token_expiry", probability=0.05), max_faults=3)
    run = extract(platform, tmp_path)
    assert_complete(run, platform, tmp_path)
    count = served(platform, "token_expiry")
    # One new token per revocation at most (threads share the renewed one).
    assert 1 < platform.tokens_issued <= 1 + count
    unauthorized = [r for r in platform.requests if r.status == 401]
    assert len(unauthorized) >= count


# -- the Catalog listing changes while it is paged -------------------------------------


def many_batches() -> FakeAepPlatform:
    """106 batches in the first hour of the window: the listing of the slice of the
    window that holds them takes two pages of 100."""
    return FakeAepPlatform.generate(
        batches=105,
        end="2024-06-10T01:00:00Z",  # one batch exactly there, inside the window
        files_per_batch=1,
        max_file_size=64,
        large_file_size=0,
    )


def test_listing_gaining_a_batch_between_pages_repeats_one(tmp_path):
    with many_batches() as platform:
        faulted(platform, FaultRule("listing_change", change="insert"))
        run = extract(platform, tmp_path)
        assert_complete(run, platform, tmp_path)
        assert served(platform, "listing_change") == 1
        pages = [r.query for r in platform.requests if _batches(r)]
        (dense,) = [
            [page for page in pages if page["createdBefore"] == end]
            for end, count in Counter(p["createdBefore"] for p in pages).items()
            if count > 1
        ]
        assert len(dense) == 2  # paged by time: the second page starts after the first
        assert int(dense[1]["createdAfter"]) > int(dense[0]["createdAfter"])


def test_listing_losing_a_batch_between_pages_misses_none(tmp_path):
    with many_batches() as platform:
        faulted(platform, FaultRule("listing_change", change="move"))
        run = extract(platform, tmp_path)
        served(platform, "listing_change")
        assert_complete(run, platform, tmp_path)


def _batches(request: Any) -> bool:
    return bool(request.path == "/data/foundation/catalog/batches")


# -- client limits found with faults ---------------------------------------------------


def test_cut_below_the_read_piece_still_completes(tmp_path):
    with FakeAepPlatform.generate(batches=1, large_file_size=0) as platform:
        faulted(platform, FaultRule("cut", after_bytes=16 * 1024))
        run = extract(platform, tmp_path, unit_attempts=1)
        served(platform, "cut")
        assert_complete(run, platform, tmp_path)


# -- the demo --------------------------------------------------------------------------


def test_demo_with_faults(tmp_path, capsys):
    # Few 429/5xx: each one halves the client's request rate.
    spec = "seed=3,429=0.1:max=1:retry_after=1,reset=0.05,502=0.1:max=1,truncate=0.05"
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--faults", spec]) == 0
    out = capsys.readouterr().out
    assert "verified 34 of 34 files byte-identical" in out
    served = out.split("faults served: ")[1]
    assert "1 429, 1 5xx" in served
    assert "reset" in served
    assert "truncate" in served


@pytest.mark.parametrize(
    ("spec", "message"),
    [("reset=2", "between 0 and 1"), ("boom=0.1", "unknown fault kind 'boom'")],
)
def test_demo_rejects_a_bad_fault_spec(tmp_path, capsys, spec, message):
    assert main(["demo", "--dir", str(tmp_path), "--faults", spec]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "state.db").exists()
