"""``aep-extract`` into ``azure://`` on Azurite, from the fake AEP platform: exact
output with metadata proving each source, a rerun that writes nothing, ``verify``,
and SIGKILL at random moments followed by a run that finishes exactly."""

from __future__ import annotations

import os
import subprocess
import sys

from aep_extract import KeyLayout, SQLiteCheckpointStore
from aep_extract._tasks import source_metadata
from aep_extract.cli import main
from aep_extract.sinks.azure import AzureBlobSink
from aep_extract.testing import FakeAepPlatform, FaultPlan

from ..crash_harness import CRASH_CATALOG, FAULTS, kills_wanted, run_with_kills
from ..e2e.helpers import (
    DATASET,
    END,
    START,
    expected_sources,
    expected_statuses,
    expected_tree,
    manifests,
    run_args,
    sink_tree,
    unit_statuses,
)
from .conftest import Azurite

PREFIX = "raw/aep"


def blob_versions(azurite: Azurite, container: str) -> dict[str, str]:
    """Blob name -> ETag: a blob written again gets a new ETag."""
    with azurite.service() as service:
        blobs = service.get_container_client(container).list_blobs()
        return {blob.name: blob.etag for blob in blobs}


def test_run_lands_every_file_rerun_writes_nothing_and_verify_agrees(
    fake_aep, fake_aep_env, azurite, azure_env, container, tmp_path, capsys
):
    url, store = f"azure://{container}/{PREFIX}", f"sqlite:///{tmp_path / 'state.db'}"
    assert main(run_args(url, store, "--workers", "4")) == 0

    sink = AzureBlobSink(url)
    expected = expected_tree(fake_aep)
    assert sink_tree(sink) == expected
    assert len(manifests(sink)) == 9
    layout = KeyLayout()
    for unit, ref, _ in expected_sources(fake_aep):
        info = sink.stat(layout.file_key(unit, ref))
        assert info is not None
        assert info.metadata == source_metadata(unit, ref)
    assert unit_statuses(SQLiteCheckpointStore(tmp_path / "state.db")) == (
        expected_statuses(fake_aep)
    )

    before = blob_versions(azurite, container)
    assert len(before) == len(expected) + 9
    assert main(run_args(url, store, "--workers", "4")) == 0
    assert blob_versions(azurite, container) == before

    capsys.readouterr()
    verify = ["verify", "--dataset", DATASET, "--start", START, "--end", END]
    assert main([*verify, "--sink", url, "--store", store]) == 0
    assert "OK: sink, store and Catalog agree" in capsys.readouterr().out


def test_sigkill_at_random_moments_then_rerun_is_exact(azure_env, container, tmp_path):
    url = f"azure://{container}/{PREFIX}"
    plan = FaultPlan.parse(FAULTS)
    # A third of the catalog of the other crash tests, its 12 MiB file (two blocks)
    # included: the kills land mid-run all the same.
    catalog = {**CRASH_CATALOG, "batches": 10}
    with FakeAepPlatform.generate(**catalog, faults=plan) as platform:
        env = {**os.environ, **platform.env()}
        args = run_args(
            url,
            f"sqlite:///{tmp_path / 'state.db'}",
            "--workers",
            "4",
            "--lease-seconds",
            "2",
        )
        result = run_with_kills(args, env, kills=kills_wanted(), seed=11)
        served = platform.faults_served
        expected = expected_tree(platform)
        statuses = expected_statuses(platform)

    print(
        f"\ncrash test (sqlite+azure): {result.kills} kills, "
        f"{result.exited_early} finished before their kill, faults {served}"
    )
    assert result.final_exit == 0, result.final_output
    assert result.kills >= 1
    sink = AzureBlobSink(url)
    assert sink_tree(sink) == expected
    found = manifests(sink)
    assert {key.split("/")[2] for key in found} == {k.split("/")[2] for k in expected}
    assert list(sink.list_keys()) == sorted([*expected, *found])  # nothing extra
    store = SQLiteCheckpointStore(tmp_path / "state.db")
    assert unit_statuses(store) == statuses


def test_without_credentials_the_run_exits_2_naming_the_variable(
    fake_aep_env, monkeypatch, tmp_path, capsys
):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    store = f"sqlite:///{tmp_path / 'state.db'}"
    assert main(run_args("azure://landing/aep", store)) == 2
    assert "AZURE_STORAGE_CONNECTION_STRING" in capsys.readouterr().err


def test_a_missing_container_exits_2_before_anything_is_recorded(
    fake_aep_env, azure_env, tmp_path, capsys
):
    store = f"sqlite:///{tmp_path / 'state.db'}"
    assert main(run_args("azure://no-such-container/aep", store)) == 2
    assert "'no-such-container' does not exist" in capsys.readouterr().err
    assert unit_statuses(SQLiteCheckpointStore(tmp_path / "state.db")) == {}


def test_verbose_logs_show_the_run_not_every_azure_request(
    fake_aep_env, azure_env, container, tmp_path
):
    url, store = f"azure://{container}/{PREFIX}", f"sqlite:///{tmp_path / 'state.db'}"
    entry = "from aep_extract.cli import main; raise SystemExit(main())"

    def run(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", entry, *flags, *run_args(url, store)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return done.stderr

    verbose = run("-v")
    assert "aep_extract.extractor" in verbose
    assert "azure.core" not in verbose
    assert "azure.core" in run("-vv"), "-vv shows the requests"
