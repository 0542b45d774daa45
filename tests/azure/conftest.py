"""Azure fixtures: Azurite (the Azure Storage emulator), installed by npm into the
user's cache and run on a free port for the session, and a fresh container per test."""

from __future__ import annotations

import base64
import os
import queue
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from azure.storage.blob import BlobServiceClient

from ..npm_tools import npm_install

AZURITE = Path(__file__).parent / "azurite"
"""package.json and package-lock.json pinning Azurite."""

ACCOUNT = "aepaccount"
_LISTENING = re.compile(r"successfully listens on (http://\S+)")
_STARTUP_SECONDS = 60


class Azurite(NamedTuple):
    """A running Azurite blob service and the account it serves."""

    endpoint: str  # http://127.0.0.1:PORT
    account_key: str

    @property
    def account_url(self) -> str:
        return f"{self.endpoint}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};"
        )

    def service(self) -> BlobServiceClient:
        """A plain client, for looking at what a sink stored."""
        return BlobServiceClient.from_connection_string(self.connection_string)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service, in memory, on a port the OS picks; an account with a
    random key (so that tests can look for the key where it must not be)."""
    install = npm_install(AZURITE, "azurite", needed_by="the Azure sink tests")
    key = base64.b64encode(os.urandom(32)).decode()
    main = install / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    command = [
        "node", str(main),
        "--blobHost", "127.0.0.1", "--blobPort", "0",
        "--inMemoryPersistence", "--extentMemoryLimit", "512",
        "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl", "--silent",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"},
    )
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # also keeps the pipe from filling up later
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            try:
                line = lines.get(timeout=_STARTUP_SECONDS)
            except queue.Empty:
                pytest.fail(
                    f"Azurite did not start in {_STARTUP_SECONDS} s:\n{''.join(seen)}"
                )
            seen.append(line)
            if not line:
                pytest.fail(f"Azurite exited on start:\n{''.join(seen)}")
            match = _LISTENING.search(line)
            if match:
                break
        yield Azurite(endpoint=match.group(1), account_key=key)
    finally:
        # Killed, not terminated: it keeps nothing on disk, and a graceful stop
        # waits for the clients' idle keep-alive connections to time out.
        process.kill()
        process.wait()


@pytest.fixture
def container(azurite: Azurite) -> str:
    """A new, empty container."""
    name = f"aep-{uuid.uuid4().hex[:12]}"
    with azurite.service() as service:
        service.create_container(name)
    return name


@pytest.fixture
def azure_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> str:
    """AZURE_STORAGE_CONNECTION_STRING set to Azurite's account."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return azurite.connection_string
