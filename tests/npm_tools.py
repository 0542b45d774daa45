"""Node.js test tools, installed by npm from pinned lock files into a cache."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

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
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in manifests)).hexdigest()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_home / "aep-extract-tests" / "npm"
    target = cache / digest[:16]
    if (target / "node_modules" / package).is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Install beside the target, then rename: a concurrent or killed install never
    # leaves a half-filled target behind.
    staging = Path(tempfile.mkdtemp(prefix="installing-", dir=cache))
    try:
        for manifest in manifests:
            shutil.copy(manifest, staging)
        npm = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        done = subprocess.run(
            [*npm, "--prefix", str(staging)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci of {package_dir} failed:\n{done.stdout}{done.stderr}")
        with contextlib.suppress(OSError):  # another process finished first
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
