"""Translate ``requests``/``urllib3`` failures and HTTP statuses into the error tree.

One place decides what is retryable: network failures become
:class:`~aep_extract.errors.TransientNetworkError`, 401 :class:`Unauthorized`, 429
:class:`ThrottledError`, 5xx :class:`ServerError`, 404 :class:`NotFoundError`, any
other 4xx a plain :class:`ApiError`, and a 3xx (never followed) an
:class:`UntrustedLinkError` naming where it pointed. Messages name the method, path,
status, Adobe's error text and ``x-request-id``; they never carry headers, tokens or
request bodies, and a :class:`Redactor` blanks the secrets out of any text an error
body echoes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import quote, quote_plus, urlsplit

import requests
import urllib3.exceptions

from .._retry import parse_retry_after
from ..errors import (
    ApiError,
    NotFoundError,
    ServerError,
    SourceError,
    ThrottledError,
    TransientNetworkError,
    Unauthorized,
    UnknownHost,
    UntrustedLinkError,
)
from ._bodies import read_bounded

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


_E = TypeVar("_E", bound=BaseException)

_RECENT_TOKENS = 8
"""Access tokens a :class:`Redactor` remembers (the current one and a few before)."""


class Redactor:
    """Blanks secrets out of text: the client secret, raw and URL-encoded, and the
    access tokens issued lately. Thread-safe.

    Args:
        secrets: values never to show (empty ones are ignored).
    """

    def __init__(self, *secrets: str) -> None:
        self._lock = threading.Lock()
        self._fixed = _forms(secrets)
        self._tokens: deque[str] = deque(maxlen=_RECENT_TOKENS)

    def add_token(self, token: str) -> None:
        """Remember an access token to blank out."""
        with self._lock:
            self._tokens.append(token)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = self._fixed + _forms(self._tokens)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text


def _forms(values: Any) -> list[str]:
    """Each value as sent raw, in a query or path (%-encoded) and in a form (+ for
    spaces), longest first so that no form survives half-blanked."""
    forms = {
        form
        for value in values
        if value
        for form in (value, quote(value, safe=""), quote_plus(value))
    }
    return sorted(forms, key=len, reverse=True)


def _no_redaction(text: str) -> str:
    return text


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
            TLS stream, or a name lookup that failed for now.
        UnknownHost: the host name does not exist (the resolver says so).
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
        lookup = _cause(exc, socket.gaierror)
        if lookup is not None and lookup.errno in _NO_SUCH_NAME:
            host = urlsplit(url).hostname
            raise UnknownHost(
                f"{describe(method, url)}: host {host!r} does not resolve "
                f"({lookup.strerror}); check the URL"
            ) from None
        raise TransientNetworkError(_network_message(method, url, exc)) from _scrub(exc)
    except requests.RequestException as exc:
        raise SourceError(_network_message(method, url, exc)) from _scrub(exc)


_NO_SUCH_NAME = frozenset(
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),
    )
    if code is not None
)
"""Resolver answers that the name does not exist (EAI_AGAIN, a resolver failing
for now, is retried like any network failure)."""


def _network_message(method: str, url: str, exc: BaseException) -> str:
    """One line: the request, then the innermost cause's type and message
    (urllib3 nests it in two or three wrappers that repeat the host)."""
    refused = _cause(exc, ConnectionRefusedError)
    if refused is not None or _errno_in_chain(exc, errno.ECONNREFUSED):
        parts = urlsplit(url)
        return f"{describe(method, url)}: connection refused by {parts.netloc}"
    root = _innermost(exc)
    return f"{describe(method, url)}: {type(root).__name__}: {_one_line(root)}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it wraps: ``reason`` (urllib3), the first
    argument (requests), ``__cause__`` and ``__context__``; each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
        ]
        if current.args:
            inner.insert(0, current.args[0])
        todo.extend(e for e in inner if isinstance(e, BaseException))


def _cause(exc: BaseException, kind: type[_E]) -> Optional[_E]:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def _errno_in_chain(exc: BaseException, code: int) -> bool:
    return any(getattr(e, "errno", None) == code for e in _chain(exc))


def _innermost(exc: BaseException) -> BaseException:
    *_, last = _chain(exc)
    return last


def _scrub(exc: BaseException) -> BaseException:
    # A requests exception keeps the PreparedRequest, whose headers hold the bearer
    # token; drop it so the chained cause cannot leak it.
    if isinstance(exc, requests.RequestException):
        exc.request = None
        exc.response = None
    return exc


def check_response(
    response: requests.Response,
    method: str,
    redact: Callable[[str], str] = _no_redaction,
) -> None:
    """Raise the matching error for a 3xx, 4xx or 5xx response; return for others.

    The error body is read (at most 64 KiB) and the response closed; ``redact``
    blanks secrets out of the text the body contributes.

    Raises:
        UntrustedLinkError: a redirect (3xx), which is never followed.
        Unauthorized: 401.
        NotFoundError: 404.
        ThrottledError: 429, with ``retry_after`` from ``Retry-After``.
        ServerError: 5xx.
        ApiError: any other status of 400 or more.
    """
    status = response.status_code
    if 300 <= status < 400:
        response.close()
        raise UntrustedLinkError(
            f"{describe(method, response.url)}: HTTP {status} redirect to "
            f"{_redirect_target(response)}; not followed (requests go only to the "
            "configured origin)"
        )
    if status < 400:
        return
    request_id = response.headers.get("x-request-id")
    message = f"{describe(method, response.url)}: HTTP {status}"
    detail = redact(error_text(response))
    if detail:
        message += f" {detail}"
    if request_id:
        message += f" [x-request-id {request_id}]"
    fields: dict[str, Any] = {
        "status": status,
        "url": response.url,
        "request_id": request_id,
    }
    if status == 401:
        raise Unauthorized(message, **fields)
    if status == 404:
        raise NotFoundError(message, **fields)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise ThrottledError(message, retry_after=retry_after, **fields)
    if status >= 500:
        raise ServerError(message, **fields)
    raise ApiError(message, **fields)


def _redirect_target(response: requests.Response) -> str:
    """Where a redirect points, by host (a relative one: this origin's path)."""
    location = response.headers.get("Location", "")
    parts = urlsplit(location)
    if not location:
        return "nowhere (no Location header)"
    if not parts.netloc:
        return f"path {parts.path[:200]!r} of the same host"
    try:
        host = urllib3.util.parse_url(location).netloc or parts.netloc
    except ValueError:
        host = parts.netloc
    return f"host {host[:200]!r}"


def error_text(response: requests.Response) -> str:
    """Adobe's error text from a JSON error body, ``""`` if none; closes the response.

    Only known fields are quoted: a non-JSON body (a proxy's HTML page, say) might echo
    request headers, so it is never copied into a message.
    """
    try:
        raw = read_bounded(response, _MAX_ERROR_BODY, "error body")
    except (SourceError, requests.RequestException, urllib3.exceptions.HTTPError):
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
