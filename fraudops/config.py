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

#: Repository root: every default path is relative to it (override with FRAUD_PROJECT_ROOT).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The root all relative paths resolve against (a test may point it at a temp copy)."""
    return Path(os.environ.get("FRAUD_PROJECT_ROOT", PROJECT_ROOT)).resolve()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DriftScenario = Literal["none", "amount_shift", "new_fraud_pattern", "night_shift", "missing_values"]


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


class TrainParams(_Section):
    seed: int = 42
    burn_in_days: int = Field(30, ge=0)
    train_days: int = Field(70, ge=1)
    validation_days: int = Field(14, ge=1)
    gap_days: int = Field(7, ge=0)
    test_days: int = Field(14, ge=1)
    xgboost: XGBoostParams = XGBoostParams()


class EvaluateParams(_Section):
    fpr_budget: float = Field(0.01, gt=0, lt=1)
    top_k_per_day: int = Field(100, ge=1)
    review_cost: float = Field(5.0, ge=0)


class RegisterParams(_Section):
    model_name: str = "fraud-detector"
    min_net_benefit: float = 40000.0
    min_f1: float = Field(0.20, ge=0, le=1)
    promote_margin: float = Field(0.005, ge=0)


class Params(_Section):
    """Every section of ``params.yaml``; unknown keys are an error, not a silent typo."""

    data: DataParams = DataParams()
    simulate: SimulateParams = SimulateParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    featurize: FeaturizeParams = FeaturizeParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    register_: RegisterParams = Field(RegisterParams(), alias="register")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConfigError(ValueError):
    """``params.yaml`` is missing or breaks a rule; the message names the key."""


def params_path() -> Path:
    """Where ``params.yaml`` is read from (FRAUD_PARAMS overrides the project default)."""
    return Path(os.environ.get("FRAUD_PARAMS", project_root() / "params.yaml"))


@lru_cache(maxsize=8)
def _load(path: Path) -> Params:
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]).replace("validate_", "validate").replace("register_", "register")
        raise ConfigError(f"{path}: {key}: {first['msg']}") from None


def mlflow_tracking_uri() -> str:
    """MLflow tracking/registry URI: ``MLFLOW_TRACKING_URI`` or SQLite in the project root."""
    default = f"sqlite:///{project_root() / 'mlflow.db'}"
    return os.environ.get("MLFLOW_TRACKING_URI", default)


def load_params(path: Path | None = None) -> Params:
    """Read and validate ``params.yaml`` (cached per path: one config object per process)."""
    return _load((path or params_path()).resolve())
