"""Rows through Feast's provider (:mod:`features.online_rows`) are Feast's own rows.

The live update path writes with ``online_write_batch`` and prebuilt protos instead of
``FeatureStore.write_to_online_store``'s DataFrame path: it must hand the online store
exactly what that path would, and its reads must agree with ``get_online_features``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore

from data.schema import CUSTOMER_ID, TERMINAL_ID
from features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_VIEW,
    EVENT_TIMESTAMP,
    TERMINAL_FEATURES,
    TERMINAL_VIEW,
    compute_entity_features,
)
from features.online_rows import OnlineRows
from features.store import apply_definitions, feature_store, materialize, online_entity_features
from fraudops.config import FeaturizeParams
from fraudops.paths import Paths

REDIS_URL = os.environ.get("FRAUD_REDIS_URL", "127.0.0.1:6379")
UNSEEN = 90_001


@pytest.fixture(params=["sqlite", "redis"])
def store(
    request: pytest.FixtureRequest,
    feature_project: Paths,
    small_history: pd.DataFrame,
    feast_project_name: str,
) -> Iterator[FeatureStore]:
    """The temp project applied and materialised, on SQLite and on the real Redis."""
    customer, terminal = compute_entity_features(small_history, FeaturizeParams())
    feature_project.features_dir.mkdir(parents=True)
    customer.to_parquet(feature_project.customer_features, index=False)
    terminal.to_parquet(feature_project.terminal_features, index=False)
    fs = feature_store(
        feature_project.feature_repo,
        online=request.param,
        redis_url=REDIS_URL,
        project=feast_project_name,
    )
    apply_definitions(fs)
    materialize(fs, small_history["tx_datetime"].max())
    yield fs
    fs.teardown()


def _recorded_writes(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every ``(view name, rows)`` the provider is asked to write from now on (and written)."""
    provider = store._get_provider()
    original = provider.online_write_batch
    calls: list[tuple] = []

    def recording(config, table, data, progress):
        calls.append((table.name, list(data)))
        return original(config, table, data, progress)

    monkeypatch.setattr(provider, "online_write_batch", recording)
    return calls


def test_rows_written_through_the_provider_are_those_of_write_to_online_store(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = OnlineRows(store)
    calls = _recorded_writes(store, monkeypatch)
    stamps_us = [1_772_409_643_000_001, 1_772_409_643_500_123]
    ids = [3, UNSEEN]
    customer = [[2, 5, 9, 10.5, 12.25, 30.125], [1, 1, 1, 7.0, 7.0, 7.0]]
    terminal = [[4, 8, 20, 0.25, np.nan, 0.0], [1, 1, 1, np.nan, np.nan, np.nan]]
    for view, key, columns, values in (
        (CUSTOMER_VIEW, CUSTOMER_ID, CUSTOMER_FEATURES, customer),
        (TERMINAL_VIEW, TERMINAL_ID, TERMINAL_FEATURES, terminal),
    ):
        counts = [c for c in columns if "count" in c]
        frame = pd.DataFrame(values, columns=list(columns))
        frame[counts] = frame[counts].astype(np.int64)
        frame.insert(0, key, np.asarray(ids, np.int64))
        frame[EVENT_TIMESTAMP] = np.asarray(stamps_us, np.int64).astype("datetime64[us]")
        store.write_to_online_store(view, frame)
        rows.write(view, ids, values, stamps_us)
    assert [name for name, _ in calls] == [CUSTOMER_VIEW] * 2 + [TERMINAL_VIEW] * 2
    for (_, from_frame), (_, from_protos) in zip(calls[::2], calls[1::2], strict=True):
        assert from_protos == from_frame  # entity keys, ValueProtos (NaN: empty), times


def test_reads_agree_with_get_online_features(store: FeatureStore) -> None:
    rows = OnlineRows(store)
    customers = [1, UNSEEN, 1, 2]  # a repeated id and an unseen one
    terminals = [UNSEEN, 3, 4, 3]
    feast_c, feast_t = online_entity_features(store, customers, terminals)
    for view, ids, columns, expected in (
        (CUSTOMER_VIEW, customers, CUSTOMER_FEATURES, feast_c),
        (TERMINAL_VIEW, terminals, TERMINAL_FEATURES, feast_t),
    ):
        values, stamps = rows.read(view, ids)
        np.testing.assert_array_equal(values, expected[list(columns)].to_numpy(np.float64))
        unseen = np.asarray(ids) == UNSEEN
        assert (stamps[unseen] == -1).all() and (stamps[~unseen] > 0).all()
