"""Fraud-detection metrics: ranking quality, alert-budget recall and dollars. Never accuracy.

On data with ~1% fraud a model that approves everything is 99% accurate and worthless;
every metric here looks at how well fraud is ranked or what the alerts are worth.
All functions are pure over numpy arrays / pandas frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def _labels_scores(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores: shapes differ, got {y.shape} and {s.shape}")
    return y, s


def average_precision(y_true, scores) -> float:
    """PR-AUC as average precision; NaN when there is no fraud to find."""
    y, s = _labels_scores(y_true, scores)
    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, s))


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y, s = _labels_scores(y_true, scores)
    if y.min(initial=0) == y.max(initial=0):
        return float("nan")
    return float(roc_auc_score(y, s))


def recall_at_fpr(y_true, scores, fpr_budget: float) -> float:
    """Share of fraud caught at the best cut whose false-positive rate stays within budget."""
    y, s = _labels_scores(y_true, scores)
    if y.sum() == 0 or y.sum() == len(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    within = fpr <= fpr_budget
    return float(tpr[within].max())


def card_precision_at_k(
    days: pd.Series | np.ndarray,
    customer_ids,
    y_true,
    scores,
    k: int,
) -> float:
    """Card Precision@k (Fraud-Detection Handbook): mean over days of compromised share of top-k.

    Per day, each customer gets the highest score of their transactions that day and is
    compromised if any of their transactions that day is fraud; the k customers with the
    highest scores are the day's alerts and precision is (compromised among them) / k, as in
    the Handbook (a day with fewer than k customers still divides by k: unused review
    capacity counts against the model).
    """
    y, s = _labels_scores(y_true, scores)
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(pd.Series(np.asarray(days))).dt.normalize(),
            "customer": np.asarray(customer_ids),
            "fraud": y,
            "score": s,
        }
    )
    if frame.empty:
        return float("nan")
    per_customer = frame.groupby(["day", "customer"], sort=False).agg(
        score=("score", "max"), fraud=("fraud", "max")
    )
    per_customer = per_customer.reset_index().sort_values(
        ["day", "score"], ascending=[True, False], kind="mergesort"
    )
    top_k = per_customer.groupby("day", sort=True).head(k)
    per_day = top_k.groupby("day")["fraud"].sum() / k
    return float(per_day.mean())


def alerts(scores, threshold: float) -> np.ndarray:
    """Boolean mask of transactions sent to review (score at or above the threshold)."""
    return np.asarray(scores, dtype=float) >= threshold


def f1_at_threshold(y_true, scores, threshold: float) -> float:
    """F1 of the alerts ``score >= threshold`` (0.0 when nothing is flagged and nothing is fraud)."""
    y, s = _labels_scores(y_true, scores)
    flagged = alerts(s, threshold)
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    if tp == 0:
        return 0.0
    return 2 * tp / (2 * tp + fp + fn)


def precision_recall_at_threshold(y_true, scores, threshold: float) -> tuple[float, float]:
    """Precision and recall of the alerts ``score >= threshold`` (precision NaN without alerts)."""
    y, s = _labels_scores(y_true, scores)
    flagged = alerts(s, threshold)
    tp = int((flagged & (y == 1)).sum())
    precision = tp / flagged.sum() if flagged.sum() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    return float(precision), float(recall)


def net_benefit(y_true, scores, amounts, threshold: float, review_cost: float) -> float:
    """Dollars: fraud amount caught by the alerts minus ``review_cost`` per alert."""
    y, s = _labels_scores(y_true, scores)
    amount = np.asarray(amounts, dtype=float)
    flagged = alerts(s, threshold)
    caught = float(amount[flagged & (y == 1)].sum())
    return caught - review_cost * int(flagged.sum())


def net_benefit_curve(y_true, scores, amounts, review_cost: float) -> pd.DataFrame:
    """Net benefit at every distinct score cut, highest cut first (``threshold``, ``alerts``,
    ``net_benefit``); the first row is the empty alert set (threshold = +inf, benefit 0)."""
    y, s = _labels_scores(y_true, scores)
    amount = np.asarray(amounts, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    caught = np.cumsum(np.where(y[order] == 1, amount[order], 0.0))
    n_alerts = np.arange(1, len(s) + 1)
    benefit = caught - review_cost * n_alerts
    # A cut can only sit between distinct scores: keep the last position of each tie block.
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    return pd.DataFrame(
        {
            "threshold": np.r_[np.inf, s_sorted[last_of_tie]],
            "alerts": np.r_[0, n_alerts[last_of_tie]],
            "net_benefit": np.r_[0.0, benefit[last_of_tie]],
        }
    )


def fraud_metrics(
    frame: pd.DataFrame,
    scores,
    review_threshold: float,
    *,
    fpr_budget: float,
    top_k_per_day: int,
    review_cost: float,
    label: str,
    amount: str,
    customer: str,
    when: str,
) -> dict[str, float]:
    """Every reported metric for one model's scores on one labelled window.

    ``recall_at_fpr`` is at ``fpr_budget`` and ``card_precision_at_k`` at ``top_k_per_day``
    (the keys stay fixed so ``dvc metrics diff`` and the gates can rely on them).
    """
    y = frame[label].to_numpy()
    precision, recall = precision_recall_at_threshold(y, scores, review_threshold)
    return {
        "average_precision": average_precision(y, scores),
        "roc_auc": roc_auc(y, scores),
        "recall_at_fpr": recall_at_fpr(y, scores, fpr_budget),
        "card_precision_at_k": card_precision_at_k(
            frame[when], frame[customer], y, scores, top_k_per_day
        ),
        "f1": f1_at_threshold(y, scores, review_threshold),
        "precision": precision,
        "recall": recall,
        "alerts": float(alerts(scores, review_threshold).sum()),
        "net_benefit": net_benefit(y, scores, frame[amount], review_threshold, review_cost),
        "n_transactions": float(len(frame)),
        "n_fraud": float(y.sum()),
    }
