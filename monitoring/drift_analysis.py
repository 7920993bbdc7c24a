"""Drift statistics: the current window against the champion's own training reference.

Evidently 0.7 does the statistics: per-feature drift over the model's features (explicit
column types and effect-size methods from ``params.yaml``), PSI on the features the booster
relies on most (gain), the missing-value share per field against the reference, and the
score distribution. This module only decides what counts as drift and names it (pure: no
files, no registry); the job around it -- which window, which model, where the results go --
is ``monitoring.drift``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import MissingValueCount, ValueDrift
from evidently.presets import DataDriftPreset
from evidently.tests import Reference, lte

from fraudops.bundle import APPROVE, SCORE_COLUMN, ModelBundle
from fraudops.config import DriftParams
from monitoring.window import DECISION_COLUMN, MonitoringInputError, require_features

#: Signal names, as they appear in the JSON summary's ``signals`` list.
DATA_DRIFT, PSI_ALERT, MISSING_VALUES, PREDICTION_DRIFT = (
    "data_drift",
    "psi",
    "missing_values",
    "prediction_drift",
)
#: Statistic named for a feature that has no value at all on one side.
ALL_MISSING = "all values missing"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_MISSING_COUNT = "evidently:metric_v2:MissingValueCount"


@dataclass
class DriftAnalysis:
    """The verdict, what fired, the statistics behind it and the Evidently snapshot (HTML)."""

    drift_detected: bool
    signals: list[str]
    drifted_features: list[str]
    statistics: dict
    snapshot: object = field(repr=False)
    reference_rows: int = 0
    current_rows: int = 0


def feature_gain(bundle: ModelBundle) -> dict[str, float]:
    """XGBoost gain (mean loss reduction of a feature's splits) per model feature, model order.

    A feature no tree splits on gets 0.
    """
    scores = bundle.booster.get_score(importance_type="gain")
    # A booster trained on a bare array names its features f0, f1, ... in model order.
    return {
        name: float(scores.get(name, scores.get(f"f{i}", 0.0)))
        for i, name in enumerate(bundle.feature_names)
    }


def top_features(bundle: ModelBundle, k: int) -> list[str]:
    """The ``k`` features with the highest gain (ties keep model order)."""
    gain = feature_gain(bundle)
    ranked = sorted(bundle.feature_names, key=lambda name: -gain[name])
    return ranked[:k]


def psi_level(psi: float | None, params: DriftParams) -> str:
    """``alert`` above ``psi_threshold``, ``warning`` above ``psi_warning``, else ``ok``."""
    if psi is None or not math.isfinite(psi):
        return "n/a"
    if psi > params.psi_threshold:
        return "alert"
    if psi > params.psi_warning:
        return "warning"
    return "ok"


def alert_rate(decisions: np.ndarray) -> float:
    """Share of transactions sent to review or declined."""
    decisions = np.asarray(decisions)
    return float((decisions != APPROVE).mean()) if decisions.size else float("nan")


def _ratio(current: float, reference: float) -> float:
    if reference > 0:
        return current / reference
    return 1.0 if current == 0 else float("inf")


def psi(reference: pd.Series, current: pd.Series) -> float:
    """Evidently's PSI of ``current`` against ``reference`` (one numerical series).

    The same statistic the drift job reports for its top features, for callers comparing
    two score samples (the canary: candidate vs champion).
    """
    column = "value"
    definition = DataDefinition(numerical_columns=[column])
    snapshot = Report([ValueDrift(column=column, method="psi")]).run(
        Dataset.from_pandas(
            pd.DataFrame({column: current.astype(float)}), data_definition=definition
        ),
        Dataset.from_pandas(
            pd.DataFrame({column: reference.astype(float)}), data_definition=definition
        ),
    )
    return float(snapshot.dict()["metrics"][0]["value"])


def _frames(
    reference: pd.DataFrame, current: pd.DataFrame, bundle: ModelBundle
) -> tuple[pd.DataFrame, pd.DataFrame]:
    features = list(bundle.feature_names)
    require_features(reference, bundle.feature_names, "the reference sample")
    require_features(current, bundle.feature_names, "the current window")
    for frame, what in ((reference, "the reference sample"), (current, "the current window")):
        if SCORE_COLUMN not in frame.columns:
            raise MonitoringInputError(f"{SCORE_COLUMN}: score column missing from {what}")
    columns = features + [SCORE_COLUMN]
    ref = reference[columns].apply(pd.to_numeric, errors="coerce").astype("float64")
    cur = current[columns].apply(pd.to_numeric, errors="coerce").astype("float64")
    ref[DECISION_COLUMN] = bundle.thresholds.decide(ref[SCORE_COLUMN].to_numpy())
    cur[DECISION_COLUMN] = bundle.thresholds.decide(cur[SCORE_COLUMN].to_numpy())
    return ref.reset_index(drop=True), cur.reset_index(drop=True)


def _report(
    features: list[str],
    comparable: list[str],
    psi_columns: list[str],
    params: DriftParams,
) -> Report:
    metrics: list = []
    if comparable:
        metrics.append(
            DataDriftPreset(
                columns=comparable,
                num_method=params.num_method,
                num_threshold=params.num_threshold,
                cat_method=params.cat_method,
                cat_threshold=params.cat_threshold,
                # The preset's "dataset drift" test fails at this share: our feature count rule.
                drift_share=min(1.0, params.min_drifted_features / len(comparable)),
            )
        )
    metrics += [
        ValueDrift(column=c, method="psi", threshold=params.psi_threshold) for c in psi_columns
    ]
    metrics += [
        MissingValueCount(
            column=c,
            tests=[],
            share_tests=[lte(Reference(absolute=params.max_missing_share_increase))],
        )
        for c in features
    ]
    metrics.append(
        ValueDrift(
            column=SCORE_COLUMN,
            method=params.prediction_method,
            threshold=params.prediction_threshold,
        )
    )
    return Report(metrics, include_tests=True)


def _results(snapshot: Snapshot) -> tuple[dict, dict]:
    """(ValueDrift scores and statuses keyed by (column, method), missing shares by column)."""
    exported = snapshot.dict()
    status_by_metric = {
        test["metric_config"]["metric_id"]: str(test["status"]).split(".")[-1]
        for test in exported["tests"]
    }
    drift: dict[tuple[str, str], dict] = {}
    missing: dict[str, dict] = {}
    for metric in exported["metrics"]:
        config = metric.get("config", {})
        kind = config.get("type")
        if kind == _VALUE_DRIFT:
            drift[(config["column"], config.get("method"))] = {
                "score": float(metric["value"]),
                "threshold": config.get("threshold"),
                "drifted": status_by_metric.get(metric["id"]) == "FAIL",
            }
        elif kind == _MISSING_COUNT:
            reference = snapshot.context.get_reference_metric_result(metric["id"])
            missing[config["column"]] = {
                "reference": float(reference.share.value),
                "current": float(metric["value"]["share"]),
            }
    return drift, missing


@dataclass(frozen=True)
class _Columns:
    """Which model features are compared, and how, for one reference/current pair."""

    features: list[str]
    categorical: list[str]
    empty_current: list[str]
    empty_reference: list[str]
    comparable: list[str]
    top: list[str]
    psi_columns: list[str]


def _columns(
    ref: pd.DataFrame, cur: pd.DataFrame, bundle: ModelBundle, params: DriftParams
) -> _Columns:
    features = list(bundle.feature_names)
    empty_current = [f for f in features if not cur[f].notna().any()]
    empty_reference = [f for f in features if not ref[f].notna().any()]
    comparable = [f for f in features if f not in empty_current and f not in empty_reference]
    top = top_features(bundle, params.psi_top_k)
    return _Columns(
        features=features,
        categorical=[f for f in features if f in params.categorical_features],
        empty_current=empty_current,
        empty_reference=empty_reference,
        comparable=comparable,
        top=top,
        psi_columns=[f for f in top if f in comparable],
    )


def _run_report(
    ref: pd.DataFrame, cur: pd.DataFrame, cols: _Columns, params: DriftParams
) -> Snapshot:
    """The Evidently snapshot of ``cur`` against ``ref``."""
    definition = DataDefinition(
        numerical_columns=[f for f in cols.features if f not in cols.categorical] + [SCORE_COLUMN],
        categorical_columns=cols.categorical + [DECISION_COLUMN],
    )
    return _report(cols.features, cols.comparable, cols.psi_columns, params).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )


def _data_drift(drift: dict, cols: _Columns, params: DriftParams) -> dict:
    """Per-feature drift and the count of judged, drifted features."""
    per_feature: dict[str, dict] = {}
    for name in cols.features:
        method = params.cat_method if name in cols.categorical else params.num_method
        if name in cols.comparable:
            per_feature[name] = {"statistic": method, **drift[(name, method)]}
        else:
            # Nothing to compare on one side: it is the missing-value check's finding, and
            # a feature the model can no longer see at all counts as drifted.
            per_feature[name] = {
                "statistic": ALL_MISSING,
                "score": None,
                "threshold": None,
                "drifted": name in cols.empty_current and name not in cols.empty_reference,
            }
    for name, entry in per_feature.items():
        entry["judged"] = name not in params.calendar_features
    drifted_count = sum(entry["drifted"] and entry["judged"] for entry in per_feature.values())
    return {
        "numerical_statistic": params.num_method,
        "categorical_statistic": params.cat_method,
        "drifted_count": drifted_count,
        "drifted_share": drifted_count / len(cols.features),
        "min_drifted_features": params.min_drifted_features,
        "features": per_feature,
    }


def _psi(
    drift: dict, cols: _Columns, per_feature: dict, bundle: ModelBundle, params: DriftParams
) -> dict:
    """PSI and its level on the top-gain features (calendar features: ``info`` only)."""
    gain = feature_gain(bundle)
    stats: dict = {
        "threshold": params.psi_threshold,
        "warning": params.psi_warning,
        "top_k": params.psi_top_k,
        "features": {},
    }
    for name in cols.top:
        value = drift[(name, "psi")]["score"] if name in cols.psi_columns else None
        stats["features"][name] = {
            "psi": value,
            "gain": gain[name],
            "level": psi_level(value, params) if per_feature[name]["judged"] else "info",
        }
    return stats


def _missing_values(missing: dict, cols: _Columns, params: DriftParams) -> dict:
    """Missing share per field, reference vs current, and whether it rose too much."""
    fields = {}
    for name in cols.features:
        shares = missing[name]
        increase = shares["current"] - shares["reference"]
        fields[name] = {
            **shares,
            "increase": increase,
            "alert": increase > params.max_missing_share_increase,
        }
    return {"max_increase": params.max_missing_share_increase, "fields": fields}


def _prediction(drift: dict, ref: pd.DataFrame, cur: pd.DataFrame, params: DriftParams) -> dict:
    """Score-distribution drift and the alert rate's move (either one is prediction drift)."""
    score = drift[(SCORE_COLUMN, params.prediction_method)]
    ref_rate, cur_rate = alert_rate(ref[DECISION_COLUMN]), alert_rate(cur[DECISION_COLUMN])
    ratio = _ratio(cur_rate, ref_rate)
    rate_drifted = ratio >= params.max_alert_rate_ratio or ratio <= 1 / params.max_alert_rate_ratio
    return {
        "score": {
            "statistic": params.prediction_method,
            **score,
            "reference_mean": float(ref[SCORE_COLUMN].mean()),
            "current_mean": float(cur[SCORE_COLUMN].mean()),
        },
        "alert_rate": {
            "reference": ref_rate,
            "current": cur_rate,
            "ratio": ratio,
            "max_ratio": params.max_alert_rate_ratio,
            "drifted": bool(rate_drifted),
        },
        "decision_rates": {
            "reference": ref[DECISION_COLUMN].value_counts(normalize=True).to_dict(),
            "current": cur[DECISION_COLUMN].value_counts(normalize=True).to_dict(),
        },
        "drifted": bool(score["drifted"] or rate_drifted),
    }


def _signals(statistics: dict, params: DriftParams) -> list[str]:
    """The signals that fired, in the summary's order."""
    signals = []
    if statistics["data_drift"]["drifted_count"] >= params.min_drifted_features:
        signals.append(DATA_DRIFT)
    if any(entry["level"] == "alert" for entry in statistics["psi"]["features"].values()):
        signals.append(PSI_ALERT)
    if any(entry["alert"] for entry in statistics["missing_values"]["fields"].values()):
        signals.append(MISSING_VALUES)
    if statistics["prediction"]["drifted"]:
        signals.append(PREDICTION_DRIFT)
    return signals


def _named_features(statistics: dict, features: list[str]) -> list[str]:
    """Features a signal names (judged drift, a PSI alert or a missing-share alert), in order."""
    per_feature = statistics["data_drift"]["features"]
    psi_features = statistics["psi"]["features"]
    missing_fields = statistics["missing_values"]["fields"]
    named = {
        name
        for name in features
        if (per_feature[name]["drifted"] and per_feature[name]["judged"])
        or psi_features.get(name, {}).get("level") == "alert"
        or missing_fields[name]["alert"]
    }
    return [name for name in features if name in named]


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    bundle: ModelBundle,
    params: DriftParams,
) -> DriftAnalysis:
    """Compare ``current`` (features + ``fraud_probability``) with the champion's reference.

    Drift is declared when any signal fires: at least ``min_drifted_features`` model
    features drift; a top-``psi_top_k`` feature's PSI exceeds ``psi_threshold``; a field's
    missing share rises by more than ``max_missing_share_increase``; or the predictions
    drift (score distribution, or the alert rate moving by ``max_alert_rate_ratio``).
    """
    if len(current) < params.min_current_rows:
        raise MonitoringInputError(
            f"current window: needs at least drift.min_current_rows={params.min_current_rows} "
            f"rows, got {len(current)}"
        )
    ref, cur = _frames(reference, current, bundle)
    cols = _columns(ref, cur, bundle, params)
    snapshot = _run_report(ref, cur, cols, params)
    drift, missing = _results(snapshot)
    data_drift = _data_drift(drift, cols, params)
    statistics = {
        "data_drift": data_drift,
        "psi": _psi(drift, cols, data_drift["features"], bundle, params),
        "missing_values": _missing_values(missing, cols, params),
        "prediction": _prediction(drift, ref, cur, params),
    }
    signals = _signals(statistics, params)
    return DriftAnalysis(
        drift_detected=bool(signals),
        signals=signals,
        drifted_features=_named_features(statistics, cols.features),
        statistics=statistics,
        snapshot=snapshot,
        reference_rows=len(ref),
        current_rows=len(cur),
    )
