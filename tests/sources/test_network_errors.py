"""Network failures as a user meets them: one short line each, and a host name that
does not exist fails at once, named, instead of being retried for half a minute."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import pytest

from aep_extract import (
    ConfigError,
    HttpAepSource,
    RetryConfig,
    TokenUnavailable,
    UnknownHost,
)
from aep_extract.cli import main

QUICK = RetryConfig(attempts=3, initial_wait=0.0, max_wait=0.0)


@pytest.fixture
def resolver(monkeypatch):
    """Answers for made-up host names: a list of errors to raise in turn (then
    127.0.0.1); every other name resolves as usual."""
    answers: dict[str, list[int]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host in answers:
            if answers[host]:
                code = answers[host].pop(0)
                raise socket.gaierror(code, f"resolver says {code}")
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def _ims_at(env: dict[str, str], host: str) -> dict[str, str]:
    port = urlsplit(env["AEP_IMS_URL"]).port
    return {**env, "AEP_IMS_URL": f"http://{host}:{port}"}


def test_a_host_that_does_not_exist_fails_at_once_and_is_named(fake_aep, resolver):
    resolver["ims.mistyped.test"] = [socket.EAI_NONAME] * 10
    env = _ims_at(fake_aep.env(), "ims.mistyped.test")
    source = HttpAepSource.from_env(env, retry=QUICK)
    with source, pytest.raises(UnknownHost) as raised:
        source.get_dataset(fake_aep.DEMO_DATASET_ID)
    assert isinstance(raised.value, ConfigError)
    assert "'ims.mistyped.test' does not resolve" in str(raised.value)
    assert resolver["ims.mistyped.test"] == [socket.EAI_NONAME] * 9  # no retry


def test_a_resolver_failing_for_now_is_retried(fake_aep, resolver):
    resolver["ims.flaky.test"] = [socket.EAI_AGAIN]
    env = _ims_at(fake_aep.env(), "ims.flaky.test")
    with HttpAepSource.from_env(env, retry=QUICK) as source:
        dataset = source.get_dataset(fake_aep.DEMO_DATASET_ID)
    assert dataset["name"]
    assert resolver["ims.flaky.test"] == []


def test_the_cli_exits_2_with_one_line(fake_aep, resolver, monkeypatch, capsys):
    resolver["ims.mistyped.test"] = [socket.EAI_NONAME] * 10
    for name, value in _ims_at(fake_aep.env(), "ims.mistyped.test").items():
        monkeypatch.setenv(name, value)
    window = ["--start", "2024-06-10T00:00:00Z", "--end", "2024-06-11T00:00:00Z"]
    code = main(
        ["plan", "--dataset", fake_aep.DEMO_DATASET_ID, "--store", "memory://", *window]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "host 'ims.mistyped.test' does not resolve" in err


def test_a_refused_connection_is_one_short_line(fake_aep, caplog):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**fake_aep.env(), "AEP_IMS_URL": f"http://127.0.0.1:{port}"}
    caplog.set_level(logging.WARNING)
    source = HttpAepSource.from_env(env, retry=QUICK)
    with source, pytest.raises(TokenUnavailable) as raised:
        source.get_dataset(fake_aep.DEMO_DATASET_ID)
    assert str(raised.value).endswith(f"connection refused by 127.0.0.1:{port}")
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == QUICK.attempts - 1
    for line in retries:
        assert "\n" not in line
        assert line.endswith(
            f"POST /ims/token/v3: connection refused by 127.0.0.1:{port}"
        )
