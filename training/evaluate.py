"""Evaluate models on the held-out test window with the fraud metrics.

Champion and candidate are always scored on the SAME test window (the newest labelled
days of the current training set), so their numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve
from sklearn.pipeline import Pipeline

from data.schema import CUSTOMER_ID, TX_AMOUNT, TX_DATETIME, TX_FRAUD
from fraudops.bundle import APPROVE, DECLINE, REVIEW, ModelBundle, Thresholds
from fraudops.config import EvaluateParams, Params
from training.metrics import fraud_metrics
from training.train import baseline_scores, feature_matrix


class EvaluationError(ValueError):
    """A model cannot be scored on this test window (e.g. it needs a feature that is gone)."""


def _section(params: EvaluateParams | Params) -> EvaluateParams:
    return params.evaluate if isinstance(params, Params) else params


def evaluate_scores(
    test_df: pd.DataFrame,
    scores: np.ndarray,
    thresholds: Thresholds,
    params: EvaluateParams | Params,
) -> dict[str, float]:
    """Fraud metrics of ``scores`` on ``test_df``; alerts are ``score >= thresholds.review``."""
    section = _section(params)
    metrics = fraud_metrics(
        test_df,
        scores,
        thresholds.review,
        fpr_budget=section.fpr_budget,
        top_k_per_day=section.top_k_per_day,
        review_cost=section.review_cost,
        label=TX_FRAUD,
        amount=TX_AMOUNT,
        customer=CUSTOMER_ID,
        when=TX_DATETIME,
    )
    decisions = thresholds.decide(scores)
    metrics["declines"] = float((decisions == DECLINE).sum())
    return metrics


def bundle_scores(bundle: ModelBundle, test_df: pd.DataFrame) -> np.ndarray:
    """The bundle's fraud probabilities for ``test_df`` (its own feature order)."""
    missing = [name for name in bundle.feature_names if name not in test_df.columns]
    if missing:
        raise EvaluationError(
            f"{missing[0]}: model version {bundle.model_version or '(unregistered)'} needs this "
            f"feature but the test window does not have it ({len(missing)} missing)"
        )
    return bundle.predict_proba(feature_matrix(test_df, bundle.feature_names))


def evaluate_bundle(
    bundle: ModelBundle, test_df: pd.DataFrame, params: EvaluateParams | Params
) -> dict[str, float]:
    """Fraud metrics of a bundle on a test window, at the bundle's own thresholds."""
    return evaluate_scores(test_df, bundle_scores(bundle, test_df), bundle.thresholds, params)


def evaluate_baseline(
    baseline: Pipeline,
    thresholds: Thresholds,
    feature_names: Sequence[str],
    test_df: pd.DataFrame,
    params: EvaluateParams | Params,
) -> dict[str, float]:
    """Fraud metrics of the logistic-regression baseline on the same test window."""
    scores = baseline_scores(baseline, feature_matrix(test_df, feature_names))
    return evaluate_scores(test_df, scores, thresholds, params)


def compare_models(
    candidate: ModelBundle,
    champion: ModelBundle,
    test_df: pd.DataFrame,
    params: EvaluateParams | Params,
) -> tuple[dict[str, float], dict[str, float]]:
    """(candidate metrics, champion metrics), both on the same ``test_df``."""
    return evaluate_bundle(candidate, test_df, params), evaluate_bundle(champion, test_df, params)


def pr_curve_points(y_true, scores, max_points: int = 200) -> pd.DataFrame:
    """Precision-recall curve (``threshold``, ``precision``, ``recall``), thinned for plotting."""
    precision, recall, thresholds = precision_recall_curve(np.asarray(y_true), np.asarray(scores))
    # sklearn appends the (recall 0, precision 1) end point without a threshold.
    curve = pd.DataFrame(
        {"threshold": thresholds, "precision": precision[:-1], "recall": recall[:-1]}
    )
    return _thin(curve, max_points)


def roc_curve_points(y_true, scores, max_points: int = 200) -> pd.DataFrame:
    """ROC curve (``threshold``, ``fpr``, ``tpr``), thinned for plotting."""
    fpr, tpr, thresholds = roc_curve(np.asarray(y_true), np.asarray(scores))
    curve = pd.DataFrame({"threshold": thresholds, "fpr": fpr, "tpr": tpr})
    curve["threshold"] = curve["threshold"].clip(upper=1.0)
    return _thin(curve, max_points)


def decision_counts(y_true, decisions: np.ndarray) -> pd.DataFrame:
    """Confusion table: rows actual (genuine/fraud), columns APPROVE/REVIEW/DECLINE counts."""
    actual = np.where(np.asarray(y_true).astype(int) == 1, "fraud", "genuine")
    table = pd.crosstab(pd.Series(actual, name="actual"), pd.Series(decisions, name="decision"))
    return table.reindex(
        index=["genuine", "fraud"], columns=[APPROVE, REVIEW, DECLINE], fill_value=0
    )


def _thin(curve: pd.DataFrame, max_points: int) -> pd.DataFrame:
    if len(curve) <= max_points:
        return curve.reset_index(drop=True)
    keep = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return curve.iloc[keep].reset_index(drop=True)
