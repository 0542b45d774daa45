"""Test tools from package registries, installed from pinned lock files into a
cache: Node.js packages by npm, Python servers into their own virtualenv by pip."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import pytest


def npm_install(package_dir: Path, package: str, *, needed_by: str) -> Path:
    """A directory whose node_modules hold ``package`` as ``package_dir``'s
    package.json and package-lock.json pin it: npm ci into
    ``~/.cache/aep-extract-tests/npm``, once per lock file.

    Fails the test, never skips it, when node or npm is missing or npm fails;
    ``needed_by`` names the tests in that message.
    """
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{needed_by} need Node.js and npm ({tool} is not on PATH): "
                "install them (e.g. apt-get install nodejs npm), then rerun"
            )
    manifests = [package_dir / "package.json", package_dir / "package-lock.json"]

    def install(staging: Path) -> None:
        for manifest in manifests:
            shutil.copy(manifest, staging)
        npm = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        _run([*npm, "--prefix", str(staging)], failing=f"npm ci of {package_dir}")

    return _install_once(
        "npm", manifests, Path("node_modules") / package, install, salt=b""
    )


def venv_install(
    requirements: Path, *, needed_by: str, python: str = sys.executable
) -> Path:
    """A virtualenv of ``python`` holding exactly the packages that
    ``requirements`` (a full ``pip freeze``) pins, apart from the tests' own:
    ``pip install --no-deps`` into ``~/.cache/aep-extract-tests/venv``, once per
    file and interpreter.

    For servers whose dependencies clash with the project's (run them with the
    venv's ``bin/python``). Fails the test, never skips it, when pip fails;
    ``needed_by`` names the tests in that message.
    """
    failing = f"{needed_by}: installing {requirements} into a virtualenv"
    # A venv is bound to the interpreter that made it.
    which = "import sys; print(sys.version, sys.base_prefix)"
    salt = _run([python, "-c", which], failing=failing).encode()

    def install(staging: Path) -> None:
        _run([python, "-m", "venv", str(staging)], failing=failing)
        pip = [str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        _run([*pip, "--no-deps", "-r", str(requirements)], failing=failing)

    return _install_once("venv", [requirements], Path("bin"), install, salt=salt)


def _install_once(
    kind: str,
    manifests: Sequence[Path],
    installed: Path,
    install: Callable[[Path], None],
    *,
    salt: bytes,
) -> Path:
    """``~/.cache/aep-extract-tests/KIND/DIGEST``: made by ``install(staging)`` once
    per content of ``manifests`` (and ``salt``), done when ``installed`` exists."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in manifests) + salt)
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_home / "aep-extract-tests" / kind
    target = cache / digest.hexdigest()[:16]
    if (target / installed).exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Install beside the target, then rename: a concurrent or killed install never
    # leaves a half-filled target behind.
    staging = Path(tempfile.mkdtemp(prefix="installing-", dir=cache))
    try:
        install(staging)
        with contextlib.suppress(OSError):  # another process finished first
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _run(command: list[str], *, failing: str) -> str:
    """The command's output; fails the test if the command fails."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{failing} failed:\n{done.stdout}{done.stderr}")
    return done.stdout
