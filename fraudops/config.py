"""One typed configuration object per process, read from ``params.yaml``.

Nothing here runs at import time: callers ask for ``load_params()`` once and pass the
section a stage needs down into its functions.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The project root and the model name are defined with the environment's settings (which
# import nothing else of the project) and stay importable from here, where callers look.
from fraudops.settings import (
    MODEL_NAME,
    PROJECT_ROOT,  # noqa: F401 -- re-exported
    ProjectSettings,
)


def project_root() -> Path:
    """The root all relative paths resolve against (``FRAUD_PROJECT_ROOT``, else the repo)."""
    return ProjectSettings().project_root.resolve()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DriftScenario = Literal[
    "none", "amount_shift", "new_fraud_pattern", "night_shift", "missing_values", "card_testing"
]


class DataParams(_Section):
    source: str = "simulate"


class SimulateParams(_Section):
    seed: int = 42
    start_date: date = date(2026, 1, 1)
    n_days: int = Field(120, ge=1)
    n_customers: int = Field(5000, ge=1)
    n_terminals: int = Field(10000, ge=1)
    radius: float = Field(5.0, gt=0)
    drift: DriftScenario = "none"
    drift_strength: float = Field(1.0, ge=0)


class ValidateParams(_Section):
    min_rows: int = Field(1000, ge=0)
    min_fraud_rate: float = Field(0.0005, ge=0, le=1)
    max_fraud_rate: float = Field(0.2, ge=0, le=1)


class FeaturizeParams(_Section):
    windows_days: tuple[int, ...] = (1, 7, 30)
    label_delay_days: int = Field(7, ge=0)


class XGBoostParams(_Section):
    n_estimators: int = Field(300, ge=1)
    max_depth: int = Field(6, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    tree_method: str = "hist"
    nthread: int = Field(2, ge=1)
    #: features whose increase may never lower the score (XGBoost monotone constraints)
    monotone_increasing: tuple[str, ...] = ("tx_amount", "customer_amount_ratio_30d")


class TrainParams(_Section):
    seed: int = 42
    burn_in_days: int = Field(30, ge=0)
    train_days: int = Field(69, ge=1)
    validation_days: int = Field(14, ge=1)
    gap_days: int = Field(7, ge=0)
    test_days: int = Field(14, ge=1)
    decline_min_precision: float = Field(0.9, gt=0, le=1)
    reference_sample_size: int = Field(5000, ge=1)
    xgboost: XGBoostParams = XGBoostParams()


class EvaluateParams(_Section):
    fpr_budget: float = Field(0.01, gt=0, lt=1)
    top_k_per_day: int = Field(100, ge=1)
    review_cost: float = Field(5.0, ge=0)


class RegisterParams(_Section):
    model_name: str = MODEL_NAME
    min_net_benefit: float = 40000.0
    min_f1: float = Field(0.20, ge=0, le=1)
    promote_margin: float = Field(0.005, ge=0)
    #: "pipeline": the pipeline moves @champion when the candidate wins; "canary": a winning
    #: candidate stays @candidate for `make canary` to promote on live behaviour (the first
    #: model always becomes champion: there is nothing to canary against).
    promote_via: Literal["pipeline", "canary"] = "pipeline"


class DriftParams(_Section):
    """The drift job: current window vs the champion's own training reference sample."""

    #: MLflow experiment the drift and performance runs are logged to
    experiment: str = "fraud-monitoring"
    #: default current window: the last N days of the source (ending at its newest record)
    window_days: int = Field(7, ge=1)
    #: a larger window is sampled down to this many rows (seeded) to bound run time
    max_current_rows: int = Field(200_000, ge=1000)
    min_current_rows: int = Field(200, ge=1)
    sample_seed: int = 42
    #: 0/1 flags compared as categories; every other model feature is numerical
    categorical_features: tuple[str, ...] = ("tx_during_weekend", "tx_during_night")
    #: features that follow the calendar, not the customers: a window's weekend share is set
    #: by which days it covers (a Friday has none), so they are reported but never judged
    calendar_features: tuple[str, ...] = ("tx_during_weekend",)
    #: per-feature drift: effect-size statistics, so the verdict does not depend on window size
    num_method: str = "wasserstein"
    num_threshold: float = Field(0.1, gt=0)
    cat_method: str = "jensenshannon"
    cat_threshold: float = Field(0.1, gt=0)
    #: data drift is declared when at least this many model features drift
    min_drifted_features: int = Field(1, ge=1)
    #: PSI on the most important features (booster gain); alert above psi_threshold
    psi_top_k: int = Field(5, ge=1)
    psi_threshold: float = Field(0.2, gt=0)
    psi_warning: float = Field(0.1, gt=0)
    #: missing values: alert when a field's missing share rises by more than this (absolute)
    max_missing_share_increase: float = Field(0.05, gt=0, le=1)
    #: prediction drift: score distribution (method/threshold) and alert (REVIEW+DECLINE) rate
    prediction_method: str = "wasserstein"
    prediction_threshold: float = Field(0.1, gt=0)
    max_alert_rate_ratio: float = Field(2.0, gt=1)


class PerformanceParams(_Section):
    """Delayed-label performance: matured windows vs the champion's test metrics."""

    window_days: int = Field(7, ge=1)
    #: concept drift when a window's average precision falls this much below the champion's
    #: test-window value (relative: 0.2 = a 20% drop)
    max_relative_ap_drop: float = Field(0.2, gt=0, lt=1)
    #: windows with fewer labelled frauds are reported but not judged (too noisy)
    min_fraud_per_window: int = Field(10, ge=1)


class TriggerParams(_Section):
    """What a drift (or performance-drop) signal sets in motion."""

    #: local mode: the command that retrains (run from the project root)
    retrain_command: str = "make retrain"
    #: GitHub mode: repository_dispatch event type the ML pipeline workflow listens for
    event_type: str = "drift-detected"
    github_api_version: str = "2022-11-28"
    timeout_seconds: float = Field(10.0, gt=0)
    #: no second trigger for the same model version within this many hours
    cooldown_hours: float = Field(24.0, ge=0)
    #: cool-down state (relative to the project root)
    state_file: str = "run/retrain_trigger.json"


class CanaryParams(_Section):
    """Local canary: champion and candidate behind a weighted splitter, then a verdict."""

    candidate_weight: float = Field(0.2, gt=0, lt=1)
    n_requests: int = Field(2000, ge=1)
    seed: int = 42
    champion_port: int = Field(8090, ge=1, le=65535)
    candidate_port: int = Field(8091, ge=1, le=65535)
    startup_timeout_seconds: float = Field(120.0, gt=0)
    #: no verdict (hold) before the candidate has served this many requests
    min_candidate_requests: int = Field(200, ge=1)
    #: any 5xx above this share rolls back at once (0 = a single error)
    max_error_rate: float = Field(0.0, ge=0, le=1)
    #: candidate latency percentile may be at most ratio x champion's + slack
    max_latency_ratio: float = Field(1.5, ge=1)
    latency_slack_ms: float = Field(5.0, ge=0)
    #: PSI of the candidate's scores against the champion's (same traffic mix)
    max_score_psi: float = Field(0.2, gt=0)
    #: fraud caught / false alerts are judged only with this many labelled frauds per arm
    min_labelled_fraud: int = Field(20, ge=1)
    max_recall_drop: float = Field(0.05, ge=0, le=1)
    max_false_alert_rate_increase: float = Field(0.01, ge=0, le=1)


class ABParams(_Section):
    """A/B analysis: sample size fixed up front, one test at the end (no peeking)."""

    alpha: float = Field(0.05, gt=0, lt=1)
    power: float = Field(0.8, gt=0, lt=1)
    #: binary outcomes (recall, false-alert rate): the control arm's expected rate and the
    #: smallest absolute difference worth detecting
    baseline_rate: float = Field(0.5, gt=0, lt=1)
    minimum_detectable_effect: float = Field(0.05, gt=0, lt=1)
    #: continuous outcome (net benefit per transaction): smallest standardised effect (Cohen's d)
    minimum_detectable_d: float = Field(0.05, gt=0)


class MonitorParams(_Section):
    """Delayed-label performance, retrain trigger, canary and A/B analysis."""

    performance: PerformanceParams = PerformanceParams()
    trigger: TriggerParams = TriggerParams()
    canary: CanaryParams = CanaryParams()
    ab: ABParams = ABParams()


class Params(_Section):
    """Every section of ``params.yaml``; unknown keys are an error, not a silent typo."""

    data: DataParams = DataParams()
    simulate: SimulateParams = SimulateParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    featurize: FeaturizeParams = FeaturizeParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    register_: RegisterParams = Field(RegisterParams(), alias="register")
    drift: DriftParams = DriftParams()
    monitor: MonitorParams = MonitorParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConfigError(ValueError):
    """``params.yaml`` is missing or breaks a rule; the message names the key."""


def params_path() -> Path:
    """Where ``params.yaml`` is read from (FRAUD_PARAMS overrides the project default)."""
    return ProjectSettings().params or project_root() / "params.yaml"


@lru_cache(maxsize=8)
def _load(path: Path) -> Params:
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = (
            ".".join(str(p) for p in first["loc"])
            .replace("validate_", "validate")
            .replace("register_", "register")
        )
        raise ConfigError(f"{path}: {key}: {first['msg']}") from None


def mlflow_tracking_uri() -> str:
    """MLflow tracking/registry URI: ``MLFLOW_TRACKING_URI`` or SQLite in the project root."""
    default = f"sqlite:///{project_root() / 'mlflow.db'}"
    return os.environ.get("MLFLOW_TRACKING_URI", default)


def load_params(path: Path | None = None) -> Params:
    """Read and validate ``params.yaml`` (cached per path: one config object per process)."""
    return _load((path or params_path()).resolve())
