"""Drift of the current traffic against the champion's own training reference sample.

Evidently 0.7 does the statistics: per-feature drift over the model's features (explicit
column types and effect-size methods from ``params.yaml``), PSI on the features the booster
relies on most (gain), the missing-value share per field against the reference, and the
score distribution. This module only decides what counts as drift and names it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import MissingValueCount, ValueDrift
from evidently.presets import DataDriftPreset
from evidently.tests import Reference, lte

from fraudops.config import DriftParams, Params, load_params
from fraudops.paths import paths
from monitoring.outputs import (
    EXIT_DRIFT,
    add_job_arguments,
    artifact_lines,
    build_summary,
    exit_code,
    fail,
    model_ref,
    publish,
    quiet_mlflow_downloads,
    trigger_if_found,
)
from monitoring.prometheus import drift_gauges, exposition, push, pushgateway_url, write_textfile
from monitoring.window import (
    DECISION_COLUMN,
    MonitoringInputError,
    bounded_sample,
    champion_scores,
    is_transactions_file,
    is_uri,
    load_prediction_window,
    load_transaction_window,
    require_features,
)
from training.bundle import (
    APPROVE,
    MODEL_NAME,
    SCORE_COLUMN,
    ModelBundle,
    load_reference_sample,
    load_registered_bundle,
)

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


def _results(snapshot) -> tuple[dict, dict]:
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
    features = list(bundle.feature_names)
    categorical = [f for f in features if f in params.categorical_features]
    empty_current = [f for f in features if not cur[f].notna().any()]
    empty_reference = [f for f in features if not ref[f].notna().any()]
    comparable = [f for f in features if f not in empty_current and f not in empty_reference]
    gain = feature_gain(bundle)
    top = top_features(bundle, params.psi_top_k)
    psi_columns = [f for f in top if f in comparable]

    definition = DataDefinition(
        numerical_columns=[f for f in features if f not in categorical] + [SCORE_COLUMN],
        categorical_columns=categorical + [DECISION_COLUMN],
    )
    snapshot = _report(features, comparable, psi_columns, params).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    drift, missing = _results(snapshot)

    per_feature: dict[str, dict] = {}
    for name in features:
        method = params.cat_method if name in categorical else params.num_method
        if name in comparable:
            per_feature[name] = {"statistic": method, **drift[(name, method)]}
        else:
            # Nothing to compare on one side: it is the missing-value check's finding, and
            # a feature the model can no longer see at all counts as drifted.
            per_feature[name] = {
                "statistic": ALL_MISSING,
                "score": None,
                "threshold": None,
                "drifted": name in empty_current and name not in empty_reference,
            }
    for name, entry in per_feature.items():
        entry["judged"] = name not in params.calendar_features
    drifted_count = sum(entry["drifted"] and entry["judged"] for entry in per_feature.values())
    data_drift = {
        "numerical_statistic": params.num_method,
        "categorical_statistic": params.cat_method,
        "drifted_count": drifted_count,
        "drifted_share": drifted_count / len(features),
        "min_drifted_features": params.min_drifted_features,
        "features": per_feature,
    }

    psi = {
        "threshold": params.psi_threshold,
        "warning": params.psi_warning,
        "top_k": params.psi_top_k,
        "features": {},
    }
    for name in top:
        value = drift[(name, "psi")]["score"] if name in psi_columns else None
        psi["features"][name] = {
            "psi": value,
            "gain": gain[name],
            "level": psi_level(value, params) if per_feature[name]["judged"] else "info",
        }

    missing_fields = {}
    for name in features:
        shares = missing[name]
        increase = shares["current"] - shares["reference"]
        missing_fields[name] = {
            **shares,
            "increase": increase,
            "alert": increase > params.max_missing_share_increase,
        }
    missing_values = {"max_increase": params.max_missing_share_increase, "fields": missing_fields}

    score = drift[(SCORE_COLUMN, params.prediction_method)]
    ref_rate, cur_rate = alert_rate(ref[DECISION_COLUMN]), alert_rate(cur[DECISION_COLUMN])
    ratio = _ratio(cur_rate, ref_rate)
    rate_drifted = ratio >= params.max_alert_rate_ratio or ratio <= 1 / params.max_alert_rate_ratio
    prediction = {
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

    signals = []
    if drifted_count >= params.min_drifted_features:
        signals.append(DATA_DRIFT)
    if any(entry["level"] == "alert" for entry in psi["features"].values()):
        signals.append(PSI_ALERT)
    if any(entry["alert"] for entry in missing_fields.values()):
        signals.append(MISSING_VALUES)
    if prediction["drifted"]:
        signals.append(PREDICTION_DRIFT)
    named = {
        name
        for name in features
        if (per_feature[name]["drifted"] and per_feature[name]["judged"])
        or psi["features"].get(name, {}).get("level") == "alert"
        or missing_fields[name]["alert"]
    }
    return DriftAnalysis(
        drift_detected=bool(signals),
        signals=signals,
        drifted_features=[name for name in features if name in named],
        statistics={
            "data_drift": data_drift,
            "psi": psi,
            "missing_values": missing_values,
            "prediction": prediction,
        },
        snapshot=snapshot,
        reference_rows=len(ref),
        current_rows=len(cur),
    )


# --------------------------------------------------------------------------- the job


@dataclass
class DriftJobConfig:
    """What one drift run judges and where it reports (CLI flags map one to one)."""

    source: Path | str
    start: str | None = None
    end: str | None = None
    window_days: int | None = None
    alias: str = "champion"
    model_name: str = MODEL_NAME
    history: Path | None = None
    out_dir: Path | None = None
    log_to_mlflow: bool = True
    tracking_uri: str | None = None
    pushgateway_url: str | None = None


def default_prediction_log_dir() -> Path | str:
    """``FRAUD_PREDICTION_LOG_DIR`` (a folder or an ``s3://`` URI), else ``run/predictions``."""
    configured = os.environ.get("FRAUD_PREDICTION_LOG_DIR")
    if not configured:
        return paths().prediction_log_dir
    return configured if is_uri(configured) else Path(configured)


def default_report_dir(job: str) -> Path:
    """``reports/<job>`` under the project root."""
    return paths().reports_dir / job


def _mlflow_metrics(analysis: DriftAnalysis, rows: int) -> dict[str, float]:
    stats = analysis.statistics
    metrics = {
        "drift_detected": float(analysis.drift_detected),
        "drift_share": stats["data_drift"]["drifted_share"],
        "drifted_features": float(stats["data_drift"]["drifted_count"]),
        "score_drift": stats["prediction"]["score"]["score"],
        "alert_rate": stats["prediction"]["alert_rate"]["current"],
        "alert_rate_ratio": stats["prediction"]["alert_rate"]["ratio"],
        "current_rows": float(rows),
        "analysed_rows": float(analysis.current_rows),
    }
    for name, entry in stats["psi"]["features"].items():
        if entry["psi"] is not None:
            metrics[f"psi_{name}"] = entry["psi"]
    for name, entry in stats["missing_values"]["fields"].items():
        metrics[f"missing_increase_{name}"] = entry["increase"]
    for name, entry in stats["data_drift"]["features"].items():
        if entry["score"] is not None:
            metrics[f"drift_score_{name}"] = entry["score"]
    return metrics


def run_drift_job(config: DriftJobConfig, params: Params) -> tuple[dict, DriftAnalysis]:
    """Load the champion and its reference, build the window, judge it, publish everything."""
    bundle = load_registered_bundle(config.alias, config.model_name, config.tracking_uri)
    reference = load_reference_sample(config.alias, config.model_name, config.tracking_uri)
    window_days = config.window_days or params.drift.window_days
    source = config.source if is_uri(config.source) else Path(config.source)
    if is_transactions_file(source):
        current, window = load_transaction_window(
            source,
            bundle,
            params.featurize,
            config.start,
            config.end,
            window_days,
            history_path=config.history or paths().validated_transactions,
        )
        kind = "transactions"
    else:
        current, window = load_prediction_window(source, config.start, config.end, window_days)
        kind = "prediction_log"
    rows = len(current)
    if rows < params.drift.min_current_rows:
        raise MonitoringInputError(
            f"current window {window} of {kind} {source}: {rows} rows, needs at least "
            f"drift.min_current_rows={params.drift.min_current_rows}; pick another window "
            "with --start/--end or --window-days"
        )
    current = bounded_sample(current, params.drift.max_current_rows, params.drift.sample_seed)
    if kind == "prediction_log" and not current.empty:
        current = champion_scores(current, bundle)
    analysis = detect_drift(reference, current, bundle, params.drift)
    summary = build_summary(
        job="drift",
        detected=analysis.drift_detected,
        model=model_ref(bundle, config.alias, config.model_name),
        window={
            **window.as_dict(),
            "source": str(source),
            "source_kind": kind,
            "rows": rows,
            "rows_analysed": analysis.current_rows,
            "reference_rows": analysis.reference_rows,
        },
        signals=analysis.signals,
        drifted_features=analysis.drifted_features,
        statistics=analysis.statistics,
    )
    out_dir = config.out_dir or default_report_dir("drift")
    summary = publish(
        summary,
        # save_html writes only when given a str (a Path is silently ignored).
        lambda path: analysis.snapshot.save_html(str(path)),
        out_dir,
        metrics=_mlflow_metrics(analysis, rows),
        experiment=params.drift.experiment if config.log_to_mlflow else None,
        tracking_uri=config.tracking_uri,
    )
    text = exposition(drift_gauges(summary))
    write_textfile(text, Path(summary["artifacts"]["metrics"]))
    if config.pushgateway_url:
        push(text, config.pushgateway_url, job="fraud-drift")
    return summary, analysis


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _drift_word(entry: dict) -> str:
    """YES / no, or ``(cal)`` for a calendar feature that is reported but not judged."""
    if not entry.get("judged", True):
        return "(cal)"
    return "YES" if entry["drifted"] else "no"


def console_summary(summary: dict) -> str:
    """The one-screen summary printed at the end of a run."""
    stats, model, window = summary["statistics"], summary["model"], summary["window"]
    verdict = "DRIFT DETECTED" if summary["drift_detected"] else "no drift"
    lines = [
        f"drift job: {verdict}   model {model['name']} v{model['version']} (@{model['alias']})",
        f"window [{window['start']}, {window['end']})  {window['source_kind']} {window['source']}",
        (
            f"rows {window['rows']:,} (analysed {window['rows_analysed']:,}) vs reference "
            f"{window['reference_rows']:,}   signals: {', '.join(summary['signals']) or 'none'}"
        ),
        "",
        f"{'feature':<28}{'statistic':<14}{'score':>8}{'drift':>7}{'psi':>9}{'missing ref->cur':>20}",
    ]
    psi = stats["psi"]["features"]
    for name, entry in stats["data_drift"]["features"].items():
        miss = stats["missing_values"]["fields"][name]
        psi_text = ""
        if name in psi:
            level = psi[name]["level"]
            psi_text = _fmt(psi[name]["psi"]) + ("!" if level == "alert" else "")
        missing_text = f"{miss['reference']:.1%}->{miss['current']:.1%}" + (
            "!" if miss["alert"] else ""
        )
        lines.append(
            f"{name:<28}{entry['statistic'][:13]:<14}{_fmt(entry['score']):>8}"
            f"{_drift_word(entry):>7}{psi_text:>9}{missing_text:>20}"
        )
    prediction = stats["prediction"]
    score, rate = prediction["score"], prediction["alert_rate"]
    lines += [
        "",
        (
            f"prediction: score {score['statistic']} {_fmt(score['score'])} (threshold "
            f"{_fmt(score['threshold'], 'g')}) {'DRIFT' if score['drifted'] else 'ok'}; alert rate "
            f"{rate['reference']:.2%} -> {rate['current']:.2%} (x{_fmt(rate['ratio'], '.2f')}) "
            f"{'DRIFT' if rate['drifted'] else 'ok'}"
        ),
        (
            f"drift share {stats['data_drift']['drifted_share']:.2f}; PSI alert > "
            f"{stats['psi']['threshold']:g} on top-{stats['psi']['top_k']} gain features"
        ),
        *artifact_lines(summary),
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.drift",
        description=(
            "Drift of a prediction-log window (or a CSV/Parquet of transactions) against the "
            "champion's training reference. Exit 0: no drift, 3: drift, 2: error."
        ),
    )
    parser.add_argument(
        "--source",
        help="prediction-log directory or s3:// URI, or a transactions file (default: "
        "FRAUD_PREDICTION_LOG_DIR or run/predictions)",
    )
    parser.add_argument("--start", help="window start (ISO date/time, inclusive)")
    parser.add_argument("--end", help="window end (ISO date/time, exclusive)")
    parser.add_argument(
        "--window-days", type=int, help="window length (default: drift.window_days)"
    )
    parser.add_argument(
        "--history", type=Path, help="transactions before the window (default: validated data)"
    )
    add_job_arguments(parser, "drift")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 no drift, 3 drift, 2 error (one line on stderr)."""
    args = _parser().parse_args(argv)
    quiet_mlflow_downloads()
    try:
        params = load_params()
        config = DriftJobConfig(
            source=args.source or default_prediction_log_dir(),
            start=args.start,
            end=args.end,
            window_days=args.window_days,
            alias=args.alias,
            model_name=args.model_name,
            history=args.history,
            out_dir=args.out_dir,
            log_to_mlflow=not args.no_mlflow,
            pushgateway_url=pushgateway_url(),
        )
        summary, _ = run_drift_job(config, params)
        print(console_summary(summary))
        trigger_if_found(summary, args, params)
    except Exception as exc:  # noqa: BLE001 -- the CLI contract: one line and exit 2, no traceback
        return fail("drift job", exc)
    code = exit_code(summary)
    print(f"exit {code} ({'drift' if code == EXIT_DRIFT else 'no drift'})")
    return code


if __name__ == "__main__":
    sys.exit(main())
