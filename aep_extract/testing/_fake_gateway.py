"""The fake IMS token endpoint and the platform gateway's header checks."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Optional
from urllib.parse import parse_qs

from ._fake_api import Problem
from ._fake_http import FakeRequest, FakeResponse

IMS_TOKEN_PATH = "/ims/token/v3"


def _gateway_error(status: int, code: str, message: str) -> FakeResponse:
    return FakeResponse.json(status, {"error_code": code, "message": message})


def _ims_error(status: int, error: str, description: str) -> FakeResponse:
    return FakeResponse.json(status, {"error": error, "error_description": description})


class FakeGateway:
    """Issues OAuth server-to-server tokens and checks every platform call's headers.

    Tokens are random and opaque; each lives ``token_ttl`` seconds (monotonic clock)
    or until :meth:`expire_tokens`.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        org_id: str,
        sandbox: str,
        token_ttl: int,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.org_id = org_id
        self.sandbox = sandbox
        self.token_ttl = token_ttl
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._issued = 0

    @property
    def tokens_issued(self) -> int:
        """Number of tokens issued so far."""
        with self._lock:
            return self._issued

    def issue_token(self) -> str:
        """A new valid token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
            self._issued += 1
        return token

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far."""
        with self._lock:
            self._tokens.clear()

    def token_valid(self, token: str) -> bool:
        """Whether a token was issued and is neither expired nor revoked."""
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def token_endpoint(self, request: FakeRequest) -> FakeResponse:
        """``POST /ims/token/v3``: form body (or query string) of client credentials."""
        if request.method != "POST":
            return _ims_error(405, "invalid_request", "method not allowed")
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        params = {**request.query, **{key: values[-1] for key, values in form.items()}}
        grant_type = params.get("grant_type")
        if not grant_type:
            return _ims_error(400, "invalid_request", "missing grant_type parameter")
        if grant_type != "client_credentials":
            return _ims_error(400, "unsupported_grant_type", "invalid grant_type")
        if not params.get("client_id"):
            return _ims_error(400, "invalid_request", "missing client_id parameter")
        if params["client_id"] != self.client_id:
            return _ims_error(400, "invalid_client", "invalid client_id parameter")
        if params.get("client_secret") != self.client_secret:
            return _ims_error(401, "invalid_client", "invalid client_secret parameter")
        if not params.get("scope"):
            return _ims_error(400, "invalid_scope", "missing scope parameter")
        body = {
            "access_token": self.issue_token(),
            "token_type": "bearer",
            "expires_in": self.token_ttl,
        }
        return FakeResponse.json(200, body)

    def check(self, request: FakeRequest) -> Optional[FakeResponse]:
        """The gateway's header checks (aep-api.md §4.1): an error, or None."""
        headers = request.headers
        authorization = headers.get("Authorization", "").strip()
        if not authorization:
            return _gateway_error(403, "403010", "Oauth token is missing")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not self.token_valid(token.strip()):
            return _gateway_error(401, "401013", "Oauth token is not valid")
        api_key = headers.get("x-api-key")
        if not api_key:
            return _gateway_error(403, "403000", "Api Key is required")
        if api_key != self.client_id:
            return _gateway_error(403, "403003", "Api Key is invalid")
        org = headers.get("x-gw-ims-org-id")
        if not org:
            return _gateway_error(400, "400003", "Missing header x-gw-ims-org-id")
        if org != self.org_id:
            return _gateway_error(403, "403025", "Profile is not valid")
        sandbox = headers.get("x-sandbox-name")
        if sandbox != self.sandbox:
            detail = f"Sandbox {sandbox!r} does not exist or is not accessible"
            return Problem(403, detail).response("SBX", sandbox or "")
        return None
