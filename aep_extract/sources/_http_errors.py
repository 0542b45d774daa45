"""Translate ``requests``/``urllib3`` failures and HTTP statuses into the error tree.

One place decides what is retryable: network failures become
:class:`~aep_extract.errors.TransientNetworkError`, 429 :class:`ThrottledError`, 5xx
:class:`ServerError`, 404 :class:`NotFoundError`, any other 4xx a plain
:class:`ApiError`. Messages name the method, path, status, Adobe's error text and
``x-request-id``; they never carry headers, tokens or request bodies.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from .._retry import parse_retry_after
from ..errors import (
    ApiError,
    IncompleteDownload,
    InvalidResponse,
    NotFoundError,
    ServerError,
    SourceError,
    ThrottledError,
    TransientNetworkError,
)

_MAX_ERROR_BODY = 64 * 1024
"""Bytes of an error body read for its message: error bodies are small; stay bounded."""

_ERROR_FIELDS = (
    "error_code",
    "error",
    "title",
    "message",
    "detail",
    "error_description",
)
"""Fields of Adobe's three error shapes (gateway, problem details, IMS), in order."""

_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
)


def describe(method: str, url: str) -> str:
    """``"GET /path?query"``: how messages name a request (the client puts no
    secrets in URLs)."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{method} {parts.path or '/'}{query}"


@contextlib.contextmanager
def map_requests_errors(method: str, url: str) -> Iterator[None]:
    """Re-raise ``requests``/``urllib3`` exceptions raised inside as our errors.

    Raises:
        TransientNetworkError: connection refused/reset, timeout, broken body or
            TLS stream.
        SourceError: any other ``requests`` failure (bad URL, certificate check).
    """
    try:
        yield
    except requests.exceptions.SSLError as exc:
        # A failed certificate check does not heal by retrying; a TLS stream cut
        # short (unexpected EOF, reset) does.
        verify_failed = "CERTIFICATE_VERIFY_FAILED" in str(exc)
        error = SourceError if verify_failed else TransientNetworkError
        raise error(_network_message(method, url, exc)) from _scrub(exc)
    except _TRANSIENT as exc:
        raise TransientNetworkError(_network_message(method, url, exc)) from _scrub(exc)
    except requests.RequestException as exc:
        raise SourceError(_network_message(method, url, exc)) from _scrub(exc)


def _network_message(method: str, url: str, exc: BaseException) -> str:
    return f"{describe(method, url)}: {type(exc).__name__}: {exc}"


def _scrub(exc: BaseException) -> BaseException:
    # A requests exception keeps the PreparedRequest, whose headers hold the bearer
    # token; drop it so the chained cause cannot leak it.
    if isinstance(exc, requests.RequestException):
        exc.request = None
        exc.response = None
    return exc


def check_response(response: requests.Response, method: str) -> None:
    """Raise the matching error for a 4xx/5xx response; return for anything else.

    The error body is read (at most 64 KiB) and the response closed.

    Raises:
        NotFoundError: 404.
        ThrottledError: 429, with ``retry_after`` from ``Retry-After``.
        ServerError: 5xx.
        ApiError: any other status of 400 or more.
    """
    status = response.status_code
    if status < 400:
        return
    request_id = response.headers.get("x-request-id")
    message = f"{describe(method, response.url)}: HTTP {status}"
    detail = error_text(response)
    if detail:
        message += f" {detail}"
    if request_id:
        message += f" [x-request-id {request_id}]"
    fields: dict[str, Any] = {
        "status": status,
        "url": response.url,
        "request_id": request_id,
    }
    if status == 404:
        raise NotFoundError(message, **fields)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise ThrottledError(message, retry_after=retry_after, **fields)
    if status >= 500:
        raise ServerError(message, **fields)
    raise ApiError(message, **fields)


def error_text(response: requests.Response) -> str:
    """Adobe's error text from a JSON error body, ``""`` if none; closes the response.

    Only known fields are quoted: a non-JSON body (a proxy's HTML page, say) might echo
    request headers, so it is never copied into a message.
    """
    try:
        raw = next(response.iter_content(_MAX_ERROR_BODY), b"")
    except (requests.RequestException, urllib3.exceptions.HTTPError):
        return ""
    finally:
        response.close()
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    texts = [_one_line(body[key]) for key in _ERROR_FIELDS if body.get(key)]
    return ": ".join(texts)


def _one_line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json(response: requests.Response, method: str) -> Any:
    """The JSON body of a successful response.

    Raises:
        IncompleteDownload: the body is shorter than its ``Content-Length`` (urllib3
            1.x does not check; the answer is retried like any short body).
        InvalidResponse: the body is not JSON.
    """
    announced = response.headers.get("Content-Length", "")
    encoded = response.headers.get("Content-Encoding", "identity") != "identity"
    if not encoded and announced.isdigit() and len(response.content) < int(announced):
        raise IncompleteDownload(
            f"{describe(method, response.url)}: body ended after "
            f"{len(response.content)} of {announced} bytes"
        )
    try:
        return json.loads(response.content)
    except ValueError:
        raise InvalidResponse(
            f"{describe(method, response.url)}: HTTP {response.status_code} "
            "answer is not valid JSON"
        ) from None
