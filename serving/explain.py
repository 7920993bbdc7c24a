"""Reason codes: exact per-feature contributions (TreeSHAP) turned into plain language.

Contributions come from XGBoost's own TreeSHAP (``pred_contribs``) on exactly the feature
rows the model scored, in log-odds: ``base_value + sum(contributions) = margin`` and
``sigmoid(margin) = fraud_probability``. Positive contributions raise the fraud risk.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from fraudops.bundle import ModelBundle

_WINDOW = re.compile(r"^(customer|terminal)_(tx_count|mean_amount|risk)_(\d+)d$")
_RATIO = re.compile(r"^customer_amount_ratio_(\d+)d$")
_VELOCITY = re.compile(r"^customer_(tx_count|amount)_(10m|1h)$")


@dataclass(frozen=True)
class Contributions:
    """TreeSHAP of a batch: per-feature contributions, the bias, the margin, the probability."""

    values: np.ndarray  # (n, n_features), log-odds
    base_value: float
    margin: np.ndarray
    probabilities: np.ndarray


def contributions(bundle: ModelBundle, X: np.ndarray) -> Contributions:
    """Exact TreeSHAP contributions of each feature for each row of ``X`` (model order)."""
    import xgboost

    # One thread: OpenMP workers spinning on a busy 2-core box cost ~30 ms per call. No
    # feature names: the rows are in the model's order already (checked by name upstream),
    # and setting names costs more than a small DMatrix itself.
    matrix = xgboost.DMatrix(X, missing=np.nan, nthread=1)
    raw = bundle.booster.predict(matrix, pred_contribs=True, validate_features=False)
    raw = np.asarray(raw, dtype=np.float64)
    values, bias = raw[:, :-1], raw[:, -1]
    return Contributions(
        values=values,
        base_value=float(bias[0]),
        margin=values.sum(axis=1) + bias,
        probabilities=bundle.predict_proba(X),
    )


def _days(n: str) -> str:
    return "day" if n == "1" else f"{n} days"


def describe_feature(feature: str, value: float | None) -> str:
    """What a feature value says about the transaction, in words."""
    if feature == "tx_amount":
        return f"amount is {value:,.2f}" if value is not None else "amount is missing"
    if feature == "tx_during_night":
        return "made at night (before 06:00)" if value else "made in the daytime"
    if feature == "tx_during_weekend":
        return "made on a weekend" if value else "made on a weekday"
    velocity = _VELOCITY.match(feature)
    if velocity:
        kind, span = velocity.groups()
        within = "10 minutes" if span == "10m" else "hour"
        if kind == "tx_count":
            count = 0 if value is None else round(value)
            return (
                f"customer made {count} transaction{'s' if count != 1 else ''} in the last {within}"
            )
        spent = 0.0 if value is None else value
        return f"customer spent {spent:,.2f} in the last {within}"
    ratio = _RATIO.match(feature)
    if ratio:
        if value is None:
            return f"no {ratio.group(1)}-day spending history to compare the amount with"
        return f"amount is {value:.1f}× this customer's {ratio.group(1)}-day average"
    window = _WINDOW.match(feature)
    if window:
        entity, kind, n = window.groups()
        if kind == "tx_count":
            verb = "made" if entity == "customer" else "processed"
            count = 0 if value is None else round(value)
            return f"{entity} {verb} {count} transaction{'s' if count != 1 else ''} in the last {_days(n)}"
        if kind == "mean_amount":
            if value is None:
                return f"customer has no transactions in the last {_days(n)}"
            return f"customer's average amount over the last {_days(n)} is {value:,.2f}"
        if value is None:
            return f"no labelled transactions at this terminal in its {n}-day window"
        return (
            f"{value:.0%} of this terminal's labelled transactions in its {n}-day window were fraud"
        )
    return f"{feature} is {value}"


def reason_text(feature: str, value: float | None, contribution: float) -> str:
    """One plain-language reason: what the feature says and which way it pushes the risk."""
    effect = "raises risk" if contribution > 0 else "lowers risk"
    return f"{describe_feature(feature, value)} ({effect})"


def top_reasons(
    feature_names: tuple[str, ...], row: np.ndarray, contribution_row: np.ndarray, k: int
) -> list[dict[str, Any]]:
    """The ``k`` largest contributions by size as ``{feature, value, contribution, text}``."""
    order = np.argsort(-np.abs(contribution_row), kind="stable")[:k]
    reasons = []
    for j in order:
        raw = float(row[j])
        value = None if math.isnan(raw) else raw
        contribution = float(contribution_row[j])
        reasons.append(
            {
                "feature": feature_names[j],
                "value": value,
                "contribution": contribution,
                "text": reason_text(feature_names[j], value, contribution),
            }
        )
    return reasons


@dataclass(frozen=True)
class AuditRecord:
    """One explanation, as the audit log keeps it (who was told what, by which model)."""

    request_id: str
    model_version: str
    decision: str
    fraud_probability: float
    base_value: float
    reasons: list[dict[str, Any]]
    transaction_id: int | None = None
    explained_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return asdict(self)
