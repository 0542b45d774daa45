"""Parquet files in the shape of AEP's XDM ExperienceEvents, for testing transforms.

Deterministic: the same arguments give the same rows and the same bytes (with the
same pyarrow). The rows have what real exports have: nested structs
(``_experience.analytics.customDimensions.eVars``), a list of structs
(``productListItems``), a map of lists of structs (``identityMap``), microsecond UTC
timestamps, binary, and nulls at every level; the file has several row groups.
Needs the ``parquet`` extra (pyarrow)::

    from aep_extract.testing.xdm_parquet import xdm_batches, xdm_parquet
    data = xdm_parquet(rows=1000, row_group_rows=250, seed=7)
    platform.add_batches(xdm_batches(dataset_id, start, end, 3, seed=7))
"""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import attrs
import pyarrow as pa
import pyarrow.parquet as pq

from ._fake_data import FakeBatch
from ._fake_generate import Moment, make_batches

_IDENTITY = pa.struct(
    [
        ("id", pa.string()),
        ("authenticatedState", pa.string()),
        ("primary", pa.bool_()),
    ]
)

XDM_SCHEMA = pa.schema(
    [
        pa.field("_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        ("eventType", pa.string()),
        ("identityMap", pa.map_(pa.string(), pa.list_(_IDENTITY))),
        (
            "_experience",
            pa.struct(
                [
                    (
                        "analytics",
                        pa.struct(
                            [
                                (
                                    "customDimensions",
                                    pa.struct(
                                        [
                                            (
                                                "eVars",
                                                pa.struct(
                                                    [
                                                        ("eVar1", pa.string()),
                                                        ("eVar2", pa.string()),
                                                    ]
                                                ),
                                            ),
                                        ]
                                    ),
                                ),
                                (
                                    "session",
                                    pa.struct(
                                        [("num", pa.int64()), ("depth", pa.int32())]
                                    ),
                                ),
                            ]
                        ),
                    ),
                ]
            ),
        ),
        (
            "web",
            pa.struct(
                [
                    (
                        "webPageDetails",
                        pa.struct([("name", pa.string()), ("URL", pa.string())]),
                    ),
                ]
            ),
        ),
        (
            "commerce",
            pa.struct(
                [
                    (
                        "order",
                        pa.struct(
                            [
                                ("priceTotal", pa.float64()),
                                ("currencyCode", pa.string()),
                            ]
                        ),
                    ),
                ]
            ),
        ),
        (
            "productListItems",
            pa.list_(
                pa.struct(
                    [
                        ("SKU", pa.string()),
                        ("quantity", pa.int64()),
                        ("priceTotal", pa.float64()),
                    ]
                )
            ),
        ),
        (
            "_acme",
            pa.struct(
                [
                    ("loyaltyTier", pa.string()),
                    ("signature", pa.binary()),
                    ("lastPurchase", pa.timestamp("us", tz="UTC")),
                ]
            ),
        ),
    ]
)
"""The schema of :func:`xdm_rows`: a slice of an ExperienceEvent, with a tenant
field group ``_acme``."""

EVENT_TYPES = (
    "web.webpagedetails.pageViews",
    "commerce.purchases",
    "web.formFilledOut",
)
START = datetime(2024, 6, 10, tzinfo=timezone.utc)
"""The first event's timestamp; each row is a few seconds after the one before."""


def xdm_rows(rows: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``rows`` events as Python dicts of :data:`XDM_SCHEMA`."""
    rng = random.Random(seed)
    events = []
    moment = START
    for index in range(rows):
        moment += timedelta(
            seconds=rng.randint(1, 30), microseconds=rng.randint(0, 999_999)
        )
        kind = EVENT_TYPES[index % len(EVENT_TYPES)]
        events.append(
            {
                "_id": f"evt-{seed}-{index:06d}",
                "timestamp": moment,
                "eventType": None if index % 11 == 5 else kind,
                "identityMap": _identities(rng, index),
                "_experience": _experience(rng, index),
                "web": {
                    "webPageDetails": {
                        "name": f"page {index % 7}",
                        "URL": f"https://example.com/p/{index % 7}",
                    }
                },
                "commerce": _commerce(rng) if kind == "commerce.purchases" else None,
                "productListItems": _products(rng)
                if kind == "commerce.purchases"
                else [],
                "_acme": {
                    "loyaltyTier": rng.choice(("gold", "silver", None)),
                    "signature": bytes(rng.randrange(256) for _ in range(8)),
                    "lastPurchase": None if index % 4 else moment - timedelta(days=3),
                },
            }
        )
    return events


def _identities(rng: random.Random, index: int) -> Optional[list[tuple[str, Any]]]:
    if index % 13 == 0:
        return None
    ecid = {
        "id": f"{rng.getrandbits(64):020d}",
        "authenticatedState": "ambiguous",
        "primary": True,
    }
    pairs: list[tuple[str, Any]] = [("ECID", [ecid])]
    if index % 3 == 0:
        email = {
            "id": f"user{index % 50}@example.com",
            "authenticatedState": "authenticated",
            "primary": False,
        }
        pairs.append(("Email", [email]))
    return pairs


def _experience(rng: random.Random, index: int) -> Optional[dict[str, Any]]:
    if index % 17 == 0:
        return None
    evars = {
        "eVar1": f"campaign-{rng.randint(1, 5)}",
        "eVar2": None if index % 2 else f"segment-{index % 4}",
    }
    session = {"num": rng.randint(1, 40), "depth": rng.randint(1, 12)}
    return {"analytics": {"customDimensions": {"eVars": evars}, "session": session}}


def _commerce(rng: random.Random) -> dict[str, Any]:
    return {
        "order": {
            "priceTotal": round(rng.uniform(5, 500), 2),
            "currencyCode": rng.choice(("USD", "EUR")),
        }
    }


def _products(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "SKU": f"SKU-{rng.randint(100, 999)}",
            "quantity": rng.randint(1, 3),
            "priceTotal": round(rng.uniform(1, 200), 2),
        }
        for _ in range(rng.randint(1, 3))
    ]


def xdm_table(rows: int, *, seed: int = 0) -> pa.Table:
    """:func:`xdm_rows` as an Arrow table of :data:`XDM_SCHEMA`."""
    return pa.Table.from_pylist(xdm_rows(rows, seed=seed), schema=XDM_SCHEMA)


def xdm_parquet(
    *,
    rows: int = 100,
    row_group_rows: int = 25,
    seed: int = 0,
    compression: str = "snappy",
) -> bytes:
    """The bytes of a Parquet file of :func:`xdm_rows`, in row groups of
    ``row_group_rows``: what a fake platform serves as a batch's file."""
    buffer = io.BytesIO()
    pq.write_table(
        xdm_table(rows, seed=seed),
        buffer,
        row_group_size=row_group_rows,
        compression=compression,
    )
    return buffer.getvalue()


def xdm_batches(
    dataset_id: str,
    start: Moment,
    end: Moment,
    count: int,
    *,
    seed: int,
    files_per_batch: int = 2,
    rows: int = 200,
    row_group_rows: int = 50,
) -> list[FakeBatch]:
    """Batches of XDM Parquet files, to add to a fake platform
    (:meth:`FakeAepPlatform.add_batches
    <aep_extract.testing.FakeAepPlatform.add_batches>`) for testing transforms
    end to end.

    As :meth:`FakeAepPlatform.make_batches
    <aep_extract.testing.FakeAepPlatform.make_batches>` (``success`` batches of
    ``files_per_batch`` Parquet-named files), each file holding ``rows`` rows of
    :func:`xdm_rows`, seeded by ``seed`` and its place: the same arguments give
    the same bytes.
    """
    batches = make_batches(
        dataset_id,
        start,
        end,
        count,
        seed=seed,
        files_per_batch=files_per_batch,
        status="success",
        max_file_size=1,
    )
    made: list[FakeBatch] = []
    for number, batch in enumerate(batches):
        leaves = []
        for place, leaf in enumerate(batch.dataset_files):
            content = xdm_parquet(
                rows=rows,
                row_group_rows=row_group_rows,
                seed=(seed * 1000 + number) * 1000 + place,
            )
            files = [attrs.evolve(file, content=content) for file in leaf.files]
            leaves.append(attrs.evolve(leaf, files=files))
        made.append(attrs.evolve(batch, dataset_files=leaves))
    return made
