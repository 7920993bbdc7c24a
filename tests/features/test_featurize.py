"""The featurize stage end to end on a throw-away project: files, training set, online store."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from data.schema import TRANSACTION_COLUMNS
from features.definitions import (
    CUSTOMER_FEATURES,
    EVENT_TIMESTAMP,
    FEATURE_NAMES,
    FLAG_COLUMNS,
    build_training_set,
    compute_entity_features,
)
from features.featurize import main
from features.store import feature_store, online_entity_features
from fraudops.config import FeaturizeParams
from fraudops.paths import Paths
from tests.features.conftest import random_transactions


@pytest.fixture
def project(feature_project: Paths, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """The temp project as *the* project (params, data) with validated transactions in it."""
    (feature_project.root / "params.yaml").write_text(
        yaml.safe_dump({"featurize": {"windows_days": [1, 7, 30], "label_delay_days": 7}})
    )
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(feature_project.root))
    for name in ("FRAUD_PARAMS", "FRAUD_ONLINE_STORE", "FRAUD_FEAST_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    history = random_transactions(3000, n_customers=200, n_terminals=300, days=60, seed=2)
    feature_project.validated_transactions.parent.mkdir(parents=True)
    history.to_parquet(feature_project.validated_transactions, index=False)
    return feature_project


def test_the_stage_writes_sources_training_set_and_fills_the_online_store(
    project: Paths, tmp_path
) -> None:
    # Run as DVC runs it, from another working directory: paths come from the project root.
    done = subprocess.run(
        [sys.executable, "-m", "features.featurize"],
        check=False,
        cwd=tmp_path,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3000 transactions" in done.stdout and "sqlite online store" in done.stdout

    history = pd.read_parquet(project.validated_transactions)
    customer, terminal = compute_entity_features(history, FeaturizeParams())
    pd.testing.assert_frame_equal(pd.read_parquet(project.customer_features), customer)
    pd.testing.assert_frame_equal(pd.read_parquet(project.terminal_features), terminal)
    training = pd.read_parquet(project.training_set)
    expected_columns = list(TRANSACTION_COLUMNS) + [
        c for c in FEATURE_NAMES + FLAG_COLUMNS if c not in TRANSACTION_COLUMNS
    ]
    assert list(training.columns) == expected_columns
    pd.testing.assert_frame_equal(training, build_training_set(history, customer, terminal))

    # Materialised up to the last transaction: each customer's latest row is online.
    store = feature_store(project.feature_repo)
    latest = customer.sort_values(EVENT_TIMESTAMP).groupby("customer_id").tail(1)
    latest = latest.sort_values("customer_id").reset_index(drop=True)
    online, _ = online_entity_features(store, latest["customer_id"], [])
    pd.testing.assert_frame_equal(
        online[list(CUSTOMER_FEATURES)], latest[list(CUSTOMER_FEATURES)].astype(float)
    )


def test_missing_input_exits_1_with_one_line(
    project: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    project.validated_transactions.unlink()
    assert main([]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "validated transactions not found" in err and "python -m data.validate" in err
    assert not project.training_set.exists()


def test_windows_the_feature_names_do_not_have_exit_1_naming_the_key(
    project: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "params.yaml").write_text(
        yaml.safe_dump({"featurize": {"windows_days": [1, 14], "label_delay_days": 7}})
    )
    assert main([]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("featurize failed: featurize.windows_days: must be [1, 7, 30]")
    assert not project.customer_features.exists()
