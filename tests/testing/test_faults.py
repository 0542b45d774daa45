"""Fault plans: validation, the compact spec, decisions, and each kind over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from aep_extract.testing import (
    FakeAepPlatform,
    FakeBatch,
    FakeDataSetFile,
    FakeFile,
    FakeRequest,
    FaultPlan,
    FaultRule,
)
from aep_extract.testing._fake_faults import FaultInjector, route_of
from aep_extract.testing._fake_http import FakeResponse
from aep_extract.testing.faults import FAULT_KINDS, ROUTES

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
DS = "5e8f81cf7a4ecb28a8d85b22"
T0 = 1_718_000_000_000
BODY = bytes(range(256)) * 400  # 102400 bytes


# -- rules -----------------------------------------------------------------------------


def test_rule_defaults_and_scopes() -> None:
    assert FaultRule("429").probability == 1.0
    assert FaultRule("429").scope == ROUTES
    assert FaultRule("token_expiry").scope == ("catalog", "listing", "download")
    assert FaultRule("cut", after_bytes=10).scope == ("download",)
    assert FaultRule("listing_change").scope == ("catalog",)
    # Routes come back in canonical order, from a string or a sequence.
    assert FaultRule("reset", routes="download+token").scope == ("token", "download")
    assert FaultRule("reset", routes=["listing"]).routes == ("listing",)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("boom", {}, "unknown fault kind 'boom'"),
        (None, {}, "unknown fault kind None"),
        ("truncate", {"after_bytes": 1.5}, "after_bytes must be a whole number"),
        ("429", {"probability": "0.1"}, "probability must be a number"),
        ("429", {"probability": 1.5}, "between 0 and 1"),
        ("429", {"probability": -0.1}, "between 0 and 1"),
        ("429", {"routes": "files"}, "unknown route 'files'"),
        ("429", {"routes": ""}, "unknown route"),
        ("429", {"delay": 1.0}, "'delay' does not apply to 429"),
        ("reset", {"retry_after": 1}, "'retry_after' does not apply to reset"),
        ("slow", {"change": "move"}, "'change' does not apply to slow"),
        ("5xx", {"status": 501}, "unknown status 501"),
        ("rate", {}, "rate faults need 'per_second'"),
        ("rate", {"per_second": 0}, "per_second must be more than 0"),
        ("rate", {"per_second": 5, "probability": 0.5}, "take no probability"),
        ("cut", {}, "cut faults need 'after_bytes'"),
        ("truncate", {"after_bytes": -1}, "after_bytes must be at least 0"),
        ("429", {"retry_after": float("nan")}, "retry_after must be at least 0"),
        ("429", {"max_faults": 0}, "max_faults must be at least 1"),
        ("429", {"match": "("}, "invalid match pattern"),
        (
            "token_expiry",
            {"routes": "token"},
            r"apply to the catalog\+listing\+download routes only",
        ),
        ("listing_change", {"routes": "listing"}, "catalog route only"),
        ("listing_change", {"change": "shuffle"}, "unknown listing change"),
    ],
)
def test_rule_rejects(kind: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRule(kind, **options)


def test_plan_validates() -> None:
    with pytest.raises(TypeError, match="not a FaultRule"):
        FaultPlan(rules=["429"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_faults must be at least 1"):
        FaultPlan(rules=[FaultRule("429")], max_faults=0)
    plan = FaultPlan(rules=[FaultRule("429")])
    assert plan.rules == (FaultRule("429"),)
    assert plan.seed == 0


# -- the compact spec ------------------------------------------------------------------


def test_parse_the_documented_example() -> None:
    plan = FaultPlan.parse(
        "429=0.1,reset=0.05,5xx=0.05,truncate=0.05,rate=20,cut=1048576"
    )
    assert plan == FaultPlan(
        rules=[
            FaultRule("429", probability=0.1),
            FaultRule("reset", probability=0.05),
            FaultRule("5xx", probability=0.05),
            FaultRule("truncate", probability=0.05),
            FaultRule("rate", per_second=20),
            FaultRule("cut", after_bytes=1048576),
        ]
    )


def test_parse_routes_options_and_plan_items() -> None:
    plan = FaultPlan.parse(
        " seed=3, 429=0.2@catalog+listing:retry_after=1.5:max=2 ,"
        "503=0.1,slow=0.3:delay=0.2@download,reset=1:after=100,"
        "listing_change=1:change=move,429=0.5:retry_after=none,max=50",
        seed=99,
    )
    assert plan.seed == 3
    assert plan.max_faults == 50
    assert plan.rules == (
        FaultRule(
            "429",
            probability=0.2,
            routes=("catalog", "listing"),
            retry_after=1.5,
            max_faults=2,
        ),
        FaultRule("5xx", probability=0.1, status=503),
        FaultRule("slow", probability=0.3, delay=0.2, routes="download"),
        FaultRule("reset", after_bytes=100),
        FaultRule("listing_change", change="move"),
        FaultRule("429", probability=0.5),
    )
    assert FaultPlan.parse("429=1", seed=99).seed == 99


def test_spec_round_trips() -> None:
    plan = FaultPlan.parse(
        "seed=5,429=0.1:retry_after=2@download,504=0.2,truncate=0.3:after=7:max=3,"
        "slow=0.5:delay=0.25,rate=12.5,cut=4096,token_expiry=0.01@catalog,"
        "listing_change=1:change=insert,max=9"
    )
    assert FaultPlan.parse(plan.to_spec()) == plan
    assert plan.rules[1].to_spec() == "504=0.2"
    assert plan.rules[0].to_spec() == "429=0.1@download:retry_after=2"


def test_rules_without_a_spec_form() -> None:
    with pytest.raises(ValueError, match="match pattern"):
        FaultRule("429", match="x").to_spec()
    with pytest.raises(ValueError, match="probability below 1"):
        FaultRule("cut", after_bytes=5, probability=0.5).to_spec()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty fault spec"),
        ("   ", "empty fault spec"),
        ("429=0.1,,reset=0.1", "empty item"),
        ("reset", "item 'reset': expected KIND=VALUE"),
        ("=0.1", "expected KIND=VALUE"),
        ("rst=0.1", "item 'rst=0.1': unknown fault kind 'rst'"),
        ("reset=2", "item 'reset=2': probability must be between 0 and 1, got 2"),
        ("reset=lots", "probability 'lots' is not a number"),
        ("rate=fast", "requests per second 'fast' is not a number"),
        ("cut=1.5", "bytes '1.5' is not a whole number"),
        ("cut=-1", "bytes must be at least 0"),
        ("429=0.1@files", "unknown route 'files'"),
        ("429=0.1@download@catalog", "routes given twice"),
        ("429=0.1:wait=1", "unknown option 'wait=1'"),
        ("429=0.1:retry_after", "unknown option 'retry_after'"),
        ("429=0.1:retry_after=soon", "retry_after 'soon' is not a number"),
        ("429=0.1:max=1:max=2", "option 'max_faults' given twice"),
        ("429=0.1:max=0", "max must be at least 1"),
        ("reset=0.1:retry_after=1", "'retry_after' does not apply to reset"),
        ("listing_change=1:change=shuffle", "unknown listing change 'shuffle'"),
        ("seed=x,429=1", "seed 'x' is not a whole number"),
        ("seed=1,seed=2,429=1", "'seed' given twice"),
        ("max=0,429=1", "max must be at least 1"),
        ("seed=1,max=3", "has no fault, only options"),
    ],
)
def test_parse_errors_name_the_item(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        FaultPlan.parse(spec)


# -- decisions -------------------------------------------------------------------------


def request(url_path: str, method: str = "GET", **query: str) -> FakeRequest:
    return FakeRequest(
        method=method, path=url_path, query=query, headers=CaseInsensitiveDict()
    )


def download(name: str = "f", file_id: str = "d-1") -> FakeRequest:
    return request(f"{EXPORT}/files/{file_id}", **{"path": name})


def ok(*_: Any) -> FakeResponse:
    return FakeResponse(200, {}, BODY)


def test_routes_are_classified() -> None:
    assert route_of(request("/ims/token/v3", "POST")) == "token"
    assert route_of(request(f"{CATALOG}/batches")) == "catalog"
    assert route_of(request(f"{EXPORT}/batches/b/files")) == "listing"
    assert route_of(request(f"{EXPORT}/files/d-1")) == "listing"
    assert route_of(download()) == "download"
    failed = request(f"{EXPORT}/batches/b/failed", **{"path": "x"})
    assert route_of(failed) == "download"
    assert route_of(request("/elsewhere")) is None


def fired(plan: FaultPlan, requests_: list[FakeRequest]) -> list[int]:
    """Statuses an injector answers for the requests, in order."""
    injector = FaultInjector(plan)
    return [injector.handle(r, ok, lambda: None).status for r in requests_]


def test_decisions_follow_the_seed() -> None:
    traffic = [download(f"f{i}") for i in range(200)]
    plan = FaultPlan(rules=[FaultRule("5xx", probability=0.3)], seed=1)
    first = fired(plan, traffic)
    assert first == fired(plan, traffic)
    assert 30 < sum(status >= 500 for status in first) < 90
    assert first != fired(FaultPlan(rules=plan.rules, seed=2), traffic)


def test_decisions_do_not_depend_on_the_order_of_requests() -> None:
    traffic = [download(f"f{i % 50}") for i in range(150)]  # each name thrice
    plan = FaultPlan(rules=[FaultRule("429", probability=0.4)], seed=4)
    forward = dict(zip(map(id, traffic), fired(plan, traffic)))
    # Reversed, the n-th request of each name still meets the same decision.
    by_name: dict[str, list[int]] = {}
    for r in traffic:
        by_name.setdefault(r.query["path"], []).append(forward[id(r)])
    backward: dict[str, list[int]] = {}
    for r, status in zip(traffic[::-1], fired(plan, traffic[::-1])):
        backward.setdefault(r.query["path"], []).append(status)
    assert backward == by_name


def test_the_same_request_again_gets_a_fresh_decision() -> None:
    plan = FaultPlan(rules=[FaultRule("5xx", probability=0.5)], seed=8)
    statuses = fired(plan, [download() for _ in range(40)])
    assert {200} < set(statuses)  # neither always nor never faulted


def test_injector_is_thread_safe_and_deterministic() -> None:
    plan = FaultPlan(rules=[FaultRule("429", probability=0.25)], seed=6)
    traffic = [download(f"f{i % 100}") for i in range(2000)]
    expected = sum(status == 429 for status in fired(plan, traffic))
    injector = FaultInjector(plan)

    def worker(part: list[FakeRequest]) -> None:
        for r in part:
            injector.handle(r, ok, lambda: None)

    threads = [threading.Thread(target=worker, args=(traffic[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert injector.served["429"] == expected
    assert set(injector.served) == set(FAULT_KINDS)


def test_scoping_by_route_and_match() -> None:
    plan = FaultPlan(
        rules=[FaultRule("5xx", routes="download", match=r"/files/d-1$", status=502)]
    )
    traffic = [
        request(f"{CATALOG}/batches"),
        request(f"{EXPORT}/files/d-1"),  # a listing of the same path
        request("/ims/token/v3", "POST"),
        download(),
        download("f", "d-2"),
    ]
    assert fired(plan, traffic) == [200, 200, 200, 502, 200]


def test_max_faults_of_a_rule_and_of_the_plan() -> None:
    traffic = [download(f"f{i}") for i in range(20)]
    capped_rule = FaultPlan(rules=[FaultRule("5xx", max_faults=3)])
    assert sum(s >= 500 for s in fired(capped_rule, traffic)) == 3
    capped_plan = FaultPlan(
        rules=[FaultRule("429", max_faults=2), FaultRule("5xx")], max_faults=5
    )
    statuses = fired(capped_plan, traffic)
    assert statuses[:2] == [429, 429]
    assert all(status >= 500 for status in statuses[2:5])
    assert statuses[5:] == [200] * 15


def test_rate_limit_uses_a_sliding_second() -> None:
    now = [100.0]
    injector = FaultInjector(
        FaultPlan(rules=[FaultRule("rate", per_second=3)]), clock=lambda: now[0]
    )

    def status_at(when: float) -> int:
        now[0] = when
        return injector.handle(download(), ok, lambda: None).status

    assert [status_at(100.0), status_at(100.2), status_at(100.4)] == [200] * 3
    assert status_at(100.5) == 429
    assert status_at(100.99) == 429
    assert status_at(101.0) == 200  # the first left the window
    assert status_at(101.1) == 429
    assert status_at(101.21) == 200
    assert injector.served["rate"] == 3


def test_first_answering_rule_wins_and_bodies_need_a_success() -> None:
    plan = FaultPlan(rules=[FaultRule("429"), FaultRule("5xx")])
    assert fired(plan, [download()]) == [429]
    injector = FaultInjector(FaultPlan(rules=[FaultRule("truncate")]))

    def not_found(*_: Any) -> FakeResponse:
        return FakeResponse(404, {}, b'{"title": "no"}')

    assert injector.handle(download(), not_found, lambda: None).delivery is None
    head = request(f"{EXPORT}/files/d-1", "HEAD", **{"path": "f"})
    assert injector.handle(head, ok, lambda: None).delivery is None
    assert injector.handle(download(), ok, lambda: None).delivery is not None
    assert injector.served["truncate"] == 1


def test_a_revocation_holds_when_another_rule_answers() -> None:
    plan = FaultPlan(rules=[FaultRule("token_expiry"), FaultRule("429")])
    revoked: list[bool] = []
    injector = FaultInjector(plan)
    answer = injector.handle(download(), ok, lambda: revoked.append(True))
    assert answer.status == 429
    assert revoked == [True]
    assert (injector.served["token_expiry"], injector.served["429"]) == (1, 1)


# -- each kind over HTTP ---------------------------------------------------------------


@pytest.fixture
def platform() -> Iterator[FakeAepPlatform]:
    """Six batches, the first with a 100 KiB file."""
    leaf = FakeDataSetFile("b0-1", [FakeFile("big.parquet", BODY)])
    batches = [FakeBatch("b0", DS, "success", T0, [leaf])] + [
        FakeBatch(f"b{i}", DS, "success", T0 + i) for i in range(1, 6)
    ]
    with FakeAepPlatform({DS: {"name": "events"}}, batches) as started:
        yield started


def get(platform: FakeAepPlatform, path: str, **kwargs: Any) -> requests.Response:
    headers = {**platform.auth_headers(), **kwargs.pop("headers", {})}
    response: requests.Response = requests.get(
        platform.url + path, headers=headers, timeout=10, **kwargs
    )
    return response


def get_file(platform: FakeAepPlatform, **kwargs: Any) -> requests.Response:
    return get(
        platform, f"{EXPORT}/files/b0-1", params={"path": "big.parquet"}, **kwargs
    )


def raw_get(platform: FakeAepPlatform) -> tuple[bytes, bytes, str]:
    """GET the big file over a bare socket: the head, the body bytes that arrived,
    and how the connection ended ("eof" or the error's name)."""
    host, port = platform.url[len("http://") :].split(":")
    headers = "".join(f"{k}: {v}\r\n" for k, v in platform.auth_headers().items())
    head = (
        f"GET {EXPORT}/files/b0-1?path=big.parquet HTTP/1.1\r\nHost: {host}\r\n"
        f"{headers}\r\n"
    )
    data, end = bytearray(), "eof"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        except OSError as exc:
            end = type(exc).__name__
    top, _, body = bytes(data).partition(b"\r\n\r\n")
    return top, body, end


def test_429_with_and_without_retry_after(platform: FakeAepPlatform) -> None:
    platform.set_faults(FaultPlan(rules=[FaultRule("429", retry_after=2)]))
    response = get(platform, f"{CATALOG}/batches")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json() == {"error_code": "429001", "message": "Too many requests"}
    assert response.headers["x-request-id"]
    platform.set_faults(FaultPlan(rules=[FaultRule("429")]))
    response = get(platform, f"{CATALOG}/batches")
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert platform.requests[-1].status == 429
    assert platform.faults_served["429"] == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_answers_problem_details(platform: FakeAepPlatform, status: int) -> None:
    platform.set_faults(FaultPlan(rules=[FaultRule("5xx", status=status)]))
    response = get(platform, f"{CATALOG}/batches")
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"].endswith(f"CAT-1500-{status}")
    token = requests.post(f"{platform.url}/ims/token/v3", timeout=10)
    assert token.status_code == status
    assert token.json()["error"] == "server_error"  # IMS's own shape


def test_reset_sends_part_of_the_body_then_resets(platform: FakeAepPlatform) -> None:
    platform.set_faults(FaultPlan(rules=[FaultRule("reset", routes="download")]))
    head, received, end = raw_get(platform)
    assert f"Content-Length: {len(BODY)}".encode() in head
    assert received == BODY[: len(BODY) // 2]
    assert end == "ConnectionResetError"
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="reset"):
        get_file(platform)
    assert get(platform, f"{EXPORT}/files/b0-1").status_code == 200  # listings spared


@pytest.mark.parametrize(("after", "sent"), [(None, len(BODY) // 2), (100, 100)])
def test_truncate_closes_early(
    platform: FakeAepPlatform, after: Any, sent: int
) -> None:
    rule = FaultRule("truncate", after_bytes=after, routes="download")
    platform.set_faults(FaultPlan(rules=[rule]))
    head, received, end = raw_get(platform)
    assert f"Content-Length: {len(BODY)}".encode() in head
    assert (received, end) == (BODY[:sent], "eof")
    assert arrives_short(platform)


def arrives_short(platform: FakeAepPlatform) -> bool:
    """Whether ``requests`` sees the body short: urllib3 2 raises, 1.26 (which does
    not enforce Content-Length) hands over fewer bytes."""
    try:
        return len(get_file(platform).content) < len(BODY)
    except requests.exceptions.ChunkedEncodingError as exc:
        return "IncompleteRead" in str(exc)


def test_cut_only_bodies_longer_than_the_limit(platform: FakeAepPlatform) -> None:
    platform.set_faults(FaultPlan(rules=[FaultRule("cut", after_bytes=1000)]))
    _, received, end = raw_get(platform)
    assert (received, end) == (BODY[:1000], "eof")
    whole = get_file(platform, headers={"Range": "bytes=0-999"})
    assert whole.content == BODY[:1000]
    assert platform.faults_served["cut"] == 1


def test_slow_bodies_trickle_but_arrive_whole(platform: FakeAepPlatform) -> None:
    platform.set_faults(FaultPlan(rules=[FaultRule("slow", delay=0.1)]))
    started = time.monotonic()
    assert get_file(platform).content == BODY
    assert time.monotonic() - started >= 0.3  # 4 pieces, 3 pauses
    assert platform.faults_served["slow"] == 1


def test_stop_ends_a_slow_body_at_once(platform: FakeAepPlatform) -> None:
    before = set(threading.enumerate())
    platform.set_faults(FaultPlan(rules=[FaultRule("slow", delay=30.0)]))
    response = get_file(platform, stream=True)
    assert len(next(response.iter_content(1024))) == 1024
    senders = set(threading.enumerate()) - before
    assert senders  # the thread sending the slow body
    platform.stop()
    for sender in senders:
        sender.join(timeout=5)
        assert not sender.is_alive()  # it did not sleep on for 30 s
    response.close()


def test_token_expiry_revokes_every_token(platform: FakeAepPlatform) -> None:
    headers = platform.auth_headers()
    plan = FaultPlan(rules=[FaultRule("token_expiry", routes="catalog", max_faults=1)])
    platform.set_faults(plan)
    revoked = requests.get(
        f"{platform.url}{CATALOG}/batches", headers=headers, timeout=10
    )
    assert revoked.status_code == 401
    assert revoked.json()["error_code"] == "401013"
    again = requests.get(
        f"{platform.url}{CATALOG}/batches", headers=headers, timeout=10
    )
    assert again.status_code == 401  # the old token stays revoked
    assert get(platform, f"{CATALOG}/batches").status_code == 200  # a new one works
    assert platform.faults_served["token_expiry"] == 1


def test_rate_answers_429_with_retry_after(platform: FakeAepPlatform) -> None:
    platform.set_faults(FaultPlan(rules=[FaultRule("rate", per_second=2)]))
    statuses = [get(platform, f"{CATALOG}/batches").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    throttled = get(platform, f"{CATALOG}/batches")
    assert throttled.headers["Retry-After"] == "1"


def pages(platform: FakeAepPlatform, *starts: int) -> list[list[str]]:
    """Batch ids of the Catalog pages of 2 at these offsets, in this order."""
    params = {"dataSet": DS, "orderBy": "asc:created", "limit": "2"}
    return [
        list(
            get(
                platform, f"{CATALOG}/batches", params={**params, "start": str(s)}
            ).json()
        )
        for s in starts
    ]


def test_listing_gains_a_batch_at_the_front(platform: FakeAepPlatform) -> None:
    assert pages(platform, 0, 2, 4) == [["b0", "b1"], ["b2", "b3"], ["b4", "b5"]]
    rule = FaultRule("listing_change", change="insert", max_faults=1)
    platform.set_faults(FaultPlan(rules=[rule]))
    # b1 comes again on the second page; the change stays for the third.
    assert pages(platform, 0, 2, 4) == [["b0", "b1"], ["b1", "b2"], ["b3", "b4"]]
    # A listing from the start again begins afresh.
    assert pages(platform, 0, 2) == [["b0", "b1"], ["b2", "b3"]]
    assert platform.faults_served["listing_change"] == 1


def test_listing_moves_its_first_batch_to_the_end(platform: FakeAepPlatform) -> None:
    rule = FaultRule("listing_change", change="move", max_faults=1)
    platform.set_faults(FaultPlan(rules=[rule]))
    # b2 is never served; b0 comes again at the end.
    assert pages(platform, 0, 2, 4) == [["b0", "b1"], ["b3", "b4"], ["b5", "b0"]]


def test_listing_changes_need_a_later_page(platform: FakeAepPlatform) -> None:
    platform.set_faults(FaultPlan(rules=[FaultRule("listing_change")]))
    assert pages(platform, 0) == [["b0", "b1"]]
    assert get(platform, f"{CATALOG}/dataSets").status_code == 200
    assert platform.faults_served["listing_change"] == 0


# -- the platform's fault API ----------------------------------------------------------


def test_plans_hooks_and_counters(platform: FakeAepPlatform) -> None:
    assert platform.faults_served == dict.fromkeys(FAULT_KINDS, 0)
    first = FaultPlan(rules=[FaultRule("5xx", routes="catalog", max_faults=1)])
    plans = [platform.fault_plan]
    platform.set_faults(first)
    plans.append(platform.fault_plan)
    assert plans == [None, first]
    assert get(platform, f"{CATALOG}/batches").status_code >= 500
    platform.set_faults(FaultPlan(rules=[FaultRule("429", routes="catalog")]))
    platform.add_fault(
        lambda r: (418, {}, b"hook") if r.query.get("limit") == "7" else None
    )
    assert get(platform, f"{CATALOG}/batches", params={"limit": "7"}).status_code == 418
    assert get(platform, f"{CATALOG}/batches").status_code == 429
    served = platform.faults_served  # counted across plans
    assert (served["5xx"], served["429"]) == (1, 1)
    platform.clear_faults()
    assert platform.fault_plan is None
    assert get(platform, f"{CATALOG}/batches", params={"limit": "7"}).status_code == 200
    assert platform.faults_served["429"] == 1


def test_a_plan_from_the_start() -> None:
    plan = FaultPlan.parse("429=1@catalog")
    with FakeAepPlatform.generate(faults=plan) as platform:
        assert platform.fault_plan is plan
        assert get(platform, f"{CATALOG}/batches").status_code == 429
    with FakeAepPlatform({DS: {}}, faults=plan) as platform:
        assert get(platform, f"{CATALOG}/dataSets").status_code == 429
