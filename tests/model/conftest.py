"""Fixtures for the model tier: a synthetic training set and a tiny model trained on it."""

from __future__ import annotations

import pandas as pd
import pytest

from fraudops.config import Params
from tests.model.synthetic import small_params, synthetic_training_set
from training.train import TrainingResult, train_models


@pytest.fixture(scope="session")
def training_frame() -> pd.DataFrame:
    """~10k synthetic transactions over 23 days with ~5% fraud; copy before mutating."""
    return synthetic_training_set(seed=0)


@pytest.fixture(scope="session")
def params() -> Params:
    """Split windows and a 20-tree booster sized for the synthetic history."""
    return small_params()


@pytest.fixture(scope="session")
def trained(training_frame: pd.DataFrame, params: Params) -> TrainingResult:
    """XGBoost + baseline fitted on the synthetic history."""
    return train_models(training_frame, params)
