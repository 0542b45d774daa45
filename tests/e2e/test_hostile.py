"""The real client against a hostile or buggy platform, over real HTTP.

Each test turns on one of the fake platform's hostile modes and checks what the
guarantees promise: no credential reaches another host, nothing wrong is stored as
complete, every walk and every request ends, and the run says what went wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional, Union

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
    TimeWindow,
    UnitStatus,
)
from aep_extract._plan_slices import PLAN_THREADS
from aep_extract.cli import main
from aep_extract.errors import InvalidResponse, TokenUnavailable
from aep_extract.models import from_epoch_ms
from aep_extract.testing import FakeAepPlatform, FaultPlan, FaultRule, ForeignHost

from .helpers import DATASET, END, START, expected_tree, run_args, sink_tree

FAST_RETRY = RetryConfig(attempts=3, initial_wait=0.01, max_wait=0.05)


@attrs.define
class World:
    platform: FakeAepPlatform
    trap: ForeignHost
    tmp_path: Path

    def source(self, **options: Any) -> HttpAepSource:
        values: dict[str, Any] = {"retry": FAST_RETRY, "chunk_size": 256 * 1024}
        values.update(options)
        return HttpAepSource.from_env(self.platform.env(), **values)

    def extractor(self, source: Optional[HttpAepSource] = None) -> Extractor:
        return Extractor(
            source or self.source(),
            store=SQLiteCheckpointStore(self.tmp_path / "state.db"),
            sink=LocalSink(self.tmp_path / "out"),
            scheduler=ThreadPoolScheduler(4),
            config=ExtractorConfig(unit_attempts=1),
            progress=False,
        )

    def run(self, **options: Any) -> Union[RunReport, Exception]:
        """The demo window's run, or the error it raised."""
        source = self.source(**options)
        try:
            with self.extractor(source) as extractor:
                return extractor.run(DATASET, START, END)
        except Exception as exc:  # the test inspects it
            return exc
        finally:
            source.close()

    def faults(self, *rules: FaultRule) -> None:
        self.platform.set_faults(FaultPlan(rules=rules, seed=3))

    def stored(self) -> dict[str, bytes]:
        return sink_tree(LocalSink(self.tmp_path / "out"))

    def assert_nothing_partial(self) -> None:
        """Whatever is in the sink is a whole, right file."""
        assert self.stored().items() <= expected_tree(self.platform).items()

    def assert_nothing_foreign(self) -> None:
        assert self.trap.requests == []
        assert not any(b"EVIL" in data for data in self.stored().values())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with FakeAepPlatform.generate() as platform, ForeignHost() as trap:
        yield World(platform, trap, tmp_path)


def failed_errors(report: Union[RunReport, Exception]) -> list[str]:
    assert isinstance(report, RunReport), report
    assert not report.ok
    return [error for _, error in report.failures]


# -- 1. credentials go to the platform and nowhere else ------------------------------


def test_an_ambiguous_link_is_refused_and_nothing_goes_to_its_host(world):
    world.faults(FaultRule("foreign_link", host=world.trap.netloc, style="backslash"))
    errors = failed_errors(world.run())
    assert errors
    assert all("UntrustedLinkError" in e for e in errors)
    assert all("backslash" in e and "not followed" in e for e in errors)
    assert all(world.trap.netloc in e for e in errors)
    world.assert_nothing_foreign()


@pytest.mark.parametrize("style", ["absolute", "userinfo"])
def test_links_to_another_host_are_followed_on_the_platform(world, style):
    world.faults(FaultRule("foreign_link", host=world.trap.netloc, style=style))
    report = world.run()
    assert isinstance(report, RunReport)
    assert report.ok, report
    assert world.platform.faults_served["foreign_link"] > 0
    assert world.stored() == expected_tree(world.platform)
    world.assert_nothing_foreign()


@pytest.mark.parametrize("routes", ["download", "listing"])
@pytest.mark.parametrize("status", [302, 307])
def test_a_platform_redirect_is_not_followed(world, routes, status):
    location = world.trap.url + "{path}"
    world.faults(FaultRule("redirect", location=location, status=status, routes=routes))
    errors = failed_errors(world.run())
    assert errors
    assert all(
        f"HTTP {status} redirect to host '{world.trap.netloc}'" in e for e in errors
    )
    world.assert_nothing_foreign()


def test_an_ims_redirect_does_not_post_the_secret_again(world):
    location = world.trap.url + "{path}"
    world.faults(FaultRule("redirect", location=location, routes="token"))
    error = world.run()
    assert isinstance(error, TokenUnavailable)
    assert f"HTTP 307 redirect to host '{world.trap.netloc}'" in str(error)
    assert world.platform.client_secret not in str(error)
    world.assert_nothing_foreign()


# -- 2. nothing wrong is stored as complete -------------------------------------------


def test_an_encoded_file_body_is_refused(world):
    world.faults(FaultRule("encoding", encoding="gzip"))
    errors = failed_errors(world.run())
    assert errors
    assert all("InvalidResponse" in e and "'gzip'" in e for e in errors)
    assert all(data == b"" for data in world.stored().values())


def test_a_whole_body_longer_than_listed_is_refused_when_the_connection_ends_it(
    tmp_path,
):
    """Whole 200 answers ended by the connection, listed 10 bytes short. The large
    file is listed as exactly 80 pieces of 64 KiB: a client that stops reading at
    the listed length, or takes the extra bytes for a cut, reads it truncated."""
    piece = 64 * 1024
    catalog = FakeAepPlatform.generate(large_file_size=80 * piece + 10)
    with catalog as platform, ForeignHost() as trap:
        world = World(platform, trap, tmp_path)
        world.faults(
            FaultRule("misreport", delta=-10),
            FaultRule("ignore_range"),
            FaultRule("close_delimited"),
        )
        source = world.source(chunk_size=16 * 1024 * 1024)
        large = next(
            ref
            for batch in platform.batches_of(DATASET)
            if batch.status == "success"
            for ref in source.list_files(batch.batch_id)
            if ref.length == 80 * piece
        )
        with pytest.raises(InvalidResponse, match="longer than"):
            b"".join(source.read_file(large))
        # A whole run stores none of these files.
        errors = failed_errors(world.run(chunk_size=16 * 1024 * 1024))
        stored = world.stored()
        source.close()
    assert any("longer than" in e for e in errors)
    assert all(data == b"" for data in stored.values())


def test_a_range_answer_longer_than_its_content_range_is_refused(world):
    world.faults(FaultRule("overlong", extra=16))
    errors = failed_errors(world.run())
    assert any("Content-Length" in e and "Content-Range" in e for e in errors)
    assert all(data == b"" for data in world.stored().values())


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (FaultRule("ignore_range"), "Range"),
        (FaultRule("overlong", extra=16), "Content-Range"),
    ],
)
def test_a_part_read_answered_with_other_bytes_is_refused(world, rule, message):
    """A part of a file in parts is one ranged read from the middle: a whole body
    in its place, or more bytes than its Content-Range, fail the read rather than
    land at the part's offset."""
    world.faults(rule)
    source = world.source()
    large = max(
        (
            ref
            for batch in world.platform.batches_of(DATASET)
            if batch.status == "success"
            for ref in source.list_files(batch.batch_id)
        ),
        key=lambda ref: ref.length,
    )
    start = large.length // 2
    with pytest.raises(InvalidResponse, match=message):
        b"".join(source.read_file(large, start, start + 1000))
    source.close()


def test_honest_close_delimited_bodies_are_copied_exactly(world):
    world.faults(FaultRule("close_delimited"))
    report = world.run()
    assert isinstance(report, RunReport)
    assert report.ok, report
    assert world.platform.faults_served["close_delimited"] > 0
    assert world.stored() == expected_tree(world.platform)


def test_an_empty_listing_of_a_batch_the_catalog_counts_is_not_completed(world):
    window = TimeWindow.parse(START, END)
    batch = next(
        b
        for b in world.platform.batches_of(DATASET)
        if b.status == "success" and b.leaf_files() and window.contains_ms(b.created_ms)
    )
    listing = f"/data/foundation/export/batches/{batch.batch_id}/files"
    empty = b'{"data": [], "_page": {"limit": 100, "count": 0}}'
    hide = True

    def empty_listing(request: Any) -> Any:
        if hide and request.path == listing:
            return 200, {"Content-Type": "application/json"}, empty
        return None

    world.platform.add_fault(empty_listing)
    errors = failed_errors(world.run())
    assert len(errors) == 1
    assert "lists no files" in errors[0]
    assert "outputFileCount" in errors[0]
    store = SQLiteCheckpointStore(world.tmp_path / "state.db")
    checkpoint = store.get(batch.batch_id)
    assert checkpoint is not None
    assert checkpoint.status is UnitStatus.FAILED
    # Once Data Access lists the files again, a retry copies them.
    hide = False
    store.retry_failed(DATASET)
    report = world.run()
    assert isinstance(report, RunReport)
    assert report.ok, report
    assert world.stored() == expected_tree(world.platform)


# -- 4. every wait is bounded ---------------------------------------------------------


@pytest.fixture
def crowded(tmp_path: Path) -> Iterator[World]:
    """A platform with more batches in the window than one Catalog page holds."""
    many = FakeAepPlatform.generate(batches=150, files_per_batch=1)
    with many as platform, ForeignHost() as trap:
        yield World(platform, trap, tmp_path)


def catalog_pages(platform: FakeAepPlatform) -> int:
    return sum(r.path.endswith("/catalog/batches") for r in platform.requests)


def test_a_catalog_that_ignores_paging_fails_the_plan(crowded):
    crowded.faults(FaultRule("endless", mode="repeat_pages"))
    error = crowded.run()
    assert isinstance(error, InvalidResponse)
    assert "ignores the paging" in str(error)
    # Each slice of the window stops at its second page, at the latest.
    assert catalog_pages(crowded.platform) <= 2 * PLAN_THREADS


def test_paging_stops_past_the_window_end(crowded):
    """A Catalog ignoring createdBefore lists on; the client stops at the end."""
    batches = crowded.platform.batches_of(DATASET)
    end = from_epoch_ms(batches[30].created_ms)  # the first 30 batches, or so
    crowded.faults(FaultRule("endless", mode="ignore_window"))
    window = TimeWindow.parse(START, end)
    source = crowded.source()
    listed = list(source.list_batches(DATASET, window))
    assert [b.batch_id for b in listed] == [
        b.batch_id for b in batches if window.contains_ms(b.created_ms)
    ]
    assert catalog_pages(crowded.platform) == 1  # 100 batches: past the end already
    source.close()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("changing_next", "adds no item"),
        ("deep_dirs", "nest deeper than 32 directories"),
    ],
)
def test_endless_listings_fail_the_unit(world, mode, message):
    world.faults(FaultRule("endless", mode=mode, routes="listing"))
    errors = failed_errors(world.run())
    assert errors
    assert all(message in e for e in errors)


def test_an_endless_json_answer_is_cut_at_the_size_cap(world):
    world.faults(FaultRule("endless_body"))
    error = world.run()
    assert isinstance(error, InvalidResponse)
    assert "answer larger than 33554432 bytes" in str(error)


def test_a_trickling_download_is_cut_by_the_request_deadline(world):
    world.faults(FaultRule("trickle", per_second=200, routes="download"))
    errors = failed_errors(world.run(request_timeout=0.5))
    assert errors
    assert all("DeadlineExceeded" in e and "within 0.5s" in e for e in errors)


def test_a_trickling_ims_ends_the_run_within_the_token_budget(world):
    world.faults(FaultRule("trickle", per_second=5, routes="token"))
    error = world.run(token_timeout=1.5)
    assert isinstance(error, TokenUnavailable)
    assert "within 1.5s" in str(error)


def test_an_abort_cuts_a_trickling_download_and_keeps_nothing_partial(world):
    """With the default 120 s request deadline, only the abort can end these
    reads: the run ends within moments and the units are given back."""
    world.faults(FaultRule("trickle", per_second=50, routes="download"))
    source = world.source()
    extractor = world.extractor(source)
    outcome: list[Any] = []
    thread = threading.Thread(
        target=lambda: outcome.append(extractor.run(DATASET, START, END))
    )
    thread.start()
    for _ in range(200):  # until a download has begun
        if any("Range" in r.headers for r in world.platform.requests):
            break
        threading.Event().wait(0.05)
    extractor.stop(abort=True)
    thread.join(timeout=60)  # a liveness bound, far below the trickle's hours
    assert not thread.is_alive()
    [report] = outcome
    assert report.stopped
    assert report.failures == ()
    assert report.files_copied < len(expected_tree(world.platform))
    world.assert_nothing_partial()
    store = SQLiteCheckpointStore(world.tmp_path / "state.db")
    assert store.summary(DATASET)[UnitStatus.IN_PROGRESS] == 0
    extractor.close()
    source.close()


def test_the_deadline_cuts_a_trickling_download(world):
    world.faults(FaultRule("trickle", per_second=50, routes="download"))
    source = world.source()
    with world.extractor(source) as extractor:
        report = extractor.run(DATASET, START, END, deadline=1.0)
    assert report.stopped
    assert report.failures == ()
    assert report.files_copied < len(expected_tree(world.platform))
    world.assert_nothing_partial()
    store = SQLiteCheckpointStore(world.tmp_path / "state.db")
    assert store.summary(DATASET)[UnitStatus.IN_PROGRESS] == 0
    source.close()


def test_a_hung_ims_ends_a_run_with_default_settings(world, monkeypatch, capsys):
    """IMS accepts the connection and never answers: with the defaults the run
    ends after ``token_timeout`` (30 s), not after 8 retries of 60 s reads."""
    world.faults(FaultRule("latency", delay=3600, routes="token"))
    for name, value in world.platform.env().items():
        monkeypatch.setenv(name, value)
    store = f"sqlite:///{world.tmp_path / 'state.db'}"
    assert main(run_args(str(world.tmp_path / "out"), store)) == 1
    err = capsys.readouterr().err
    assert "no IMS token from" in err
    assert "within 30s" in err
    # One token request, cut at 30 s; the platform itself never got a request.
    assert [r.path for r in world.platform.requests] == ["/ims/token/v3"]
