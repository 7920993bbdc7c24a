"""The drift job: the current traffic against the champion's own training reference sample.

``python -m monitoring.drift`` (``make drift``) loads the champion and its reference sample,
builds the current window (a prediction-log window or a transactions file), judges it with
``monitoring.drift_analysis`` (Evidently: what counts as drift and which features it names)
and publishes the JSON summary, the HTML report, MLflow and Prometheus metrics.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from fraudops.bundle import MODEL_NAME, load_reference_sample, load_registered_bundle
from fraudops.config import Params, load_params
from fraudops.paths import paths
from monitoring.drift_analysis import DriftAnalysis, detect_drift
from monitoring.outputs import (
    EXIT_DRIFT,
    add_job_arguments,
    artifact_lines,
    build_summary,
    default_prediction_log_dir,
    default_report_dir,
    exit_code,
    fail,
    model_ref,
    publish,
    quiet_mlflow_downloads,
)
from monitoring.prometheus import drift_gauges, push, pushgateway_url, write_textfile
from monitoring.trigger import trigger_if_found
from monitoring.window import (
    MonitoringInputError,
    bounded_sample,
    champion_scores,
    is_transactions_file,
    is_uri,
    load_prediction_window,
    load_transaction_window,
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
    gauges = drift_gauges(summary)
    write_textfile(gauges, Path(summary["artifacts"]["metrics"]))
    if config.pushgateway_url:
        push(gauges, config.pushgateway_url, job="fraud-drift")
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
