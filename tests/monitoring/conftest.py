"""Fixtures of the monitoring tier: a small simulated world, a tiny champion, live traffic.

The world is the project's own simulator (1,000 customers, 75 days), featurised with the
ONE feature definition and a 30-tree booster trained by ``training.train`` -- the same code
the pipeline runs, just small. ``registry`` additionally runs the training stage into a
SQLite MLflow so the champion, its thresholds and its reference sample come from the
registry exactly as the drift job reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from data.simulate import simulate_next_days, simulate_transactions
from features.definitions import build_training_set, compute_entity_features
from fraudops.bundle import SCORE_COLUMN, ModelBundle
from fraudops.config import DriftScenario, Params
from monitoring.window import champion_scores, transaction_features
from serving.prediction_log import PredictionLogWriter, PredictionRecord
from training.train import train_models

#: 40 burn-in + 21 train + 7 gap + 7 test = 75 days: large enough that held-out traffic of
#: the same process shows no drift (a smaller world's terminal-risk features are too noisy).
WORLD_PARAMS = {
    "simulate": {"seed": 7, "n_days": 75, "n_customers": 1000, "n_terminals": 2000},
    "train": {
        "seed": 7,
        "burn_in_days": 40,
        "train_days": 21,
        "validation_days": 7,
        "gap_days": 7,
        "test_days": 7,
        "reference_sample_size": 5000,
        "xgboost": {"n_estimators": 30, "max_depth": 4, "learning_rate": 0.3},
    },
    "evaluate": {"fpr_budget": 0.05, "top_k_per_day": 20, "review_cost": 5.0},
    # The registration gate is the training tier's business; here every model registers.
    "register": {"min_net_benefit": -1e12, "min_f1": 0.0},
}
LIVE_DAYS = 7


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so lru_cache can key on it
class World:
    """Simulated history, its features, and the champion trained on it."""

    params: Params
    history: pd.DataFrame
    training_set: pd.DataFrame
    bundle: ModelBundle
    reference: pd.DataFrame

    def live(self, drift: DriftScenario = "none", strength: float = 1.0) -> pd.DataFrame:
        """The next LIVE_DAYS days of raw labelled transactions (cached per scenario)."""
        return _live(self, drift, strength).copy()

    def live_window(self, drift: DriftScenario = "none", strength: float = 1.0) -> pd.DataFrame:
        """Live traffic featurised after the history and scored by the champion."""
        return _live_window(self, drift, strength).copy()


@lru_cache(maxsize=16)
def _live(world: World, drift: str, strength: float) -> pd.DataFrame:
    simulate = world.params.simulate.model_copy(update={"drift_strength": strength})
    return simulate_next_days(world.history, LIVE_DAYS, simulate, drift=drift)


@lru_cache(maxsize=16)
def _live_window(world: World, drift: str, strength: float) -> pd.DataFrame:
    live = _live(world, drift, strength)
    featured = transaction_features(live, world.params.featurize, world.history)
    scored = champion_scores(featured, world.bundle)
    scored["model_version"] = world.bundle.model_version
    return scored


@pytest.fixture(scope="session")
def world() -> World:
    """~150k simulated transactions, features, and a 30-tree champion ("version 1")."""
    params = Params.model_validate(WORLD_PARAMS)
    history = simulate_transactions(params.simulate)
    customer_rows, terminal_rows = compute_entity_features(history, params.featurize)
    training_set = build_training_set(history, customer_rows, terminal_rows)
    result = train_models(training_set, params)
    bundle = result.bundle
    bundle.model_version = "1"
    return World(params, history, training_set, bundle, result.reference_sample)


@dataclass(frozen=True)
class Registry:
    """A project root with a SQLite MLflow whose @champion was trained on the world."""

    root: Path
    tracking_uri: str
    bundle: ModelBundle
    reference: pd.DataFrame


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, world: World) -> Registry:
    """The training stage run into a fresh registry: version 1 becomes @champion."""
    from fraudops.bundle import load_reference_sample, load_registered_bundle
    from training.run import run_training

    root = tmp_path_factory.mktemp("monitoring-project")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    training_set = root / "training_set.parquet"
    world.training_set.to_parquet(training_set, index=False)
    with pytest.MonkeyPatch.context() as patch:
        # Artifact locations derive from the project root: keep them inside tmp.
        patch.setenv("FRAUD_PROJECT_ROOT", str(root))
        run_training(
            world.params,
            training_set=training_set,
            artifacts_dir=root / "artifacts",
            tracking_uri=uri,
        )
    bundle = load_registered_bundle("champion", tracking_uri=uri)
    reference = load_reference_sample("champion", tracking_uri=uri)
    return Registry(root, uri, bundle, reference)


@pytest.fixture
def project(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The registry's project root as FRAUD_PROJECT_ROOT and its MLflow as the default."""
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(registry.root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("FRAUD_PARAMS", str(Path(__file__).resolve().parents[2] / "params.yaml"))
    monkeypatch.delenv("FRAUD_PUSHGATEWAY_URL", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return registry


def write_prediction_log(
    directory: Path, window: pd.DataFrame, feature_names: tuple[str, ...], served_by: str = "test"
) -> Path:
    """Write ``window`` (features + score + decision + model_version) as a prediction log."""
    records = []
    for i, row in enumerate(window.itertuples(index=False)):
        values = row._asdict()
        features = {
            name: None if pd.isna(values[name]) else float(values[name]) for name in feature_names
        }
        records.append(
            PredictionRecord(
                request_id=f"req-{i}",
                transaction_id=int(values["transaction_id"]),
                tx_datetime=pd.Timestamp(values["tx_datetime"]).isoformat(),
                customer_id=int(values["customer_id"]),
                terminal_id=int(values["terminal_id"]),
                tx_amount=float(values["tx_amount"]),
                model_version=str(values["model_version"]),
                fraud_probability=float(values[SCORE_COLUMN]),
                decision=str(values["decision"]),
                latency_ms=1.0,
                features=features,
                served_by=served_by,
            )
        )
    PredictionLogWriter(directory).write(records)
    return directory
