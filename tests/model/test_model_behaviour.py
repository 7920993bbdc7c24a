"""Model behaviour on a synthetic history with known fraud mechanics.

Directional: a much larger amount relative to the customer's mean never lowers the score.
Reproducible: the same seed gives the same booster. Useful: XGBoost beats the baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.schema import TX_AMOUNT
from features.definitions import FEATURE_NAMES
from fraudops.bundle import APPROVE, DECLINE, REVIEW
from fraudops.config import Params
from training.evaluate import evaluate_baseline, evaluate_bundle
from training.train import TrainingError, TrainingResult, feature_matrix, train_models

RATIO = "customer_amount_ratio_30d"


def test_bundle_uses_the_feature_contract_order(trained: TrainingResult) -> None:
    assert trained.bundle.feature_names == tuple(FEATURE_NAMES)
    assert trained.bundle.booster.feature_names == list(FEATURE_NAMES)


def test_much_larger_amount_than_usual_never_lowers_the_score(trained: TrainingResult) -> None:
    test = trained.split.test
    bigger = test.copy()
    # Five times the usual spend: the amount and its ratio to the 30-day mean grow together.
    bigger[TX_AMOUNT] = test[TX_AMOUNT] * 5
    bigger[RATIO] = test[RATIO] * 5
    names = trained.bundle.feature_names
    before = trained.bundle.predict_proba(feature_matrix(test, names))
    after = trained.bundle.predict_proba(feature_matrix(bigger, names))
    assert np.all(after >= before - 1e-7)
    assert after.mean() > before.mean()  # and on average it raises it


def test_same_seed_same_model(
    training_frame: pd.DataFrame, params: Params, trained: TrainingResult
) -> None:
    again = train_models(training_frame, params)
    X = feature_matrix(trained.split.test, trained.bundle.feature_names)
    np.testing.assert_array_equal(trained.bundle.predict_proba(X), again.bundle.predict_proba(X))
    assert again.bundle.thresholds == trained.bundle.thresholds


def test_xgboost_beats_the_logistic_baseline_on_average_precision(
    trained: TrainingResult, params: Params
) -> None:
    test = trained.split.test
    xgb = evaluate_bundle(trained.bundle, test, params)
    baseline = evaluate_baseline(
        trained.baseline, trained.baseline_thresholds, trained.bundle.feature_names, test, params
    )
    assert xgb["average_precision"] > baseline["average_precision"] + 0.02
    assert xgb["average_precision"] > 0.5  # ~5% fraud: far better than ranking at random


def test_thresholds_order_and_decisions(trained: TrainingResult) -> None:
    thresholds = trained.bundle.thresholds
    assert 0.0 < thresholds.review < thresholds.decline
    X = feature_matrix(trained.split.test, trained.bundle.feature_names)
    decisions = thresholds.decide(trained.bundle.predict_proba(X))
    assert set(decisions) == {APPROVE, REVIEW, DECLINE}


def test_missing_feature_values_still_score(trained: TrainingResult) -> None:
    names = trained.bundle.feature_names
    unknown_customer = np.full((1, len(names)), np.nan, dtype=np.float32)
    unknown_customer[0, names.index(TX_AMOUNT)] = 42.0
    p = trained.bundle.predict_proba(unknown_customer)
    assert p.shape == (1,) and 0.0 <= p[0] <= 1.0


def test_reference_sample_has_features_scores_and_time(
    trained: TrainingResult, params: Params
) -> None:
    reference = trained.reference_sample
    assert len(reference) == params.train.reference_sample_size
    assert {"tx_datetime", "fraud_probability", *FEATURE_NAMES} <= set(reference.columns)
    assert reference["tx_datetime"].max() < trained.split.test["tx_datetime"].min()
    assert reference["fraud_probability"].between(0, 1).all()


def test_missing_feature_column_is_named(training_frame: pd.DataFrame, params: Params) -> None:
    with pytest.raises(TrainingError, match="terminal_risk_7d: feature column missing"):
        train_models(training_frame.drop(columns=["terminal_risk_7d"]), params)


def test_window_without_fraud_is_an_error(training_frame: pd.DataFrame, params: Params) -> None:
    with pytest.raises(TrainingError, match="tx_fraud: the train window has no fraudulent"):
        train_models(training_frame.assign(tx_fraud=0), params)
