"""IMS tokens: the request, caching, refresh, invalidation, errors without secrets."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from aep_extract.config import AepConfig, RetryConfig
from aep_extract.errors import AuthError, TokenUnavailable
from aep_extract.sources._auth import ImsTokenProvider
from aep_extract.sources._transport import Transport

IMS = "https://ims.test"
TOKEN_URL = f"{IMS}/ims/token/v3"
SECRET = "p8e-SuperSecretValue-123"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_config(**overrides: Any) -> AepConfig:
    values: dict[str, Any] = {
        "client_id": "cid",
        "client_secret": SECRET,
        "org_id": "ORG@AdobeOrg",
        "scopes": "openid,AdobeID",
        "ims_url": IMS,
        "token_refresh_margin": 300.0,
    }
    values.update(overrides)
    return AepConfig(**values)


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def provider(clock, waits):
    with requests.Session() as session:
        config = make_config()
        yield ImsTokenProvider(
            config,
            Transport.for_config(config, session),
            clock=clock,
            sleep=waits.append,
        )


def issue(rsps, *tokens: str, expires_in: object = 3600) -> None:
    for token in tokens:
        rsps.post(
            TOKEN_URL,
            json={
                "access_token": token,
                "token_type": "bearer",
                "expires_in": expires_in,
            },
        )


def test_token_request_is_a_client_credentials_form(rsps, clock):
    config = make_config(verify_tls=False, connect_timeout=3.0, read_timeout=7.0)
    provider = ImsTokenProvider(config, Transport.for_config(config), clock=clock)
    issue(rsps, "tok-1")
    assert provider.token() == "tok-1"
    [call] = rsps.calls
    assert call.request.method == "POST"
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(call.request.body) == {
        "grant_type": ["client_credentials"],
        "client_id": ["cid"],
        "client_secret": [SECRET],
        "scope": ["openid,AdobeID"],
    }
    assert call.request.req_kwargs["timeout"] == (3.0, 7.0)
    assert call.request.req_kwargs["verify"] is False


def test_token_is_cached_until_the_refresh_margin(rsps, provider, clock):
    issue(rsps, "tok-1", "tok-2")
    assert provider.token() == "tok-1"
    clock.now += 3600 - 300 - 1  # expires_in is seconds: 1 s before the margin
    assert provider.token() == "tok-1"
    assert len(rsps.calls) == 1
    clock.now += 1
    assert provider.token() == "tok-2"
    assert len(rsps.calls) == 2


def test_short_lived_token_is_reused_for_half_its_life(rsps, provider, clock):
    issue(rsps, "tok-1", "tok-2", expires_in=100)
    assert provider.token() == "tok-1"
    clock.now += 49
    assert provider.token() == "tok-1"
    clock.now += 1
    assert provider.token() == "tok-2"


def test_concurrent_callers_share_one_fetch(rsps, provider):
    def slow_token(request):
        time.sleep(0.05)  # let the other threads pile up on the lock
        return 200, {}, '{"access_token": "tok-1", "expires_in": 3600}'

    rsps.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
    barrier = threading.Barrier(8)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(provider.token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["tok-1"] * 8
    assert len(rsps.calls) == 1


def test_invalidate_drops_only_the_current_token(rsps, provider):
    issue(rsps, "tok-1", "tok-2")
    assert provider.token() == "tok-1"
    provider.invalidate("some-older-token")
    assert provider.token() == "tok-1"
    provider.invalidate("tok-1")
    provider.invalidate("tok-1")  # a second thread seeing the same 401
    assert provider.token() == "tok-2"
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (
            401,
            {"error": "invalid_client", "error_description": "invalid client_secret"},
            ["invalid_client", "invalid client_secret", "cid"],
        ),
        (
            400,
            {"error": "invalid_scope", "error_description": "bad scope"},
            ["invalid_scope", "bad scope"],
        ),
        (
            400,
            {"error": "invalid_request", "error_description": f"echo {SECRET}"},
            ["invalid_request", "echo ***"],
        ),
    ],
)
def test_refused_credentials_raise_auth_error_without_the_secret(
    rsps, provider, status, body, words
):
    rsps.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(AuthError) as info:
        provider.token()
    text = str(info.value)
    for word in words:
        assert word in text
    assert SECRET not in text
    assert SECRET not in repr(info.value)
    assert info.value.__cause__ is None


def test_connection_errors_are_retried_then_the_token_is_unavailable(
    rsps, provider, waits
):
    rsps.post(TOKEN_URL, body=requests.ConnectionError("connection reset"))
    with pytest.raises(TokenUnavailable, match="connection reset") as info:
        provider.token()
    assert SECRET not in str(info.value)
    # Nothing chained: no cause may keep the request whose body holds the secret.
    assert info.value.__cause__ is None
    assert len(rsps.calls) == RetryConfig().attempts
    assert len(waits) == RetryConfig().attempts - 1


@pytest.mark.parametrize(("status", "error"), [(429, "HTTP 429"), (503, "HTTP 503")])
def test_ims_outages_are_retried_within_the_budget(
    rsps, provider, waits, status, error
):
    rsps.post(TOKEN_URL, status=status, headers={"Retry-After": "2"})
    with pytest.raises(TokenUnavailable, match=error):
        provider.token()
    assert len(rsps.calls) == RetryConfig().attempts
    if status == 429:
        assert waits == [2.0] * (RetryConfig().attempts - 1)


def test_an_ims_outage_then_a_token(rsps, provider, waits):
    rsps.post(TOKEN_URL, status=500, json={"error": "server_error"})
    issue(rsps, "tok-1")
    assert provider.token() == "tok-1"
    assert len(waits) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "bearer", "expires_in": 3600},
        {"access_token": "", "expires_in": 3600},
        {"access_token": "tok", "expires_in": 0},
        {"access_token": "tok", "expires_in": "soon"},
        {"access_token": "tok"},
        ["not", "an", "object"],
    ],
)
def test_unusable_token_answers_are_invalid(rsps, provider, body):
    rsps.post(TOKEN_URL, json=body)
    with pytest.raises(TokenUnavailable, match="IMS token answer"):
        provider.token()
    assert len(rsps.calls) == 1  # an unusable answer is not retried


def test_expires_in_as_a_string_is_accepted(rsps, provider):
    issue(rsps, "tok-1", expires_in="86399")
    assert provider.token() == "tok-1"


def test_repr_reveals_neither_secret_nor_token(rsps, provider):
    issue(rsps, "tok-very-secret")
    provider.token()
    text = repr(provider)
    assert SECRET not in text
    assert "tok-very-secret" not in text
    assert "cid" in text
