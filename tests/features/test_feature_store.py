"""The Feast feature store: offline == merge_asof, online == offline (SQLite and Redis).

Training–serving skew is a tested property here: after materialising up to ``T``, the
online rows of every entity equal Feast's point-in-time rows at ``T``, and the feature
vectors assembled from them equal the training-set rows of transactions at ``T``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from feast import Entity, FeatureService, FeatureStore, FeatureView

from data.schema import TRANSACTION_DTYPES
from features.definitions import (
    CUSTOMER_FEATURES,
    EVENT_TIMESTAMP,
    FEATURE_NAMES,
    FEATURE_SERVICE,
    FLAG_COLUMNS,
    TERMINAL_FEATURES,
    VELOCITY_FEATURES,
    assemble_features,
    build_training_set,
    compute_entity_features,
)
from features.store import (
    apply_definitions,
    feature_store,
    historical_features,
    materialize,
    online_entity_features,
    repo_objects,
)
from fraudops.config import FeaturizeParams
from fraudops.paths import Paths

#: What Feast serves: every feature but the request-time velocity (from the live state).
OUTPUT = [c for c in FEATURE_NAMES + FLAG_COLUMNS if c not in VELOCITY_FEATURES]
#: Ids the history never uses: the online store must answer with NaN rows, not an error.
UNSEEN_CUSTOMER, UNSEEN_TERMINAL = 90_001, 90_002
REDIS_URL = os.environ.get("FRAUD_REDIS_URL", "127.0.0.1:6379")


@pytest.fixture
def offline(feature_project: Paths, small_history: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The offline sources of ``small_history`` written where the feature repo reads them."""
    customer, terminal = compute_entity_features(small_history, FeaturizeParams())
    feature_project.features_dir.mkdir(parents=True)
    customer.to_parquet(feature_project.customer_features, index=False)
    terminal.to_parquet(feature_project.terminal_features, index=False)
    return {"customer": customer, "terminal": terminal}


def _redis_keys(project: str) -> list[bytes]:
    client = redis.Redis.from_url(f"redis://{REDIS_URL}")
    return list(client.scan_iter(match=f"*{project}".encode()))


@pytest.fixture(params=["sqlite", "redis"])
def store(
    request: pytest.FixtureRequest,
    feature_project: Paths,
    offline: dict[str, pd.DataFrame],
    feast_project_name: str,
) -> Iterator[FeatureStore]:
    """The applied store of the temp project, on SQLite and on the real Redis."""
    fs = feature_store(
        feature_project.feature_repo,
        online=request.param,
        redis_url=REDIS_URL,
        project=feast_project_name,
    )
    apply_definitions(fs)
    yield fs
    fs.teardown()  # drops this project's online rows (Redis: its keys) and registry
    if request.param == "redis":
        assert _redis_keys(feast_project_name) == [], "test keys left in Redis"


def requests_at(moment: pd.Timestamp, customers: list[int], terminals: list[int]) -> pd.DataFrame:
    """Transactions at ``moment``: every customer and every terminal at least once."""
    n = max(len(customers), len(terminals))
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(n) + 1_000_000,
            "tx_datetime": moment,
            "customer_id": np.resize(customers, n),
            "terminal_id": np.resize(terminals, n),
            "tx_amount": rng.gamma(2.0, 30.0, n).round(2),
            "tx_fraud": 0,
            "tx_fraud_scenario": 0,
        }
    )
    return frame.astype(TRANSACTION_DTYPES)


def test_feast_point_in_time_join_equals_build_training_set(
    feature_project: Paths,
    offline: dict[str, pd.DataFrame],
    small_history: pd.DataFrame,
    feast_project_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # paths resolve against the repo, whatever the cwd
    fs = feature_store(feature_project.feature_repo, online="sqlite", project=feast_project_name)
    apply_definitions(fs)
    entity_df = small_history[["customer_id", "terminal_id", "tx_datetime"]].rename(
        columns={"tx_datetime": EVENT_TIMESTAMP}
    )
    feast_rows = historical_features(fs, entity_df)
    assert list(feast_rows.index) == list(entity_df.index)

    from_feast = assemble_features(
        small_history, feast_rows[list(CUSTOMER_FEATURES)], feast_rows[list(TERMINAL_FEATURES)]
    )
    expected = build_training_set(small_history, offline["customer"], offline["terminal"])
    pd.testing.assert_frame_equal(from_feast[OUTPUT], expected[OUTPUT])
    # Both kinds of row are compared: first transactions (unknown) and the rest.
    assert 0 < expected["unknown_terminal"].sum() < len(expected) // 10
    assert expected["terminal_risk_7d"].notna().sum() > len(expected) // 2


def test_online_features_equal_offline_features_at_materialisation_time(
    store: FeatureStore, offline: dict[str, pd.DataFrame], small_history: pd.DataFrame
) -> None:
    customers = sorted(small_history["customer_id"].unique()) + [UNSEEN_CUSTOMER]
    terminals = sorted(small_history["terminal_id"].unique()) + [UNSEEN_TERMINAL]
    times = small_history["tx_datetime"]
    # Just after a transaction (its own row has event_timestamp == T exactly: inclusive),
    # then at a later transaction's instant (its own row not yet visible), materialising
    # incrementally into the same online store.
    for moment in (times.iloc[300] + pd.Timedelta(microseconds=1), times.iloc[650]):
        materialize(store, moment)
        customer_rows, terminal_rows = online_entity_features(store, customers, terminals)
        assert list(customer_rows["customer_id"]) == customers
        assert list(terminal_rows["terminal_id"]) == terminals

        # Online rows == Feast's offline point-in-time rows for the same entities at T.
        n = len(customers) + len(terminals)
        entity_df = pd.DataFrame(
            {
                "customer_id": customers + [UNSEEN_CUSTOMER] * len(terminals),
                "terminal_id": [UNSEEN_TERMINAL] * len(customers) + terminals,
                EVENT_TIMESTAMP: [moment] * n,
            }
        )
        at_t = historical_features(store, entity_df)
        pd.testing.assert_frame_equal(
            customer_rows[list(CUSTOMER_FEATURES)],
            at_t[list(CUSTOMER_FEATURES)].iloc[: len(customers)].reset_index(drop=True),
        )
        pd.testing.assert_frame_equal(
            terminal_rows[list(TERMINAL_FEATURES)],
            at_t[list(TERMINAL_FEATURES)].iloc[len(customers) :].reset_index(drop=True),
        )

        # Feature vectors from the online rows == training-set rows of transactions at T.
        requests = requests_at(moment, customers, terminals)
        online_c, online_t = online_entity_features(
            store, requests["customer_id"], requests["terminal_id"]
        )
        served = assemble_features(requests, online_c, online_t)
        trained = build_training_set(requests, offline["customer"], offline["terminal"])
        pd.testing.assert_frame_equal(served[OUTPUT], trained[OUTPUT])

        # The comparison covers known entities, NaN risks of known terminals and unseen ids.
        unseen_customer = (requests["customer_id"] == UNSEEN_CUSTOMER).to_numpy()
        unseen_terminal = (requests["terminal_id"] == UNSEEN_TERMINAL).to_numpy()
        assert unseen_customer.any() and unseen_terminal.any()
        assert (served["unknown_customer"].to_numpy() == unseen_customer).all()
        assert (served["unknown_terminal"].to_numpy() == unseen_terminal).all()
        assert (~served["unknown_customer"]).sum() >= 20
        known_terminal = served[~served["unknown_terminal"]]
        assert known_terminal["terminal_tx_count_30d"].min() >= 1
        assert known_terminal["terminal_risk_1d"].isna().any()


def test_the_online_row_as_of_t_includes_the_transaction_just_before_t(
    store: FeatureStore, small_history: pd.DataFrame
) -> None:
    last = small_history.iloc[-1]
    materialize(store, small_history["tx_datetime"].max() + pd.Timedelta(microseconds=1))
    customer_rows, terminal_rows = online_entity_features(
        store, [last["customer_id"]], [last["terminal_id"]]
    )
    mine = small_history[small_history["customer_id"] == last["customer_id"]]
    recent = mine[mine["tx_datetime"] > last["tx_datetime"] - pd.Timedelta(days=30)]
    assert customer_rows.loc[0, "customer_tx_count_30d"] == len(recent)
    assert customer_rows.loc[0, "customer_mean_amount_30d"] == pytest.approx(
        recent["tx_amount"].mean()
    )
    assert terminal_rows.loc[0, "terminal_tx_count_1d"] >= 1


def test_unknown_ids_online_give_nan_rows_and_flags(store: FeatureStore) -> None:
    customer_rows, terminal_rows = online_entity_features(
        store, [UNSEEN_CUSTOMER, UNSEEN_CUSTOMER + 1], [UNSEEN_TERMINAL, UNSEEN_TERMINAL + 1]
    )
    assert customer_rows[list(CUSTOMER_FEATURES)].isna().all().all()
    assert terminal_rows[list(TERMINAL_FEATURES)].isna().all().all()
    request = requests_at(pd.Timestamp("2026-03-01"), [UNSEEN_CUSTOMER] * 2, [UNSEEN_TERMINAL] * 2)
    served = assemble_features(request, customer_rows, terminal_rows)
    assert served["unknown_customer"].all() and served["unknown_terminal"].all()
    assert (served["customer_tx_count_30d"] == 0).all()
    assert served["customer_amount_ratio_30d"].isna().all()
    empty_c, empty_t = online_entity_features(store, [], [])
    assert empty_c.empty and list(empty_t.columns) == ["terminal_id", *TERMINAL_FEATURES]


def test_redis_rows_live_under_their_own_project(
    feature_project: Paths, offline: dict[str, pd.DataFrame], feast_project_name: str
) -> None:
    fs = feature_store(
        feature_project.feature_repo,
        online="redis",
        redis_url=REDIS_URL,
        project=feast_project_name,
    )
    try:
        apply_definitions(fs)
        materialize(fs, offline["customer"][EVENT_TIMESTAMP].max())
        written = _redis_keys(feast_project_name)
        entities = offline["customer"]["customer_id"].nunique()
        entities += offline["terminal"]["terminal_id"].nunique()
        assert len(written) == entities  # one hash per entity, all namespaced by the project
    finally:
        fs.teardown()
    assert _redis_keys(feast_project_name) == []


def test_the_online_store_is_chosen_by_argument_or_environment(
    feature_project: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = feature_project.feature_repo
    monkeypatch.delenv("FRAUD_FEAST_PROJECT", raising=False)
    monkeypatch.delenv("FRAUD_ONLINE_STORE", raising=False)
    default = feature_store(repo)
    assert default.config.online_store.type == "sqlite"
    assert default.project == "fraud_detection"
    assert Path(default.config.repo_path) == repo

    monkeypatch.setenv("FRAUD_ONLINE_STORE", "redis")
    monkeypatch.setenv("FRAUD_REDIS_URL", "redis.example:6380")
    monkeypatch.setenv("FRAUD_FEAST_PROJECT", "fraud_canary")
    configured = feature_store(repo)
    assert configured.config.online_store.type == "redis"
    assert configured.config.online_store.connection_string == "redis.example:6380"
    assert configured.project == "fraud_canary"

    monkeypatch.delenv("FRAUD_REDIS_URL")
    with pytest.raises(ValueError, match="FRAUD_REDIS_URL: required for the redis online store"):
        feature_store(repo)
    with pytest.raises(ValueError, match="FRAUD_ONLINE_STORE: must be 'sqlite' or 'redis'"):
        feature_store(repo, online="memcached")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="feature_store.yaml not found"):
        feature_store(repo.parent)


def test_feast_objects_follow_the_feature_definition() -> None:
    objects = repo_objects()
    views = {o.name: o for o in objects if isinstance(o, FeatureView)}
    entities = {o.name: o.join_key for o in objects if isinstance(o, Entity)}
    services = [o for o in objects if isinstance(o, FeatureService)]
    assert entities == {"customer": "customer_id", "terminal": "terminal_id"}
    assert [f.name for f in views["customer_spending"].features] == list(CUSTOMER_FEATURES)
    assert [f.name for f in views["terminal_risk"].features] == list(TERMINAL_FEATURES)
    # No expiry: offline as-of joins and online lookups must pick the same (latest) row.
    assert all(v.ttl is not None and v.ttl.total_seconds() == 0 for v in views.values())
    assert [s.name for s in services] == [FEATURE_SERVICE]
    served = [p.name for p in services[0].feature_view_projections]
    assert served == ["customer_spending", "terminal_risk"]


def test_feast_cli_apply_registers_the_same_objects(
    feature_project: Paths, offline: dict[str, pd.DataFrame]
) -> None:
    repo = feature_project.feature_repo
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run(
        [str(feast), "apply"], check=False, cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    registered = FeatureStore(repo_path=str(repo))
    assert {fv.name for fv in registered.list_feature_views()} == {
        "customer_spending",
        "terminal_risk",
    }
    assert registered.get_feature_service(FEATURE_SERVICE).name == FEATURE_SERVICE
    assert registered.get_data_source("customer_features").path == (
        "../../data/features/customer_features.parquet"
    )
