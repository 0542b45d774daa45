"""docs/testing.rst's recipe: Adobe's community SDK, aepp, against the fake platform.

aepp has no base-URL setting; two overrides point it at the fake. Everything an
extraction needs must work through them, with every file byte-identical.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Iterator
from typing import Any

import aepp
import pytest
from aepp import catalog, dataaccess

from aep_extract.testing import FakeAepPlatform

DS = FakeAepPlatform.DEMO_DATASET_ID


def point_aepp_at(platform: FakeAepPlatform) -> None:
    # recipe-start
    aepp.configure(
        org_id=platform.org_id,
        client_id=platform.client_id,
        secret=platform.client_secret,
        scopes="openid,AdobeID,read_organizations",
        sandbox=platform.sandbox,
    )
    aepp.config.endpoints["global"] = platform.url
    aepp.config.config_object["oauthTokenEndpointV2"] = platform.url + "/ims/token/v3"
    # recipe-end


@pytest.fixture(scope="module")
def platform() -> Iterator[FakeAepPlatform]:
    # aepp's settings are module globals, and it silences urllib3's warnings for the
    # whole process: put both back afterwards.
    settings = (aepp.config.config_object, aepp.config.header, aepp.config.endpoints)
    saved = copy.deepcopy(settings)
    with FakeAepPlatform.generate() as fake, warnings.catch_warnings():
        point_aepp_at(fake)
        try:
            yield fake
        finally:
            for live, old in zip(settings, saved):
                live.clear()
                live.update(old)


@pytest.fixture(scope="module")
def cat(platform: FakeAepPlatform) -> Any:
    return catalog.Catalog()


@pytest.fixture(scope="module")
def access(platform: FakeAepPlatform) -> Any:
    return dataaccess.DataAccess()


def download(access: Any, dataset_file_id: str) -> dict[tuple[str, str], bytes]:
    """Every physical file below a dataSetFileId, by (leaf id, name)."""
    found: dict[tuple[str, str], bytes] = {}
    for item in access.getFiles(dataset_file_id)["data"]:
        if "dataSetFileId" in item:  # a directory-type id lists child ids
            found.update(download(access, item["dataSetFileId"]))
            continue
        content = access.getFiles(dataset_file_id, path=item["name"])
        if isinstance(content, io.BytesIO):  # aepp wraps Parquet files
            content = content.getvalue()
        found[dataset_file_id, item["name"]] = content
    return found


def test_datasets(platform: FakeAepPlatform, cat: Any) -> None:
    datasets = cat.getDataSets()
    assert set(datasets) == set(platform.dataset_ids)
    assert cat.data.ids[datasets[DS]["name"]] == DS


def test_every_file_is_byte_identical(
    platform: FakeAepPlatform, cat: Any, access: Any
) -> None:
    batches = cat.getBatches(limit=100, n_results="inf", dataSet=DS)
    assert set(batches) == {batch.batch_id for batch in platform.batches_of(DS)}
    copied: dict[tuple[str, str], bytes] = {}
    for batch_id, batch in batches.items():
        if batch["status"] in ("success", "active"):
            for item in access.getBatchFiles(batch_id):
                copied.update(download(access, item["dataSetFileId"]))
    expected = {
        (leaf_id, file.name): file.content
        for _, leaf_id, file in platform.expected_files(DS, 0, 2**62)
    }
    assert len(copied) == len(expected) > 30
    assert copied == expected


def test_last_batches(platform: FakeAepPlatform, cat: Any) -> None:
    last = cat.getLastBatches(dataSetId=DS)
    assert list(last) == [DS]
    assert last[DS]["lastBatchId"] == platform.batches_of(DS)[-1].batch_id


def test_batch_meta(platform: FakeAepPlatform, access: Any) -> None:
    failed = next(b for b in platform.batches_of(DS) if b.status == "failed")
    listing = access.getBatchMeta(failed.batch_id)
    assert [item["name"] for item in listing["data"]] == ["row_errors_sample.json"]
    sample = access.getBatchMeta(failed.batch_id, path="row_errors_sample.json")
    assert sample == [dict(error) for error in failed.errors]


def test_preview(platform: FakeAepPlatform, access: Any) -> None:
    rows = access.getPreview(DS)
    files = platform.expected_files(DS, 0, 2**62)
    assert len(rows) == len(files)
    assert {row["name"] for row in rows} == {file.name for _, _, file in files}
