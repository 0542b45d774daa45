"""The fake platform's Catalog changing while it serves: new batches, status flips,
replays (consolidation), observed over real HTTP with the library's own client."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import attrs
import pytest
import requests
from openapi_schema_validator import OAS30Validator

from aep_extract import HttpAepSource, TimeWindow
from aep_extract.models import from_epoch_ms
from aep_extract.sources._parsing import parse_batch
from aep_extract.testing import FakeAepPlatform, FakeBatch, FakeDataSetFile, FakeFile

from . import test_fake_platform_schemas as schemas

DS = FakeAepPlatform.DEMO_DATASET_ID
OTHER = FakeAepPlatform.DEMO_OTHER_DATASET_ID
CATALOG = "/data/foundation/catalog"
WINDOW = TimeWindow.parse(FakeAepPlatform.DEMO_START, FakeAepPlatform.DEMO_END)
DAY = 86_400_000
NEXT_DAY = (WINDOW.end_ms, WINDOW.end_ms + DAY)  # the day after the demo window
EVERYTHING = TimeWindow.parse("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
specs = schemas.specs  # the specs fixture, made visible to this module

# Digest of the seed-7 demo's batches other than the loading one, taken before the
# loading batch got files: giving it files must not move any other id or byte.
DEMO_DIGEST = "80d475b95e4a0d5d46c55426727251bd594555d7d8572aa1ed7c76ed59302560"


@pytest.fixture
def platform() -> Iterator[FakeAepPlatform]:
    """A started demo platform of its own: these tests change it."""
    with FakeAepPlatform.generate() as fake:
        yield fake


@pytest.fixture
def source(platform: FakeAepPlatform) -> HttpAepSource:
    return HttpAepSource.from_env(platform.env())


def catalog_get(platform: FakeAepPlatform, path: str, **params: Any) -> Any:
    response = requests.get(
        platform.url + CATALOG + path,
        headers=platform.auth_headers(),
        params=params,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def served(platform: FakeAepPlatform, batch_id: str) -> dict[str, Any]:
    """``GET /catalog/batches/{id}``: the batch object."""
    body = catalog_get(platform, f"/batches/{batch_id}")
    assert list(body) == [batch_id]
    obj: dict[str, Any] = body[batch_id]
    return obj


def listed_ids(
    source: HttpAepSource, window: TimeWindow = EVERYTHING, **kw: Any
) -> list[str]:
    return [batch.batch_id for batch in source.list_batches(DS, window, **kw)]


def loading_batch(platform: FakeAepPlatform) -> FakeBatch:
    [batch] = [b for b in platform.batches_of(DS) if b.status == "loading"]
    return batch


# -- the demo's loading batch --------------------------------------------------------


def _batch_digest(batch: FakeBatch) -> str:
    digest = hashlib.sha256()
    fields = (batch.batch_id, batch.dataset_id, batch.status, batch.created_ms)
    digest.update(("|".join(map(str, fields)) + f"|{batch.errors}").encode())
    for node in batch.all_dataset_files():
        digest.update(f"{node.dataset_file_id}|{node.is_directory}|".encode())
    for leaf, file in batch.leaf_files():
        digest.update(f"{leaf}|{file.name}|".encode() + bytes(file.content))
    for file in batch.failed_files:
        digest.update(file.name.encode() + bytes(file.content))
    return digest.hexdigest()


def test_demo_batches_other_than_loading_are_unchanged() -> None:
    demo = FakeAepPlatform.generate(seed=7)
    digests = sorted(_batch_digest(b) for b in demo.batches if b.status != "loading")
    assert hashlib.sha256("".join(digests).encode()).hexdigest() == DEMO_DIGEST


def test_loading_batch_serves_its_files_once_it_is_success(
    platform: FakeAepPlatform, source: HttpAepSource
) -> None:
    loading = loading_batch(platform)
    assert loading.file_count == 3  # files_per_batch of the demo
    before = platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)
    assert loading.batch_id not in {b.batch_id for b, _, _ in before}
    assert loading.batch_id not in listed_ids(source, WINDOW, status="success")

    flipped = platform.set_batch_status(loading.batch_id, "success")

    assert flipped == attrs.evolve(loading, status="success")
    assert platform.get_batch(loading.batch_id) == flipped
    assert loading.batch_id in listed_ids(source, WINDOW, status="success")
    obj = served(platform, loading.batch_id)
    assert obj["status"] == "success"
    assert obj["metrics"]["outputFileCount"] == 3
    got = source.get_batch(DS, loading.batch_id, created_ms=loading.created_ms)
    assert got is not None
    assert got.status == "success"
    files = source.list_files(loading.batch_id)
    wanted = [
        (leaf, f)
        for b, leaf, f in platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)
        if b.batch_id == loading.batch_id
    ]
    assert [(ref.dataset_file_id, ref.name) for ref in files] == [
        (leaf, f.name) for leaf, f in wanted
    ]
    for ref, (_, file) in zip(files, wanted):
        assert b"".join(source.read_file(ref)) == file.content
    after = platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)
    assert len(after) == len(before) + 3


# -- status changes ------------------------------------------------------------------


def test_status_flip_is_visible_in_listing_and_get(
    platform: FakeAepPlatform, source: HttpAepSource
) -> None:
    victim = platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)[0][0]
    assert served(platform, victim.batch_id)["status"] == "success"

    platform.set_batch_status(victim.batch_id, "deleted")

    assert served(platform, victim.batch_id)["status"] == "deleted"
    listing = catalog_get(platform, "/batches", dataSet=DS, status="deleted")
    assert list(listing) == [victim.batch_id]
    assert victim.batch_id not in listed_ids(source, status="success")
    statuses = {b.batch_id: b.status for b in source.list_batches(DS, EVERYTHING)}
    assert statuses[victim.batch_id] == "deleted"
    expected = platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)
    assert victim.batch_id not in {b.batch_id for b, _, _ in expected}
    # the files stay: flipping back serves them again
    platform.set_batch_status(victim.batch_id, "success")
    assert source.list_files(victim.batch_id)


def test_set_batch_status_rejects_unknown_batch_or_status(
    platform: FakeAepPlatform,
) -> None:
    before = platform.batches
    with pytest.raises(KeyError):
        platform.set_batch_status("nope", "success")
    with pytest.raises(ValueError, match="unknown batch status"):
        platform.set_batch_status(before[0].batch_id, "Success")
    assert platform.batches == before


# -- adding batches ------------------------------------------------------------------


def test_added_batches_are_served(
    platform: FakeAepPlatform, source: HttpAepSource
) -> None:
    day = TimeWindow(from_epoch_ms(NEXT_DAY[0]), from_epoch_ms(NEXT_DAY[1]))
    [at_end] = listed_ids(source, day)  # the demo's batch created at its window end
    new = platform.make_batches(DS, *NEXT_DAY, 3, seed=1)

    platform.add_batches(new)

    listed = listed_ids(source, day)
    assert set(listed) == {at_end, *(b.batch_id for b in new)}
    assert listed == [
        b.batch_id for b in platform.batches_of(DS) if day.contains_ms(b.created_ms)
    ]
    for batch in new:
        refs = source.list_files(batch.batch_id)
        assert len(refs) == 2
        contents = {(leaf, f.name): f.content for leaf, f in batch.leaf_files()}
        for ref in refs:
            assert (
                b"".join(source.read_file(ref))
                == contents[(ref.dataset_file_id, ref.name)]
            )
    expected = platform.expected_files(DS, *NEXT_DAY)
    assert {b.batch_id for b, _, _ in expected} >= {b.batch_id for b in new}
    dataset = catalog_get(platform, f"/dataSets/{DS}")[DS]
    assert (
        dataset["lastBatchId"]
        == max(new, key=lambda b: (b.created_ms, b.batch_id)).batch_id
    )


def test_add_batches_is_all_or_nothing(platform: FakeAepPlatform) -> None:
    before = platform.batches
    listing = catalog_get(platform, "/batches", limit=100)
    present = before[0]
    [fresh, second] = platform.make_batches(DS, *NEXT_DAY, 2, seed=3)
    node = present.dataset_files[0]
    clash_file = attrs.evolve(fresh, dataset_files=[node])
    bad = [  # each time the first batch is fine, the second is not
        (
            "duplicate batch id",
            [fresh, attrs.evolve(second, batch_id=present.batch_id)],
        ),
        ("duplicate dataSetFileId", [second, clash_file]),
        ("duplicate batch id", [fresh, fresh]),
        ("unknown dataset", [fresh, attrs.evolve(second, dataset_id="unknown")]),
    ]
    for why, batches in bad:
        with pytest.raises(ValueError, match=why):
            platform.add_batches(batches)
        assert platform.batches == before, why
        assert catalog_get(platform, "/batches", limit=100) == listing, why
    platform.add_batches([fresh])
    with pytest.raises(ValueError, match="duplicate batch id"):
        platform.add_batches(platform.make_batches(DS, *NEXT_DAY, 2, seed=3))
    assert len(platform.batches) == len(before) + 1


# -- replays -------------------------------------------------------------------------


def test_replay_is_served_and_parsed(
    platform: FakeAepPlatform, source: HttpAepSource
) -> None:
    expected = platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)
    ids = list(dict.fromkeys(batch.batch_id for batch, _, _ in expected))
    first, second = platform.get_batch(ids[0]), platform.get_batch(ids[1])
    [consolidated] = platform.make_batches(DS, *NEXT_DAY, 1, seed=5)

    added = platform.replay([first.batch_id, second.batch_id], consolidated)

    replay = {
        "predecessors": [first.batch_id, second.batch_id],
        "reason": "consolidation",
        "predecessorListingType": "IMMEDIATE",
    }
    assert added == attrs.evolve(consolidated, replay=replay)
    assert platform.get_batch(consolidated.batch_id) == added
    obj = served(platform, consolidated.batch_id)
    assert obj["replay"] == replay
    parsed = parse_batch(consolidated.batch_id, obj, DS)
    assert parsed.predecessors == (first.batch_id, second.batch_id)
    assert parsed.replay_reason == "consolidation"
    assert parsed.successors == ()
    for pred in (first, second):
        obj = served(platform, pred.batch_id)
        assert obj["status"] == "inactive"
        assert obj["tags"]["acp_successor"] == [consolidated.batch_id]
        assert obj["tags"]["flowId"]  # the generated tag stays
        got = source.get_batch(DS, pred.batch_id, created_ms=pred.created_ms)
        assert got is not None
        assert (got.status, got.successors) == ("inactive", (consolidated.batch_id,))
        assert got.predecessors == ()
        assert got.replay_reason is None
        assert source.list_files(pred.batch_id)  # the files stay
    listed = {b.batch_id: b for b in source.list_batches(DS, EVERYTHING)}
    assert listed[consolidated.batch_id].predecessors == tuple(replay["predecessors"])
    assert listed[first.batch_id].successors == (consolidated.batch_id,)


def test_replay_keeps_the_status_when_asked(platform: FakeAepPlatform) -> None:
    target = platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)[0][0]
    [new] = platform.make_batches(DS, *NEXT_DAY, 1, seed=6)
    platform.replay(
        [target.batch_id],
        new,
        reason="Deletion of privacy data.",
        predecessor_status=None,
    )
    obj = served(platform, target.batch_id)
    assert obj["status"] == "success"
    assert obj["tags"]["acp_successor"] == [new.batch_id]
    replay = served(platform, new.batch_id)["replay"]
    assert replay["reason"] == "Deletion of privacy data."
    expected = platform.expected_files(DS, WINDOW.start_ms, WINDOW.end_ms)
    assert target.batch_id in {b.batch_id for b, _, _ in expected}


def test_replay_rejects_bad_calls_and_changes_nothing(
    platform: FakeAepPlatform,
) -> None:
    before = platform.batches
    main = platform.batches_of(DS)[1]
    other = platform.batches_of(OTHER)[0]
    [new] = platform.make_batches(DS, *NEXT_DAY, 1, seed=9)
    with pytest.raises(KeyError):
        platform.replay([main.batch_id, "nope"], new)
    distinct = "need distinct predecessors"
    failures: list[tuple[str, Any, FakeBatch, dict[str, Any]]] = [
        (distinct, [], new, {}),
        ("not a string", main.batch_id, new, {}),
        (distinct, [main.batch_id, main.batch_id], new, {}),
        ("another dataset", [main.batch_id, other.batch_id], new, {}),
        (distinct, [main.batch_id], attrs.evolve(new, batch_id=main.batch_id), {}),
        ("unknown batch status", [main.batch_id], new, {"predecessor_status": "x"}),
        (
            "duplicate batch id",
            [main.batch_id],
            attrs.evolve(new, batch_id=before[0].batch_id),
            {},
        ),
    ]
    for why, ids, batch, options in failures:
        with pytest.raises(ValueError, match=why):
            platform.replay(ids, batch, **options)
        assert platform.batches == before, why


# -- what is served still meets the spec ---------------------------------------------


def test_replay_and_tags_meet_the_spec(
    platform: FakeAepPlatform, specs: dict[str, Any]
) -> None:
    pred = platform.batches_of(DS)[0]
    [new] = platform.make_batches(DS, *NEXT_DAY, 1, seed=11)
    platform.replay([pred.batch_id], attrs.evolve(new, tags={"custom": ["a", "b"]}))
    one = schemas.response_schema(specs["catalog"], "/batches/{BATCH_ID}")
    for batch_id in (pred.batch_id, new.batch_id):
        schemas.check(catalog_get(platform, f"/batches/{batch_id}"), one)
    listing = catalog_get(platform, "/batches", limit=100)
    assert "replay" in listing[new.batch_id]
    schemas.check(listing, schemas.response_schema(specs["catalog"], "/batches"))
    # the tightened schema does look into replay and tags
    bad_replay = {**listing[new.batch_id], "replay": {"predecessorListingType": "SOME"}}
    bad_tags = {**listing[new.batch_id], "tags": {"custom": "a"}}
    for obj in (bad_replay, bad_tags):
        assert not OAS30Validator(one).is_valid({new.batch_id: obj})


# -- make_batches and FakeBatch's new fields -----------------------------------------


def test_make_batches_is_deterministic() -> None:
    start, end = "2024-06-14T00:00:00Z", "2024-06-15T00:00:00Z"
    first = FakeAepPlatform.make_batches(DS, start, end, 5, seed=1)
    assert FakeAepPlatform.make_batches(DS, start, end, 5, seed=1) == first
    same_moments: list[tuple[Any, Any]] = [
        (
            datetime(2024, 6, 14, tzinfo=timezone.utc),
            datetime(2024, 6, 15, tzinfo=timezone.utc),
        ),
        (NEXT_DAY[0], NEXT_DAY[1]),
    ]
    for begin, finish in same_moments:
        assert FakeAepPlatform.make_batches(DS, begin, finish, 5, seed=1) == first
    created = [b.created_ms for b in first]
    assert created[0] == NEXT_DAY[0]
    assert created == sorted(created)
    assert all(NEXT_DAY[0] <= ms < NEXT_DAY[1] for ms in created)
    assert len({b.batch_id for b in first}) == 5
    assert all(b.status == "success" and b.file_count == 2 for b in first)
    assert all(0 < f.length <= 64 * 1024 for b in first for _, f in b.leaf_files())
    ids = {b.batch_id for b in first}
    for seed in (2, 7):
        again = FakeAepPlatform.make_batches(DS, start, end, 5, seed=seed)
        assert ids.isdisjoint(b.batch_id for b in again)
    demo_ids = {b.batch_id for b in FakeAepPlatform.generate(seed=1).batches}
    assert ids.isdisjoint(demo_ids)
    loading = FakeAepPlatform.make_batches(
        DS, start, end, 2, seed=1, status="loading", files_per_batch=1, max_file_size=10
    )
    assert all(b.status == "loading" and b.file_count == 1 for b in loading)
    assert all(f.length <= 10 for b in loading for _, f in b.leaf_files())


@pytest.mark.parametrize(
    ("count", "options", "why"),
    [
        (0, {}, "need count >= 1"),
        (2, {"status": "done"}, "unknown batch status"),
        (2, {"files_per_batch": -1}, "files_per_batch >= 0"),
        (2, {"max_file_size": 0}, "max_file_size >= 1"),
    ],
)
def test_make_batches_rejects_bad_arguments(
    count: int, options: dict[str, Any], why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        FakeAepPlatform.make_batches(DS, *NEXT_DAY, count, seed=1, **options)


def test_make_batches_rejects_a_window_too_short() -> None:
    with pytest.raises(ValueError, match="too short"):
        FakeAepPlatform.make_batches(DS, 1000, 1002, 3, seed=1)


def test_fake_batch_tags_and_replay_are_copied_and_checked() -> None:
    successors, predecessors = ["b2"], ["b0"]
    tags = {"acp_successor": successors}
    replay = {"predecessors": predecessors, "reason": "consolidation"}
    batch = FakeBatch("b1", DS, "success", 1, tags=tags, replay=replay)
    successors.append("b3")
    predecessors.append("b9")
    assert batch.tags == {"acp_successor": ("b2",)}
    assert batch.replay == {"predecessors": ["b0"], "reason": "consolidation"}
    assert attrs.evolve(batch, tags={}).tags == {}
    hash(FakeBatch("b1", DS, "success", 1, tags=tags))  # still hashable
    bad: list[tuple[str, dict[str, Any]]] = [
        ("sequence of strings", {"tags": {"x": "not a list"}}),
        ("sequence of strings", {"tags": {"x": [1]}}),
        ("non-empty", {"tags": {"": ["a"]}}),
        ("tags must be a mapping", {"tags": [("x", ["a"])]}),
        ("replay must be a mapping", {"replay": ["b0"]}),
        ("JSON-serializable", {"replay": {"when": datetime.now(timezone.utc)}}),
    ]
    for why, options in bad:
        with pytest.raises(ValueError, match=why):
            FakeBatch("b1", DS, "success", 1, **options)


def test_replay_of_hand_built_batches() -> None:
    def files(batch_id: str) -> list[FakeDataSetFile]:
        return [FakeDataSetFile(f"{batch_id}-1", [FakeFile("part-0.parquet", b"PAR1")])]

    t0 = 1_718_000_000_000
    old = FakeBatch("a", DS, "success", t0, files("a"), tags={"custom": ["x"]})
    with FakeAepPlatform({DS: {"name": "main"}}, [old]) as fake:
        fake.replay(["a"], FakeBatch("c", DS, "success", t0 + 1, files("c")))
        source = HttpAepSource.from_env(fake.env())
        batches = [
            (b.batch_id, b.status, b.successors, b.predecessors)
            for b in source.list_batches(DS, EVERYTHING)
        ]
        assert batches == [
            ("a", "inactive", ("c",), ()),
            ("c", "success", (), ("a",)),
        ]
        assert fake.get_batch("a").tags == {"custom": ("x",), "acp_successor": ("c",)}
        assert served(fake, "a")["tags"]["custom"] == ["x"]
        assert [b.batch_id for b, _, _ in fake.expected_files(DS, t0, t0 + 2)] == ["c"]


# -- thread safety -------------------------------------------------------------------


def test_changes_while_serving(platform: FakeAepPlatform) -> None:
    """Readers on other threads see every change whole: batches only ever appear, and
    a listed batch's files can always be listed."""
    new = platform.make_batches(DS, *NEXT_DAY, 30, seed=13, status="loading")
    new_ids = {batch.batch_id for batch in new}
    errors: list[BaseException] = []
    listings = [0]
    done = threading.Event()

    def read() -> None:
        source = HttpAepSource.from_env(platform.env())
        seen: set[str] = set()
        try:
            while not done.is_set():
                listed = {b.batch_id: b for b in source.list_batches(DS, EVERYTHING)}
                assert seen <= set(listed)
                seen = set(listed)
                listings[0] += 1
                for batch in listed.values():
                    if batch.status == "success" and batch.batch_id in new_ids:
                        assert len(source.list_files(batch.batch_id)) == 2
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for batch in new:
            platform.add_batches([batch])
            time.sleep(0.005)  # let the readers see the loading batch
            platform.set_batch_status(batch.batch_id, "success")
    finally:
        done.set()
        for reader in readers:
            reader.join(timeout=30)
    assert not errors, errors[0]
    assert listings[0] > 3  # the readers did read while the Catalog changed
    assert all(platform.get_batch(b.batch_id).status == "success" for b in new)
