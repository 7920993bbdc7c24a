"""A throw-away serving world: transactions, a materialised Feast repo, a registered model.

The serving tests and the serving benchmark both need the real moving parts (Feast online
store, MLflow registry with an alias, a booster wrapped in a bundle) without the project's
data or a long training run. Everything is built under a folder the caller chooses, with
the project's own feature code, training code and bundle format.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from data.schema import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
)
from features.definitions import FEATURE_NAMES, build_training_set, compute_entity_features
from features.featurize import seed_live_state
from features.store import apply_definitions, feature_store, materialize
from fraudops.bundle import BUNDLE_ARTIFACT_PATH, MODEL_NAME, ModelBundle, Thresholds, save_bundle
from fraudops.config import FeaturizeParams, TrainParams, XGBoostParams
from fraudops.paths import paths
from fraudops.registry import mlflow_client
from training.train import feature_matrix, fit_xgboost


def synthetic_transactions(
    n: int = 3000,
    n_customers: int = 60,
    n_terminals: int = 100,
    days: int = 45,
    seed: int = 0,
    start: str = "2026-01-01",
) -> pd.DataFrame:
    """Labelled transactions in the schema's layout; big amounts and a few terminals are fraud."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86_400, n))
    terminal = rng.integers(0, n_terminals, n)
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    risky_terminal = np.isin(terminal, np.arange(0, n_terminals, 17))
    fraud = (amount > 220) | (risky_terminal & (rng.random(n) < 0.3)) | (rng.random(n) < 0.005)
    return pd.DataFrame(
        {
            TRANSACTION_ID: np.arange(n, dtype=np.int64),
            TX_DATETIME: pd.Timestamp(start) + pd.to_timedelta(seconds, unit="s").floor("s"),
            CUSTOMER_ID: rng.integers(0, n_customers, n).astype(np.int64),
            TERMINAL_ID: terminal.astype(np.int64),
            TX_AMOUNT: amount,
            TX_FRAUD: fraud.astype(np.int8),
            TX_FRAUD_SCENARIO: (fraud * 1).astype(np.int8),
        }
    )


def write_offline_sources(
    root: Path, transactions: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customer/terminal feature tables of ``transactions`` where the repo's sources expect them."""

    layout = paths(root)
    customer, terminal = compute_entity_features(transactions, FeaturizeParams())
    layout.features_dir.mkdir(parents=True, exist_ok=True)
    customer.to_parquet(layout.customer_features, index=False)
    terminal.to_parquet(layout.terminal_features, index=False)
    return customer, terminal


def build_feature_repo(
    root: Path,
    transactions: pd.DataFrame,
    online: str = "sqlite",
    redis_url: str | None = None,
    project: str | None = None,
) -> Path:
    """A Feast repo under ``root`` (the project's yaml), applied and materialised; its path."""

    layout = paths(root)
    if not layout.customer_features.exists():
        write_offline_sources(root, transactions)
    layout.feature_repo.mkdir(parents=True, exist_ok=True)
    shutil.copy(
        paths().feature_repo / "feature_store.yaml", layout.feature_repo / "feature_store.yaml"
    )
    store = feature_store(layout.feature_repo, online=online, redis_url=redis_url, project=project)  # type: ignore[arg-type]
    apply_definitions(store)
    materialize(store, transactions[TX_DATETIME].max())
    seed_live_state(store, transactions)
    return layout.feature_repo


def train_bundle(
    transactions: pd.DataFrame,
    n_estimators: int = 20,
    max_depth: int = 3,
    seed: int = 0,
    review_quantile: float = 0.9,
    decline_quantile: float = 0.98,
) -> ModelBundle:
    """A booster fitted by the project's training code on the point-in-time training set."""

    customer, terminal = _entity_tables(transactions)
    training_set = build_training_set(transactions, customer, terminal)
    X = feature_matrix(training_set, FEATURE_NAMES)
    y = training_set[TX_FRAUD].to_numpy()
    params = TrainParams(
        seed=seed, xgboost=XGBoostParams(n_estimators=n_estimators, max_depth=max_depth)
    )
    booster = fit_xgboost(X, y, FEATURE_NAMES, params)
    scores = booster.inplace_predict(np.ascontiguousarray(X, dtype=np.float32))
    review = float(np.quantile(scores, review_quantile))
    decline = max(float(np.quantile(scores, decline_quantile)), review + 1e-6)
    return ModelBundle(
        booster=booster,
        feature_names=tuple(FEATURE_NAMES),
        thresholds=Thresholds(review=review, decline=decline),
        metadata={"trained_on": "serving sandbox", "rows": len(X), "seed": seed},
    )


def _entity_tables(transactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:

    return compute_entity_features(transactions, FeaturizeParams())


def register_bundle(
    bundle: ModelBundle,
    tracking_uri: str,
    artifact_root: Path,
    model_name: str = MODEL_NAME,
    alias: str | None = "champion",
) -> str:
    """Log the bundle as a run's ``bundle/`` artifacts, register a version, point ``alias`` at it."""
    import tempfile

    from mlflow.exceptions import MlflowException

    client, _ = mlflow_client(tracking_uri, check=False)
    experiment = client.get_experiment_by_name("serving-sandbox")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            "serving-sandbox", artifact_location=Path(artifact_root).as_uri()
        )
    )
    run = client.create_run(experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        client.log_artifacts(
            run.info.run_id, str(save_bundle(bundle, Path(tmp))), BUNDLE_ARTIFACT_PATH
        )
    client.set_terminated(run.info.run_id)
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name)
    version = client.create_model_version(
        model_name, source=f"runs:/{run.info.run_id}/{BUNDLE_ARTIFACT_PATH}", run_id=run.info.run_id
    )
    if alias:
        client.set_registered_model_alias(model_name, alias, str(version.version))
    return str(version.version)


def set_alias(
    tracking_uri: str, version: str, model_name: str = MODEL_NAME, alias: str = "champion"
) -> None:
    """Move ``alias`` to ``version`` (what promotion and rollback do)."""
    client, _ = mlflow_client(tracking_uri, check=False)
    client.set_registered_model_alias(model_name, alias, str(version))
