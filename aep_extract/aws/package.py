"""Build and upload what the pipeline's template deploys: ``aep-extract aws package``.

- ``lambda.zip``: aep-extract and its dependencies, as pip installs them for the
  Lambda runtime (:data:`LAMBDA_PLATFORM`), without boto3 and botocore, which the
  runtime provides (:data:`RUNTIME_PROVIDED`). Reproducible: the same packages give
  the same bytes (sorted entries, fixed timestamps and modes, no bytecode).
- ``glue_job.py``: the Glue job's script, as the built package ships it.
- the wheel of a local requirement (a project directory or a ``.whl``), for Glue's
  ``--additional-python-modules``, which installs from an ``s3://`` URL.

They go under ``s3://BUCKET/PREFIX/DIGEST/``, DIGEST naming the content of
``lambda.zip``: CloudFormation updates a function only when its code's key changes,
so a new build gets new keys and the same build the same ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import attrs

from .. import __version__
from ..errors import ConfigError, SinkError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from ..sinks.s3 import S3Sink

logger = logging.getLogger(__name__)

LAMBDA_PLATFORM: tuple[str, ...] = (
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)
"""pip's options for the Lambda runtime of the template (python3.12 on x86_64)."""

RUNTIME_PROVIDED = frozenset({"boto3", "botocore"})
"""The distributions that the Lambda runtime has, left out of ``lambda.zip`` with
every dependency that only they need (s3transfer, jmespath, python-dateutil, ...)."""

DEFAULT_PREFIX = "aep-extract"
"""Where the artifacts go in the bucket when no prefix is given."""

STACK_NAME = "aep-extract"
"""The stack name in the printed deploy command."""

GLUE_JOB = "aep_extract/aws/files/glue_job.py"
"""The Glue script's path in the built package."""

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can hold


@attrs.frozen(kw_only=True)
class Build:
    """The artifacts of one build, in a working directory.

    Attributes:
        lambda_zip: the Lambda functions' code.
        glue_job: the Glue job's script.
        wheel: the wheel built from (or given as) a local requirement; None for a
            requirement pip installs from the package index.
        requirement: the requirement pip installed.
    """

    lambda_zip: Path
    glue_job: Path
    wheel: Optional[Path]
    requirement: str


@attrs.frozen(kw_only=True)
class Uploaded:
    """Where :func:`package` put the artifacts: the template's parameters.

    Attributes:
        bucket: ``ArtifactBucket``.
        prefix: ``ArtifactPrefix``: the keys' common prefix, ending in ``/``.
        pip_requirement: ``PipRequirement``: what Glue installs; the wheel's
            ``s3://`` URL for a local requirement.
        keys: the uploaded objects' keys.
    """

    bucket: str
    prefix: str
    pip_requirement: str
    keys: tuple[str, ...]

    def parameter_overrides(self) -> dict[str, str]:
        """The template's parameters that name the artifacts."""
        return {
            "ArtifactBucket": self.bucket,
            "ArtifactPrefix": self.prefix,
            "PipRequirement": self.pip_requirement,
        }

    def deploy_command(self, template_file: str = "pipeline.yaml") -> str:
        """The ``aws cloudformation deploy`` command of the stack (its template
        uploaded next to the artifacts), with a placeholder for ``DatasetIds`` (a
        parameter without default)."""
        overrides = [f"{k}={v}" for k, v in self.parameter_overrides().items()]
        words = [
            *("aws", "cloudformation", "deploy", "--stack-name", STACK_NAME),
            *("--template-file", template_file, "--capabilities"),
            # The template goes through S3: inline, CloudFormation takes 51,200
            # bytes at most, and the shipped one is close to that.
            *("--s3-bucket", self.bucket, "--s3-prefix", self.prefix.rstrip("/")),
            *("CAPABILITY_NAMED_IAM", "--parameter-overrides", *overrides),
        ]
        return shlex.join(words) + " DatasetIds=DATASET_ID"


def default_requirement() -> str:
    """``aep-extract==<this version>``: the release on the package index."""
    return f"aep-extract=={__version__}"


def package(
    bucket: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    requirement: Optional[str] = None,
    client: Optional[S3Client] = None,
) -> Uploaded:
    """Build the artifacts (:func:`build`) and upload them to
    ``s3://bucket/prefix/DIGEST/``.

    The bucket is checked before the build, so a wrong name fails at once.

    Args:
        bucket: the artifact bucket.
        prefix: the key prefix under which the build's directory goes.
        requirement: what to package: a pip requirement (default
            :func:`default_requirement`), a project directory or a wheel.
        client: the boto3 S3 client to use; default one on boto3's credential
            chain (``AWS_ENDPOINT_URL`` is honoured).

    Raises:
        ConfigError: an invalid bucket name or prefix, access denied, a
            requirement pip cannot install, or one without ``aep_extract.aws``.
        MissingResourceError: the bucket does not exist.
        SinkError: S3 failed, after the retry policy's attempts.
    """
    from ..sinks.s3 import S3Sink

    sink = S3Sink(f"s3://{bucket}/{prefix.strip('/')}", client=client)
    with sink, access_denied_is_config(sink.url):
        sink.check()
        with tempfile.TemporaryDirectory(prefix="aep-extract-package-") as work:
            built = build(requirement or default_requirement(), Path(work))
            return _upload(sink, built)


def build(requirement: str, workdir: Path) -> Build:
    """Build ``lambda.zip`` for ``requirement`` in ``workdir``.

    A project directory is first built into a wheel (``pip wheel``). pip resolves
    the requirement for the Lambda platform; everything but :data:`RUNTIME_PROVIDED`
    and what only they need is installed without compiling bytecode, then zipped.

    Args:
        requirement: a pip requirement (``aep-extract==1.2.0``), a project
            directory or a wheel.
        workdir: where to build: a new or empty directory.

    Raises:
        ConfigError: no pip, pip failed (no such version, no network, a failed
            wheel build), or the package has no ``aep_extract.aws``.
    """
    if importlib.util.find_spec("pip") is None:
        raise ConfigError(f"building lambda.zip needs pip; {sys.executable} has none")
    workdir.mkdir(parents=True, exist_ok=True)
    wheel = _local_wheel(requirement, workdir / "wheel")
    target = workdir / "lambda"
    wanted = _resolve(str(wheel) if wheel else requirement, workdir / "report.json")
    pins = [f"{name}=={version}" for name, version in wanted.items()]
    install = ["install", "--target", str(target), "--no-deps", "--no-compile"]
    install += LAMBDA_PLATFORM
    if wheel is not None:
        # From a local index, not by path: pip records a path or URL it installed
        # from (direct_url.json), which would differ from build to build.
        root, *pins = pins
        _pip(*install, "--no-index", "--find-links", str(wheel.parent), root)
    _pip(*install, *pins)
    glue_job = target / GLUE_JOB
    if not glue_job.is_file():
        raise ConfigError(
            f"{requirement!r} has no {GLUE_JOB}: the pipeline needs an aep-extract "
            "with the aep_extract.aws package"
        )
    lambda_zip = workdir / "lambda.zip"
    _drop_scripts(target)
    write_zip(target, lambda_zip)
    return Build(
        lambda_zip=lambda_zip, glue_job=glue_job, wheel=wheel, requirement=requirement
    )


def write_zip(source: Path, path: Path) -> None:
    """Zip the files under ``source`` into ``path``, reproducibly: entries in
    sorted order, fixed timestamps, modes 644 or 755, no bytecode.

    Args:
        source: the directory to zip; its files become the archive's root.
        path: the zip file to write.
    """
    files = sorted(
        (file.relative_to(source).as_posix(), file)
        for file in source.rglob("*")
        if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, file in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.create_system = 3  # Unix, whatever builds it: the modes below count
            mode = 0o755 if file.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with file.open("rb") as data, archive.open(info, "w") as entry:
                shutil.copyfileobj(data, entry)


def _drop_scripts(target: Path) -> None:
    """Remove the console scripts pip put in ``target/bin``, and their lines in the
    RECORD files: useless on Lambda, and their first line names the Python that
    built them, which would make the zip differ from one machine to another."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for record in target.glob("*.dist-info/RECORD"):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("../")]
        record.write_text("".join(kept), encoding="utf-8")


def _local_wheel(requirement: str, wheel_dir: Path) -> Optional[Path]:
    """The wheel of a local requirement, built from a project directory; None for
    a requirement for the package index."""
    path = Path(requirement).expanduser()
    if path.is_dir():
        _pip("wheel", "--no-deps", "--wheel-dir", str(wheel_dir), str(path))
        (wheel,) = wheel_dir.glob("*.whl")
        return wheel
    if path.suffix == ".whl":
        if not path.is_file():
            raise ConfigError(f"no such wheel: {requirement}")
        wheel_dir.mkdir(parents=True)
        return Path(shutil.copy(path, wheel_dir))
    return None


def _resolve(requirement: str, report: Path) -> dict[str, str]:
    """Name and version of each distribution to install for ``requirement`` on the
    Lambda platform, the requirement's own first, the runtime's left out."""
    _pip(
        *("install", "--dry-run", "--ignore-installed", "--report", str(report)),
        *LAMBDA_PLATFORM,
        requirement,
    )
    items = json.loads(report.read_text(encoding="utf-8"))["install"]
    resolved: dict[str, dict[str, Any]] = {
        _normalize(item["metadata"]["name"]): item["metadata"] for item in items
    }
    (root,) = (
        _normalize(item["metadata"]["name"]) for item in items if item["requested"]
    )
    # Walk the requirements from the root, not through the runtime's packages. A
    # requirement whose marker is false (an extra) is not in ``resolved``.
    wanted: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in wanted or name in RUNTIME_PROVIDED or name not in resolved:
            continue
        wanted[name] = resolved[name]["version"]
        todo.extend(
            _normalize(_requirement_name(text))
            for text in resolved[name].get("requires_dist") or ()
        )
    return {root: wanted.pop(root), **dict(sorted(wanted.items()))}


def _requirement_name(text: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
    return match.group(1) if match else ""


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    logger.info("running %s", shlex.join(command))
    done = subprocess.run(
        [*command, "--quiet", "--no-input", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        said = (errors or lines or [f"exit status {done.returncode}"])[-1]
        raise ConfigError(f"pip {args[0]} failed: {said.removeprefix('ERROR: ')}")


def _upload(sink: S3Sink, built: Build) -> Uploaded:
    digest = hashlib.sha256(built.lambda_zip.read_bytes()).hexdigest()[:16]
    files = [built.lambda_zip, built.glue_job]
    if built.wheel is not None:
        files.append(built.wheel)
    for file in files:
        with (
            file.open("rb") as data,
            sink.open_write(f"{digest}/{file.name}", size=file.stat().st_size) as out,
        ):
            shutil.copyfileobj(data, out)
    prefix = f"{sink.prefix}/{digest}/" if sink.prefix else f"{digest}/"
    pip_requirement = built.requirement
    if built.wheel is not None:
        pip_requirement = f"s3://{sink.bucket}/{prefix}{built.wheel.name}"
    return Uploaded(
        bucket=sink.bucket,
        prefix=prefix,
        pip_requirement=pip_requirement,
        keys=tuple(prefix + file.name for file in files),
    )


@contextlib.contextmanager
def access_denied_is_config(url: str) -> Iterator[None]:
    """S3's access denied as a ConfigError: here it is the caller's permissions,
    not a failure worth a rerun."""
    from botocore.exceptions import ClientError

    from ..sinks.s3 import _DENIED  # the S3 sink's codes of a denial

    try:
        yield
    except SinkError as exc:
        cause: Optional[BaseException] = exc
        while cause is not None and not isinstance(cause, ClientError):
            cause = cause.__cause__
        if cause is None or cause.response.get("Error", {}).get("Code") not in _DENIED:
            raise
        raise ConfigError(
            f"access denied to {url}/: packaging needs s3:ListBucket and "
            "s3:PutObject there"
        ) from exc
