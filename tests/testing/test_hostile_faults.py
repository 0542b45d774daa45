"""Hostile fault kinds and the trap host, seen on the wire with plain HTTP clients."""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import quote_plus, urlsplit

import pytest
import requests

from aep_extract.testing import (
    FakeAepPlatform,
    FakeBatch,
    FakeDataSetFile,
    FakeFile,
    FaultPlan,
    FaultRule,
    ForeignHost,
)
from aep_extract.testing._fake_faults import FaultInjector
from aep_extract.testing._fake_http import FakeResponse

from .test_faults import download

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
DS = "5e8f81cf7a4ecb28a8d85b22"
T0 = 1_718_000_000_000
BODY = bytes(range(256)) * 400  # 102400 bytes
SMALL = b'{"x":1}'
SECRET = "s3cr3t+/&= é"


# -- rules and the spec ----------------------------------------------------------------


def test_defaults_and_scopes() -> None:
    assert FaultRule("foreign_link", host="h:1").scope == ("listing",)
    assert FaultRule("redirect", location="/x").scope == (
        "catalog",
        "listing",
        "download",
    )
    assert FaultRule("redirect", location="/x", routes="token").scope == ("token",)
    for kind in ("encoding", "close_delimited", "ignore_range", "overlong"):
        assert FaultRule(kind).scope == ("download",)
        assert FaultRule(kind).probability == 1.0
    assert FaultRule("close_delimited", routes="token+catalog").scope == (
        "token",
        "catalog",
    )
    assert FaultRule("misreport", delta=-1).scope == ("listing",)
    assert FaultRule("trickle").scope == ("catalog", "listing", "download")
    assert FaultRule("latency", delay=1).scope == (
        "token",
        "catalog",
        "listing",
        "download",
    )
    assert FaultRule("endless", mode="deep_dirs").scope == ("catalog", "listing")
    assert FaultRule("endless_body").scope == ("catalog",)
    assert FaultRule("echo_secret").scope == ("token",)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("foreign_link", {}, "foreign_link faults need 'host'"),
        ("foreign_link", {"host": "evil"}, "host must be HOST:PORT, got 'evil'"),
        ("foreign_link", {"host": "a b:1"}, "host must be HOST:PORT"),
        ("foreign_link", {"host": 7}, "host must be HOST:PORT, got 7"),
        ("foreign_link", {"host": "h:1", "style": "odd"}, "unknown link style 'odd'"),
        (
            "foreign_link",
            {"host": "h:1", "routes": "download"},
            "foreign_link faults apply to the listing route only",
        ),
        ("redirect", {}, "redirect faults need 'location'"),
        ("redirect", {"location": "ftp://x/"}, "location must be an http"),
        ("redirect", {"location": "x{path}"}, "location must be an http"),
        ("redirect", {"location": "http://a/\r\nX-Evil: 1"}, "location must be"),
        ("redirect", {"location": 'http://a/"'}, "location must be"),
        (
            "redirect",
            {"location": "/x", "status": 304},
            "unknown status 304 for redirect faults (expected one of 301, 302, 303, "
            "307, 308)",
        ),
        ("echo_secret", {"status": 404}, "unknown status 404 for echo_secret"),
        ("5xx", {"status": 429}, "unknown status 429 for 5xx"),
        ("encoding", {"encoding": "br"}, "unknown encoding 'br'"),
        ("misreport", {}, "misreport faults need 'delta'"),
        ("misreport", {"delta": 0}, "delta must be a whole number other than 0"),
        ("misreport", {"delta": 1.5}, "delta must be a whole number"),
        ("overlong", {"extra": 0}, "extra must be at least 1"),
        ("trickle", {"per_second": 0}, "per_second must be more than 0"),
        ("latency", {}, "latency faults need 'delay'"),
        ("latency", {"delay": 0}, "latency faults need a delay of more than 0"),
        ("endless", {}, "endless faults need 'mode'"),
        ("endless", {"mode": "forever"}, "unknown endless mode 'forever'"),
        (
            "endless",
            {"mode": "deep_dirs", "routes": "download"},
            "apply to the catalog+listing routes only",
        ),
        ("overlong", {"delta": 1}, "option 'delta' does not apply to overlong"),
        ("ignore_range", {"extra": 1}, "option 'extra' does not apply"),
        ("429", {"host": "h:1"}, "option 'host' does not apply to 429"),
    ],
)
def test_rules_reject(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FaultRule(kind, **options)


def test_the_spec_reads_every_hostile_kind() -> None:
    plan = FaultPlan.parse(
        "foreign_link=1:host=127.0.0.1:9999:style=userinfo,"
        "redirect=0.5@token+download:status=302:location=http://127.0.0.1:9{path},"
        "encoding=1:encoding=deflate,misreport=1:delta=-3,close_delimited=1@catalog,"
        "ignore_range=0.2,overlong=1:extra=3,trickle=1:per_second=20,"
        "latency=1:delay=0.5,endless=1:mode=changing_next,endless_body=0.1,"
        "echo_secret=1:status=429"
    )
    assert plan.rules == (
        FaultRule("foreign_link", host="127.0.0.1:9999", style="userinfo"),
        FaultRule(
            "redirect",
            probability=0.5,
            routes="token+download",
            status=302,
            location="http://127.0.0.1:9{path}",
        ),
        FaultRule("encoding", encoding="deflate"),
        FaultRule("misreport", delta=-3),
        FaultRule("close_delimited", routes="catalog"),
        FaultRule("ignore_range", probability=0.2),
        FaultRule("overlong", extra=3),
        FaultRule("trickle", per_second=20),
        FaultRule("latency", delay=0.5),
        FaultRule("endless", mode="changing_next"),
        FaultRule("endless_body", probability=0.1),
        FaultRule("echo_secret", status=429),
    )
    assert FaultPlan.parse(plan.to_spec()) == plan


@pytest.mark.parametrize(
    ("location", "item"),
    [
        ("/x{path}", "redirect=1:location=/x{path}"),
        ("http://a@b.c:1/x", "redirect=1:location=http://a@b.c:1/x"),
        # Values that would read as more than one modifier go in double quotes.
        ("http://a@b:1/x", 'redirect=1:location="http://a@b:1/x"'),
        ("/a,b", 'redirect=1:location="/a,b"'),
        ("/a:max=3", 'redirect=1:location="/a:max=3"'),
    ],
)
def test_locations_round_trip(location: str, item: str) -> None:
    rule = FaultRule("redirect", location=location)
    assert rule.to_spec() == item
    assert FaultPlan.parse(item).rules == (rule,)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("foreign_link=1:host=evil", "item 'foreign_link=1:host=evil': host must be"),
        ('redirect=1:location="/x', "unclosed double quote"),
        ('redirect=1:location=/x"y"', "a double quote only encloses a value"),
        ("redirect=1:location=/x:status=200", "unknown status 200 for redirect"),
        ("misreport=1:delta=x", "delta 'x' is not a whole number"),
        ("endless=1", "endless faults need 'mode'"),
        ("endless=1:mode=deep", "unknown endless mode 'deep'"),
        ("latency=1:delay=soon", "delay 'soon' is not a number"),
        ("trickle=1:per_second=0", "per_second must be more than 0"),
        ("overlong=1:extra=-1", "extra must be at least 1"),
        ("foreign_link=1:host=h:1@download", "apply to the listing route only"),
    ],
)
def test_spec_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.parse(spec)


def test_hostile_kinds_follow_the_seed() -> None:
    plan = FaultPlan(
        rules=[FaultRule("redirect", probability=0.5, location="/x")], seed=3
    )

    def statuses() -> list[int]:
        injector = FaultInjector(plan)
        ok = FakeResponse(200, {}, b"x")
        traffic = [download(f"f{i}") for i in range(40)]
        return [injector.handle(r, lambda *_: ok, lambda: None).status for r in traffic]

    first = statuses()
    assert first == statuses()
    assert set(first) == {200, 307}


# -- over HTTP -------------------------------------------------------------------------


@pytest.fixture
def platform() -> Iterator[FakeAepPlatform]:
    """Six batches; the first has two dataSetFileIds, one with a 100 KiB file."""
    files = [FakeFile("big.parquet", BODY), FakeFile("small.json", SMALL)]
    first = [FakeDataSetFile("b0-1", files), FakeDataSetFile("b0-2", [])]
    batches = [FakeBatch("b0", DS, "success", T0, first)] + [
        FakeBatch(f"b{i}", DS, "success", T0 + i * 1000) for i in range(1, 6)
    ]
    with FakeAepPlatform({DS: {"name": "events"}}, batches) as started:
        yield started


@pytest.fixture
def trap() -> Iterator[ForeignHost]:
    with ForeignHost() as started:
        yield started


def use(platform: FakeAepPlatform, *rules: FaultRule) -> None:
    platform.set_faults(FaultPlan(rules=rules))


def get(platform: FakeAepPlatform, path: str, **kwargs: Any) -> requests.Response:
    headers = {**platform.auth_headers(), **kwargs.pop("headers", {})}
    url = path if path.startswith("http") else platform.url + path
    response: requests.Response = requests.get(
        url, headers=headers, timeout=10, allow_redirects=False, **kwargs
    )
    return response


def get_file(
    platform: FakeAepPlatform, name: str = "big.parquet", **kwargs: Any
) -> requests.Response:
    return get(platform, f"{EXPORT}/files/b0-1", params={"path": name}, **kwargs)


def compressed(response: requests.Response) -> bytes:
    """The body as sent, not decoded."""
    data: bytes = response.raw.read(decode_content=False)
    return data


def batch_ids(platform: FakeAepPlatform, **query: str) -> list[str]:
    params = {"dataSet": DS, "orderBy": "asc:created", **query}
    return list(get(platform, f"{CATALOG}/batches", params=params).json())


class Wire:
    """A bare HTTP/1.1 exchange on a socket: the request goes out at once, the
    answer is read on demand."""

    def __init__(self, platform: FakeAepPlatform, target: str) -> None:
        host, port = platform.url[len("http://") :].split(":")
        headers = "".join(f"{k}: {v}\r\n" for k, v in platform.auth_headers().items())
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sent = time.monotonic()
        self.sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode()
        )
        self.data = bytearray()
        self.ended: Optional[str] = None

    def read(self, until: Optional[float] = None, size: Optional[int] = None) -> None:
        """Read until the connection ends, ``until`` (monotonic) passes or ``size``
        bytes arrived in all."""
        while self.ended is None and (size is None or len(self.data) < size):
            if until is not None:
                left = until - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
            try:
                piece = self.sock.recv(65536)
            except socket.timeout:
                return
            except OSError as exc:
                self.ended = type(exc).__name__
                return
            if not piece:
                self.ended = "eof"
            self.data += piece

    @property
    def head(self) -> bytes:
        return bytes(self.data).partition(b"\r\n\r\n")[0]

    @property
    def body(self) -> bytes:
        return bytes(self.data).partition(b"\r\n\r\n")[2]

    def close(self) -> None:
        self.sock.close()


def new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    return set(threading.enumerate()) - before


def assert_ended(threads: set[threading.Thread]) -> None:
    assert threads
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


# -- foreign links ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "link"),
    [
        ("absolute", "http://{trap}{rest}"),
        ("backslash", "http://{trap}\\@{platform}{rest}"),
        ("userinfo", "http://{platform}@{trap}{rest}"),
    ],
)
def test_foreign_links_point_at_the_other_host(
    platform: FakeAepPlatform, trap: ForeignHost, style: str, link: str
) -> None:
    use(platform, FaultRule("foreign_link", host=trap.netloc, style=style))
    netloc = platform.url[len("http://") :]

    def expected(rest: str) -> str:
        return link.format(trap=trap.netloc, platform=netloc, rest=rest)

    page = get(platform, f"{EXPORT}/batches/b0/files", params={"limit": "1"}).json()
    assert page["_links"]["next"]["href"] == expected(
        f"{EXPORT}/batches/b0/files?start=1&limit=1"
    )
    assert [item["_links"]["self"]["href"] for item in page["data"]] == [
        expected(f"{EXPORT}/files/b0-1")
    ]
    files = get(platform, f"{EXPORT}/files/b0-1").json()["data"]
    assert [item["_links"]["self"]["href"] for item in files] == [
        expected(f"{EXPORT}/files/b0-1?path=big.parquet"),
        expected(f"{EXPORT}/files/b0-1?path=small.json"),
    ]
    assert platform.faults_served["foreign_link"] == 2
    # Other routes keep their answers.
    assert get_file(platform).content == BODY
    assert "_links" not in json.dumps(get(platform, f"{CATALOG}/batches").json())
    assert not trap.requests


def test_a_backslash_link_fools_urllib_parse_but_not_requests(
    platform: FakeAepPlatform, trap: ForeignHost
) -> None:
    use(platform, FaultRule("foreign_link", host=trap.netloc))
    page = get(platform, f"{EXPORT}/batches/b0/files", params={"limit": "1"}).json()
    link = page["_links"]["next"]["href"]
    assert urlsplit(link).hostname == "127.0.0.1"
    assert urlsplit(link).port == urlsplit(platform.url).port  # looks like ours
    answer = get(platform, link)  # a naive client follows it with its token
    assert answer.content == b"EVIL"
    [stolen] = trap.requests
    assert stolen.headers["Authorization"].startswith("Bearer ")
    assert stolen.path.endswith(f"{EXPORT}/batches/b0/files")


# -- redirects -------------------------------------------------------------------------


def test_redirect_answers_3xx_with_the_location(
    platform: FakeAepPlatform, trap: ForeignHost
) -> None:
    use(platform, FaultRule("redirect", location=trap.url + "{path}"))
    answer = get_file(platform, "small.json")
    assert answer.status_code == 307
    location = f"{trap.url}{EXPORT}/files/b0-1?path=small.json"
    assert answer.headers["Location"] == location
    assert answer.content == b""
    followed = requests.get(
        platform.url + f"{EXPORT}/files/b0-1",
        params={"path": "small.json"},
        headers=platform.auth_headers(),
        timeout=10,
    )
    assert followed.content == b"EVIL"  # requests follows to the other host
    assert [r.path for r in trap.requests] == [f"{EXPORT}/files/b0-1"]
    assert platform.faults_served["redirect"] == 2


def test_redirect_of_the_token_request(platform: FakeAepPlatform) -> None:
    rule = FaultRule(
        "redirect", status=308, location="/elsewhere{path}", routes="token"
    )
    use(platform, rule)
    answer = requests.post(
        f"{platform.url}/ims/token/v3",
        data={"grant_type": "client_credentials"},
        timeout=10,
        allow_redirects=False,
    )
    assert (answer.status_code, answer.headers["Location"]) == (
        308,
        "/elsewhere/ims/token/v3",
    )
    assert get(platform, f"{CATALOG}/batches").status_code == 200


# -- bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "decompress"),
    [(None, gzip.decompress), ("gzip", gzip.decompress), ("deflate", zlib.decompress)],
)
def test_encoding_compresses_the_body(
    platform: FakeAepPlatform, encoding: Optional[str], decompress: Any
) -> None:
    use(platform, FaultRule("encoding", encoding=encoding))
    whole = get_file(platform, stream=True)
    sent = compressed(whole)
    assert whole.headers["Content-Encoding"] == (encoding or "gzip")
    assert whole.headers["Content-Length"] == str(len(sent))
    assert len(sent) < len(BODY)
    assert decompress(sent) == BODY
    part = get_file(platform, stream=True, headers={"Range": "bytes=100-1099"})
    sent = compressed(part)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(BODY)}"  # unchanged
    assert part.headers["Content-Length"] == str(len(sent))
    assert len(sent) != 1000
    assert decompress(sent) == BODY[100:1100]
    assert platform.faults_served["encoding"] == 2


def test_misreport_changes_the_listed_lengths(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("misreport", delta=7))
    items = get(platform, f"{EXPORT}/files/b0-1").json()["data"]
    assert [item["length"] for item in items] == [str(len(BODY) + 7), "14"]
    use(platform, FaultRule("misreport", delta=-10))
    items = get(platform, f"{EXPORT}/files/b0-1").json()["data"]
    assert [item["length"] for item in items] == [str(len(BODY) - 10), "0"]
    # Lists of dataSetFileIds have sizes, not lengths: nothing to misreport.
    batch = get(platform, f"{EXPORT}/batches/b0/files").json()["data"]
    assert [item["size"] for item in batch] == [str(len(BODY) + len(SMALL)), "0"]
    assert platform.faults_served["misreport"] == 2


def test_close_delimited_sends_no_length_and_closes(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("close_delimited"))
    wire = Wire(platform, f"{EXPORT}/files/b0-1?path=big.parquet")
    wire.read()
    wire.close()
    assert b"content-length" not in wire.head.lower()
    assert b"Connection: close" in wire.head
    assert (wire.body, wire.ended) == (BODY, "eof")
    assert get_file(platform).content == BODY  # a client reading to the close
    assert platform.faults_served["close_delimited"] == 2


def test_ignore_range_answers_the_whole_file(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("ignore_range"))
    answer = get_file(platform, headers={"Range": "bytes=0-99"})
    assert answer.status_code == 200
    assert "Content-Range" not in answer.headers
    assert answer.content == BODY
    assert get_file(platform).content == BODY  # no Range: nothing to ignore
    assert platform.faults_served["ignore_range"] == 1
    assert platform.requests[-2].headers["Range"] == "bytes=0-99"  # as it came


def test_overlong_appends_junk(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("overlong"))
    whole = get_file(platform)
    assert whole.headers["Content-Length"] == str(len(BODY) + 16)
    assert whole.content == BODY + b"JUNK" * 4
    use(platform, FaultRule("overlong", extra=5))
    part = get_file(platform, headers={"Range": "bytes=0-99"})
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(BODY)}"
    assert part.content == BODY[:100] + b"JUNKJ"
    assert platform.faults_served["overlong"] == 2


def test_json_rewrites_bytes_and_delivery_compose(
    platform: FakeAepPlatform,
) -> None:
    use(
        platform,
        FaultRule("close_delimited", routes="listing"),
        FaultRule("encoding", routes="listing"),
        FaultRule("misreport", delta=1),
    )
    answer = get(platform, f"{EXPORT}/files/b0-1", stream=True)
    assert "Content-Length" not in answer.headers
    items = json.loads(gzip.decompress(compressed(answer)))["data"]
    assert items[1]["length"] == "8"
    served = platform.faults_served
    assert (served["misreport"], served["encoding"], served["close_delimited"]) == (
        1,
        1,
        1,
    )


# -- time ------------------------------------------------------------------------------


def test_trickle_sends_a_few_bytes_a_second(platform: FakeAepPlatform) -> None:
    before = set(threading.enumerate())
    use(platform, FaultRule("trickle", per_second=20))
    wire = Wire(platform, f"{EXPORT}/files/b0-1?path=big.parquet")
    wire.read(size=1)
    wire.read(until=time.monotonic() + 0.5)
    elapsed = time.monotonic() - wire.sent
    assert f"Content-Length: {len(BODY)}".encode() in wire.head
    received = len(wire.body)
    assert 0 < received <= 2 + 20 * elapsed  # sent at 20 bytes per second at most
    assert wire.body == BODY[:received]
    assert wire.ended is None  # still going
    senders = new_threads(before)
    wire.close()  # the client hangs up: the sender notices and ends
    assert_ended(senders)
    assert platform.faults_served["trickle"] == 1


def test_stop_ends_a_trickle_and_an_endless_body(platform: FakeAepPlatform) -> None:
    before = set(threading.enumerate())
    use(platform, FaultRule("trickle", routes="download"), FaultRule("endless_body"))
    trickle = Wire(platform, f"{EXPORT}/files/b0-1?path=big.parquet")
    endless = Wire(platform, f"{CATALOG}/batches")
    trickle.read(size=1)
    endless.read(size=100_000)
    senders = new_threads(before)
    platform.stop()
    assert_ended(senders)  # neither writes on at 1 byte a second, or forever
    for wire in (trickle, endless):
        wire.read()
        assert wire.ended is not None
        wire.close()


def test_latency_holds_the_whole_answer(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("latency", delay=0.3, routes="catalog"))
    started = time.monotonic()
    answer = get(platform, f"{CATALOG}/batches")
    assert time.monotonic() - started >= 0.3
    assert answer.status_code == 200
    assert len(answer.json()) == 6
    assert platform.faults_served["latency"] == 1


def test_latency_delays_a_fault_answer_too(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("latency", delay=0.2), FaultRule("5xx", status=503))
    started = time.monotonic()
    assert get(platform, f"{CATALOG}/batches").status_code == 503
    assert time.monotonic() - started >= 0.2


def test_stop_ends_a_long_latency(platform: FakeAepPlatform) -> None:
    before = set(threading.enumerate())
    use(platform, FaultRule("latency", delay=60))
    wire = Wire(platform, f"{CATALOG}/batches")
    wire.read(until=time.monotonic() + 0.2)
    assert wire.data == b""  # not even a status line yet
    waiting = new_threads(before)
    platform.stop()
    assert_ended(waiting)
    wire.read()
    assert (bytes(wire.data), wire.ended) == (b"", "eof")
    wire.close()


def test_a_client_hanging_up_ends_a_long_latency(platform: FakeAepPlatform) -> None:
    before = set(threading.enumerate())
    use(platform, FaultRule("latency", delay=60))
    wire = Wire(platform, f"{CATALOG}/batches")
    wire.read(until=time.monotonic() + 0.1)
    waiting = new_threads(before)
    wire.close()
    assert_ended(waiting)  # it did not wait on for a minute
    assert platform.running


# -- endless walks ---------------------------------------------------------------------


def test_repeat_pages_answers_the_first_page_whatever_the_cursor(
    platform: FakeAepPlatform,
) -> None:
    use(platform, FaultRule("endless", mode="repeat_pages"))
    cursors: list[dict[str, str]] = [
        {},
        {"start": "2"},
        {"start": "4"},
        {"createdAfter": str(T0 + 1500)},
        {"start": "2", "createdAfter": str(T0 + 3500)},
    ]
    pages = [batch_ids(platform, limit="2", **cursor) for cursor in cursors]
    assert pages == [["b0", "b1"]] * 5
    assert platform.faults_served["endless"] == 5


def test_ignore_window_lists_batches_past_created_before(
    platform: FakeAepPlatform,
) -> None:
    window = {"createdAfter": str(T0 - 1), "createdBefore": str(T0 + 2500)}
    assert batch_ids(platform, **window) == ["b0", "b1", "b2"]
    use(platform, FaultRule("endless", mode="ignore_window"))
    assert batch_ids(platform, **window) == ["b0", "b1", "b2", "b3", "b4", "b5"]


def test_changing_next_never_ends_a_listing(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("endless", mode="changing_next"))
    url = f"{EXPORT}/batches/b0/files"
    links, pages = [], []
    for _ in range(5):
        page = get(platform, url).json()
        pages.append([item["dataSetFileId"] for item in page["data"]])
        url = page["_links"]["next"]["href"]
        links.append(url)
    assert pages == [["b0-1", "b0-2"]] * 5
    assert len(set(links)) == 5
    assert links[0] == f"{platform.url}{EXPORT}/batches/b0/files?page=1"
    assert links[4].endswith("?page=5")
    assert platform.faults_served["endless"] == 5


def test_deep_dirs_nest_without_end(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("endless", mode="deep_dirs"))
    url, seen = f"{EXPORT}/files/b0-1", []
    for _ in range(5):
        [item] = get(platform, url).json()["data"]
        seen.append(item["dataSetFileId"])
        url = item["_links"]["self"]["href"]
    assert seen == ["b0-1" + "-d" * depth for depth in range(1, 6)]
    assert url == f"{platform.url}{EXPORT}/files/b0-1{'-d' * 5}"
    assert get_file(platform).content == BODY  # downloads are left alone
    assert platform.faults_served["endless"] == 5


def test_an_endless_body_goes_on(platform: FakeAepPlatform) -> None:
    use(platform, FaultRule("endless_body"))
    wire = Wire(platform, f"{CATALOG}/batches")
    wire.read(size=1024 * 1024)
    assert wire.head.startswith(b"HTTP/1.1 200")
    assert b"application/json" in wire.head
    assert b"content-length" not in wire.head.lower()
    assert b"Connection: close" in wire.head
    assert wire.body.startswith(b'{"a":"')
    assert len(wire.body) >= 1024 * 1024 - len(wire.head) - 4
    wire.read(size=len(wire.data) + 1)
    assert wire.ended is None  # still going after a megabyte
    wire.close()
    assert platform.faults_served["endless_body"] == 1


# -- secrets ---------------------------------------------------------------------------


def token_form(platform: FakeAepPlatform, secret: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": platform.client_id,
        "client_secret": secret,
        "scope": platform.scopes,
    }


@pytest.mark.parametrize("status", [None, 429, 503])
def test_echo_secret_repeats_the_client_secret(
    platform: FakeAepPlatform, status: Optional[int]
) -> None:
    use(platform, FaultRule("echo_secret", status=status))
    answer = requests.post(
        f"{platform.url}/ims/token/v3", data=token_form(platform, SECRET), timeout=10
    )
    assert answer.status_code == (status or 500)
    assert answer.json()["error"] == "server_error"
    assert SECRET in answer.text  # as it is, not even escaped
    assert quote_plus(SECRET) in answer.text
    assert answer.headers.get("Retry-After") == ("0" if status == 429 else None)
    assert get(platform, f"{CATALOG}/batches").status_code == 200  # token route only


def test_echo_secret_on_the_platform_repeats_the_token(
    platform: FakeAepPlatform,
) -> None:
    use(platform, FaultRule("echo_secret", routes="catalog"))
    headers = platform.auth_headers()
    answer = get(platform, f"{CATALOG}/batches", headers=headers)
    assert answer.status_code == 500
    token = headers["Authorization"].split()[1]
    assert token in answer.json()["message"]


# -- the trap host ---------------------------------------------------------------------


def test_the_trap_host_records_and_serves_evil(trap: ForeignHost) -> None:
    assert trap.url == f"http://{trap.netloc}"
    assert trap.netloc.startswith("127.0.0.1:")
    part = requests.get(
        f"{trap.url}/any/path", params={"q": "1"}, headers={"Range": "bytes=5-12"}
    )
    assert part.status_code == 206
    assert part.content == b"VILEVILE"  # bytes 5..12 of EVIL repeated
    assert part.headers["Content-Range"] == "bytes 5-12/*"
    assert requests.get(f"{trap.url}/x", timeout=10).content == b"EVIL"
    token = requests.post(f"{trap.url}/ims/token/v3", data={"a": "b"}, timeout=10)
    assert token.json()["token_type"] == "bearer"
    assert token.json()["access_token"]
    first, second, third = trap.requests
    assert (first.method, first.path, first.query) == ("GET", "/any/path", {"q": "1"})
    assert first.headers["Range"] == "bytes=5-12"
    assert (second.method, second.path) == ("GET", "/x")
    assert (third.method, third.body) == ("POST", b"a=b")
    trap.clear_requests()
    assert trap.requests == []
    assert "ForeignHost(http://127.0.0.1:" in repr(trap)


def test_the_trap_host_serves_a_large_range_exactly(trap: ForeignHost) -> None:
    answer = requests.get(
        trap.url, headers={"Range": f"bytes=2-{2 + 4 * 1024 * 1024 - 1}"}, timeout=10
    )
    assert len(answer.content) == 4 * 1024 * 1024
    assert answer.content.startswith(b"ILEVIL")


def test_the_trap_host_lifecycle() -> None:
    trap = ForeignHost()
    with pytest.raises(RuntimeError, match="not running"):
        _ = trap.url
    with trap:
        with pytest.raises(RuntimeError, match="already running"):
            trap.start()
        url = trap.url
    assert repr(trap) == "ForeignHost(stopped, requests=0)"
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
