"""``aep-extract aws package``: lambda.zip built by pip from this checkout, uploaded
with glue_job.py and the wheel to moto's S3 server. Needs the package index."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shlex
import zipfile
from pathlib import Path

import attrs
import boto3
import pytest
import requests

from aep_extract.aws.package import build, package
from aep_extract.cli import main
from aep_extract.errors import ConfigError, MissingResourceError

from .conftest import REGION, fail_sends, fake_aws_env, s3_error

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "artifacts"


@attrs.frozen
class Packaged:
    exit_code: int
    stdout: str
    objects: dict[str, bytes]  # key -> bytes, of every object in the bucket

    def one(self, name: str) -> tuple[str, bytes]:
        (found,) = (item for item in self.objects.items() if item[0].endswith(name))
        return found


@pytest.fixture(scope="module")
def packaged(moto_server: str) -> Packaged:
    """One run of ``aep-extract aws package`` (a pip build takes a while)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_aws_env(monkeypatch)
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            command = ["aws", "package", "--bucket", BUCKET, "--prefix", "aep/"]
            code = main([*command, "--requirement", str(ROOT)])
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        objects = {
            key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys
        }
        requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    return Packaged(code, out.getvalue(), objects)


def test_uploads_lambda_zip_glue_job_and_wheel_under_the_zips_digest(
    packaged: Packaged,
) -> None:
    assert packaged.exit_code == 0
    _, archive = packaged.one("/lambda.zip")
    digest = hashlib.sha256(archive).hexdigest()[:16]
    wheel_key, wheel = packaged.one(".whl")
    assert sorted(packaged.objects) == sorted(
        f"aep/{digest}/{name}"
        for name in ("lambda.zip", "glue_job.py", wheel_key.rsplit("/", 1)[1])
    )
    shipped = ROOT / "aep_extract/aws/files/glue_job.py"
    assert packaged.one("/glue_job.py")[1] == shipped.read_bytes()
    with zipfile.ZipFile(io.BytesIO(wheel)) as built:
        assert "aep_extract/aws/files/glue_job.py" in built.namelist()


def test_lambda_zip_holds_the_package_and_dependencies_but_not_boto(
    packaged: Packaged,
) -> None:
    with zipfile.ZipFile(io.BytesIO(packaged.one("/lambda.zip")[1])) as archive:
        names = archive.namelist()
        sources = {
            name: archive.read(name)
            for name in names
            if name.startswith("aep_extract/")
        }
    tops = {name.split("/")[0] for name in names}
    for package_dir in ("aep_extract", "requests", "tenacity", "attr", "attrs"):
        assert package_dir in tops
    # Left to the Lambda runtime, with what only they need.
    for runtime_dir in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil"):
        assert runtime_dir not in tops
    assert "bin" not in tops
    assert not [name for name in names if name.endswith(".pyc")]
    # This checkout's package: the Lambda handlers, and its files (package data).
    assert "aep_extract/aws/handlers.py" in sources
    assert "aep_extract/aws/files/Dockerfile" in sources
    assert sources == {
        path.relative_to(ROOT).as_posix(): path.read_bytes()
        for path in (ROOT / "aep_extract").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_lambda_zip_is_reproducible(packaged: Packaged, tmp_path: Path) -> None:
    again = build(str(ROOT), tmp_path)
    _, archive = packaged.one("/lambda.zip")
    assert again.lambda_zip.read_bytes() == archive
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        infos = opened.infolist()
    assert [info.filename for info in infos] == sorted(i.filename for i in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_its_wheel_gives_the_same_lambda_zip(
    packaged: Packaged, tmp_path: Path
) -> None:
    wheel_key, wheel = packaged.one(".whl")
    given = tmp_path / wheel_key.rsplit("/", 1)[1]
    given.write_bytes(wheel)
    built = build(str(given), tmp_path / "build")
    assert built.wheel is not None
    assert built.wheel.read_bytes() == wheel
    assert built.lambda_zip.read_bytes() == packaged.one("/lambda.zip")[1]


def test_prints_the_deploy_command_with_the_artifacts(packaged: Packaged) -> None:
    wheel_key, _ = packaged.one(".whl")
    prefix = wheel_key.rsplit("/", 1)[0] + "/"
    command = shlex.split(packaged.stdout.splitlines()[-1])
    assert command[:3] == ["aws", "cloudformation", "deploy"]
    s3 = command.index("--s3-bucket")
    assert command[s3 : s3 + 4] == [
        "--s3-bucket",
        BUCKET,
        "--s3-prefix",
        prefix.rstrip("/"),
    ]
    overrides = command[command.index("--parameter-overrides") + 1 :]
    assert overrides == [
        f"ArtifactBucket={BUCKET}",
        f"ArtifactPrefix={prefix}",
        f"PipRequirement=s3://{BUCKET}/{wheel_key}",
        "DatasetIds=DATASET_ID",
    ]
    assert "aep-extract aws template --output pipeline.yaml" in packaged.stdout


def test_a_missing_bucket_exits_2_with_one_line(
    moto_over_http: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["aws", "package", "--bucket", "no-such-bucket"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "aep-extract: error: S3 bucket 'no-such-bucket' does not exist\n"
    )


def test_a_pip_failure_exits_2_with_one_line(
    moto_over_http: boto3.Session,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    not_a_project = tmp_path / "empty"
    not_a_project.mkdir()
    command = ["aws", "package", "--bucket", BUCKET, "--requirement"]
    assert main([*command, str(not_a_project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aep-extract: error: pip wheel failed: ")
    assert str(not_a_project) in err  # pip's words vary from version to version
    assert err.count("\n") == 1


def test_access_denied_is_a_config_error(moto_over_http: boto3.Session) -> None:
    client = moto_over_http.client("s3")
    client.create_bucket(Bucket=BUCKET)
    fail_sends(client, "s3.ListObjectsV2", 1, 403, s3_error("AccessDenied"))
    with pytest.raises(ConfigError, match=r"^access denied to s3://artifacts/aep/: "):
        package(BUCKET, prefix="aep", client=client)


def test_a_missing_wheel_is_a_config_error(moto_over_http: boto3.Session) -> None:
    moto_over_http.client("s3").create_bucket(Bucket=BUCKET)
    with pytest.raises(ConfigError, match=r"^no such wheel: missing\.whl$"):
        package(BUCKET, requirement="missing.whl")
    with pytest.raises(MissingResourceError):
        package("no-such-bucket", requirement="missing.whl")
