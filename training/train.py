"""Fit the XGBoost fraud model and a logistic-regression baseline on a time split.

The model is fitted on the training window, its decision thresholds are chosen on the
validation days that end that window (data it never saw), and the test window stays
untouched for :mod:`training.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from data.schema import TX_AMOUNT, TX_DATETIME, TX_FRAUD
from features.definitions import FEATURE_NAMES
from fraudops.bundle import SCORE_COLUMN, ModelBundle, Thresholds
from fraudops.config import Params, TrainParams
from training.metrics import net_benefit_curve
from training.split import TimeSplit, split_by_time


class TrainingError(ValueError):
    """The training set cannot produce a model (missing feature, no fraud in a window)."""


@dataclass
class TrainingResult:
    """The candidate bundle, the baseline it must beat, and the split both were fitted on."""

    bundle: ModelBundle
    baseline: Pipeline
    baseline_thresholds: Thresholds
    split: TimeSplit
    reference_sample: pd.DataFrame


def model_feature_names(feature_names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The model's input order: ``features.definitions.FEATURE_NAMES`` unless given."""
    if feature_names is not None:
        return tuple(feature_names)
    return tuple(FEATURE_NAMES)


def feature_matrix(frame: pd.DataFrame, feature_names: Sequence[str]) -> np.ndarray:
    """C-contiguous float32 matrix of ``feature_names`` columns (NaN stays NaN = missing)."""
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise TrainingError(
            f"{missing[0]}: feature column missing from the training set "
            f"({len(missing)} missing: {', '.join(missing[:5])})"
        )
    return np.ascontiguousarray(frame[list(feature_names)].to_numpy(dtype=np.float32))


def fraud_labels(frame: pd.DataFrame, window: str) -> np.ndarray:
    """``tx_fraud`` as 0/1 ints; a window without any fraud cannot train or pick thresholds."""
    if TX_FRAUD not in frame.columns:
        raise TrainingError(f"{TX_FRAUD}: label column missing from the training set")
    y = frame[TX_FRAUD].to_numpy().astype(int)
    if len(y) == 0 or y.sum() == 0:
        raise TrainingError(
            f"{TX_FRAUD}: the {window} window has no fraudulent transactions "
            f"({len(y)} rows); need at least one"
        )
    return y


def xgboost_params(params: TrainParams, feature_names: Sequence[str]) -> dict:
    """Booster parameters: params.train.xgboost plus the seed and monotone constraints."""
    xgb = params.xgboost
    unknown = [name for name in xgb.monotone_increasing if name not in feature_names]
    if unknown:
        raise TrainingError(
            f"train.xgboost.monotone_increasing: {unknown[0]} is not a model feature "
            f"(features: {', '.join(feature_names)})"
        )
    constraints = tuple(int(name in xgb.monotone_increasing) for name in feature_names)
    return {
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "max_depth": xgb.max_depth,
        "eta": xgb.learning_rate,
        "subsample": xgb.subsample,
        "colsample_bytree": xgb.colsample_bytree,
        "min_child_weight": xgb.min_child_weight,
        "tree_method": xgb.tree_method,
        # A fixed thread count and seed make the booster bit-for-bit reproducible.
        "nthread": xgb.nthread,
        "seed": params.seed,
        "monotone_constraints": "(" + ",".join(map(str, constraints)) + ")",
    }


def fit_xgboost(
    X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], params: TrainParams
) -> xgboost.Booster:
    """Fit the fraud booster (deterministic for ``params.seed``)."""
    dtrain = xgboost.DMatrix(X, label=y, feature_names=list(feature_names), missing=np.nan)
    return xgboost.train(
        xgboost_params(params, feature_names),
        dtrain,
        num_boost_round=params.xgboost.n_estimators,
    )


def fit_baseline(X: np.ndarray, y: np.ndarray, seed: int) -> Pipeline:
    """Logistic-regression baseline: median imputation (features may be NaN) + scaling."""
    baseline = Pipeline(
        [
            # keep_empty_features: an all-NaN column must not shift the column order.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=1000, random_state=seed)),
        ]
    )
    return baseline.fit(X, y)


def baseline_scores(baseline: Pipeline, X: np.ndarray) -> np.ndarray:
    """Fraud probability of the baseline for each row of ``X``."""
    return baseline.predict_proba(X)[:, 1]


def choose_thresholds(
    y: np.ndarray,
    scores: np.ndarray,
    amounts: np.ndarray,
    review_cost: float,
    decline_min_precision: float,
) -> Thresholds:
    """Pick decision thresholds on validation data.

    review: the cut with the highest net benefit (fraud caught - review_cost x alerts);
    decline: the lowest cut above review whose precision reaches ``decline_min_precision``
    (automatic declines must be nearly always right). When no cut qualifies, decline sits
    just above the highest validation score: everything risky goes to a human instead.
    """
    scores = np.asarray(scores, dtype=float)
    curve = net_benefit_curve(y, scores, amounts, review_cost)
    best = int(curve["net_benefit"].to_numpy().argmax())
    top = float(scores.max())
    if best == 0:  # no alert pays for its review on validation
        review = float(np.nextafter(top, np.inf))
    else:
        review = float(curve["threshold"].iloc[best])

    order = np.argsort(-scores, kind="mergesort")
    true_positives = np.cumsum(np.asarray(y)[order] == 1)
    s_sorted = scores[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    cuts = s_sorted[last_of_tie]
    precision = true_positives[last_of_tie] / (np.flatnonzero(last_of_tie) + 1)
    eligible = (cuts > review) & (precision >= decline_min_precision)
    if eligible.any():
        decline = float(cuts[eligible].min())
    else:
        decline = float(np.nextafter(max(top, review), np.inf))
    return Thresholds(review=review, decline=decline)


def reference_sample(
    frame: pd.DataFrame, scores: np.ndarray, feature_names: Sequence[str], size: int, seed: int
) -> pd.DataFrame:
    """A seeded sample of training rows with their scores: the drift job's baseline."""
    sample = frame[[TX_DATETIME, *feature_names]].assign(**{SCORE_COLUMN: scores})
    if len(sample) > size:
        sample = sample.sample(n=size, random_state=seed)
    return sample.sort_values(TX_DATETIME).reset_index(drop=True)


def train_models(
    training_set: pd.DataFrame,
    params: Params,
    feature_names: Sequence[str] | None = None,
    metadata: dict | None = None,
) -> TrainingResult:
    """Split by time, fit XGBoost and the baseline, choose thresholds on validation."""
    names = model_feature_names(feature_names)
    split = split_by_time(training_set, params.train)
    X_train, y_train = feature_matrix(split.train, names), fraud_labels(split.train, "train")
    X_val, y_val = (
        feature_matrix(split.validation, names),
        fraud_labels(split.validation, "validation"),
    )
    amounts_val = split.validation[TX_AMOUNT].to_numpy(dtype=float)

    booster = fit_xgboost(X_train, y_train, names, params.train)
    baseline = fit_baseline(X_train, y_train, params.train.seed)

    def thresholds_for(val_scores: np.ndarray) -> Thresholds:
        return choose_thresholds(
            y_val,
            val_scores,
            amounts_val,
            params.evaluate.review_cost,
            params.train.decline_min_precision,
        )

    thresholds = thresholds_for(booster.inplace_predict(X_val))
    baseline_thresholds = thresholds_for(baseline_scores(baseline, X_val))

    bundle = ModelBundle(
        booster=booster,
        feature_names=names,
        thresholds=thresholds,
        metadata={
            **(metadata or {}),
            "windows": split.windows.as_dict(),
            "n_train": len(split.train),
            "n_validation": len(split.validation),
            "threshold_rule": (
                "review = max net benefit on validation (review_cost "
                f"{params.evaluate.review_cost}); decline = lowest cut above review with "
                f"validation precision >= {params.train.decline_min_precision}"
            ),
        },
    )
    window = pd.concat([split.train, split.validation], ignore_index=True)
    window_scores = bundle.predict_proba(feature_matrix(window, names))
    reference = reference_sample(
        window, window_scores, names, params.train.reference_sample_size, params.train.seed
    )
    return TrainingResult(bundle, baseline, baseline_thresholds, split, reference)
