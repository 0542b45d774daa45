"""What the hostile fault kinds do to a request or an answer, as pure functions.

The :class:`~._fake_faults.FaultInjector` decides when; these say what.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from typing import Any, Optional
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import attrs
from requests.structures import CaseInsensitiveDict

from . import _fake_api as api
from ._fake_http import JSON_TYPE, Delivery, FakeRequest, FakeResponse

DEFAULT_STYLE = "backslash"
"""How a ``foreign_link`` rule names the foreign host when it names no ``style``."""
DEFAULT_REDIRECT = 307
"""The status of a ``redirect`` rule without ``status``."""
DEFAULT_ENCODING = "gzip"
"""The ``Content-Encoding`` of an ``encoding`` rule without ``encoding``."""
DEFAULT_EXTRA = 16
"""Junk bytes an ``overlong`` rule without ``extra`` appends."""
DEFAULT_TRICKLE = 1.0
"""Bytes per second of a ``trickle`` rule without ``per_second``."""
DEFAULT_ECHO = 500
"""The status of an ``echo_secret`` rule without ``status``."""

_BATCHES = f"{api.CATALOG}/batches"
_DIRECTORY = re.compile(re.escape(f"{api.EXPORT}/files/") + r"[^/]+")
_JUNK = b"JUNK"
_ENDLESS_START = b'{"a":"'
_IGNORED = {
    "repeat_pages": ("start", "createdAfter"),
    "ignore_window": ("createdBefore",),
}


def target(request: FakeRequest) -> str:
    """The request's path and query, encoded again."""
    path = quote(request.path, safe="/")
    return f"{path}?{urlencode(request.query)}" if request.query else path


def origin(request: FakeRequest) -> str:
    """``http://`` and the ``Host`` the request named, as a server builds links."""
    return f"http://{request.headers.get('Host', '127.0.0.1')}"


# -- answers in place of the platform ---------------------------------------------


def redirect(
    request: FakeRequest, status: Optional[int], location: str
) -> FakeResponse:
    """A 3xx to ``location``, its ``{path}`` the request's path and query."""
    headers = {"Location": location.replace("{path}", target(request))}
    return FakeResponse(status or DEFAULT_REDIRECT, headers)


def echo_secret(
    request: FakeRequest, route: str, status: Optional[int]
) -> FakeResponse:
    """An error whose body repeats the secret the client sent: the token form's
    ``client_secret`` (decoded, and the form as sent), else ``Authorization``;
    in UTF-8 as it is, so that the very characters appear."""
    status = status or DEFAULT_ECHO
    sent = request.body.decode("utf-8", "replace")
    if route == "token":
        secret = (parse_qs(sent).get("client_secret") or [""])[-1]
        description = f"bad request client_secret={secret} raw body: {sent}"
        payload = {"error": "server_error", "error_description": description}
    else:
        authorization = request.headers.get("Authorization", "")
        payload = {
            "error_code": f"{status}050",
            "message": f"bad request Authorization: {authorization}",
        }
    body = json.dumps(payload, ensure_ascii=False).encode()  # no \u escapes
    headers = {"Content-Type": JSON_TYPE}
    if status == 429:
        headers["Retry-After"] = "0"
    return FakeResponse(status, headers, body)


def endless_body() -> FakeResponse:
    """200 JSON that starts a string and never ends it."""
    delivery = Delivery(length=False, endless=True)
    return FakeResponse(200, {"Content-Type": JSON_TYPE}, _ENDLESS_START, delivery)


def deep_directory(request: FakeRequest) -> Optional[FakeResponse]:
    """For a dataSetFileId listing, one directory entry of a new id (the id and
    ``-d``), so the tree nests without end; None for other requests."""
    if request.method != "GET" or not _DIRECTORY.fullmatch(request.path):
        return None
    child = request.path.rsplit("/", 1)[1] + "-d"
    item = {
        "dataSetFileId": child,
        "dataSetViewId": api.view_id(child),
        "version": "1.0.0",
        "created": "1718000000000",
        "updated": "1718000000000",
        "size": "0",
        "isValid": True,
        "_links": {"self": {"href": origin(request) + api.files_path(child)}},
    }
    return FakeResponse.json(200, {"data": [item], "_page": {"limit": 100, "count": 1}})


# -- changed requests --------------------------------------------------------------


def without_range(request: FakeRequest) -> Optional[FakeRequest]:
    """The request without its ``Range`` header; None if it has none."""
    if "Range" not in request.headers:
        return None
    headers = CaseInsensitiveDict(request.headers)
    del headers["Range"]
    return attrs.evolve(request, headers=headers)


def endless_query(request: FakeRequest, mode: str) -> Optional[FakeRequest]:
    """A Catalog batch listing without the parameters ``mode`` ignores; None for
    other requests and modes."""
    ignored = _IGNORED.get(mode, ())
    if not ignored or request.method != "GET" or request.path != _BATCHES:
        return None
    query = {k: v for k, v in request.query.items() if k not in ignored}
    return attrs.evolve(request, query=query)


# -- rewritten listings (each returns whether it changed the payload) ---------------


def foreign_links(payload: Any, host: str, style: Optional[str]) -> bool:
    """Point ``_links.next`` and each item's ``_links.self`` at ``host``."""
    changed = False
    for links in _links(payload):
        for name, link in links.items():
            if name in ("next", "self") and isinstance(link.get("href"), str):
                link["href"] = _foreign(link["href"], host, style or DEFAULT_STYLE)
                changed = True
    return changed


def _links(payload: Any) -> list[dict[str, Any]]:
    """The ``_links`` objects of a Data Access page and of its items."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return []
    owners = [payload, *payload["data"]]
    found = [owner.get("_links") for owner in owners if isinstance(owner, dict)]
    return [links for links in found if isinstance(links, dict)]


def _foreign(href: str, host: str, style: str) -> str:
    split = urlsplit(href)
    rest = href[len(f"{split.scheme}://{split.netloc}") :]
    if style == "absolute":
        return f"http://{host}{rest}"
    if style == "userinfo":
        return f"http://{split.netloc}@{host}{rest}"
    # urllib.parse reads the host after the "@"; urllib3 ends the host at the
    # backslash, so requests connects to the foreign one.
    return f"http://{host}\\@{split.netloc}{rest}"


def misreport(payload: Any, delta: int) -> bool:
    """Add ``delta`` to the ``length`` of each physical file item (at least 0)."""
    changed = False
    items = payload.get("data") if isinstance(payload, dict) else None
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("length"), str):
            try:
                length = int(item["length"])
            except ValueError:
                continue
            item["length"] = str(max(0, length + delta))
            changed = True
    return changed


def changing_next(payload: Any, request: FakeRequest) -> bool:
    """Give a Data Access page a ``_links.next`` to itself with ``page`` one more
    than the request's, so no two links of a walk are the same."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return False
    current = request.query.get("page", "0")
    page = int(current) + 1 if current.isdigit() else 1
    query = urlencode({**request.query, "page": str(page)})
    href = f"{origin(request)}{quote(request.path, safe='/')}?{query}"
    payload["_links"] = {**payload.get("_links", {}), "next": {"href": href}}
    return True


# -- changed bytes -------------------------------------------------------------------


def encode(response: FakeResponse, encoding: Optional[str]) -> FakeResponse:
    """The body compressed, with ``Content-Encoding`` (``Content-Range`` kept)."""
    encoding = encoding or DEFAULT_ENCODING
    data = bytes(response.body)
    body = gzip.compress(data, mtime=0) if encoding == "gzip" else zlib.compress(data)
    headers = {**response.headers, "Content-Encoding": encoding}
    return attrs.evolve(response, headers=headers, body=body)


def overlong(response: FakeResponse, extra: Optional[int]) -> FakeResponse:
    """The body with junk bytes after it (``Content-Range`` kept)."""
    count = extra or DEFAULT_EXTRA
    junk = (_JUNK * (count // len(_JUNK) + 1))[:count]
    return attrs.evolve(response, body=bytes(response.body) + junk)
