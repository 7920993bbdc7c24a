"""Model performance once fraud labels have matured: the concept-drift signal.

Chargebacks arrive ``featurize.label_delay_days`` after a transaction, so only predictions
older than that can be judged. The job joins those with their labels (by
``transaction_id``), scores each matured window with the same fraud metrics training
reports (``training.metrics`` via ``training.evaluate``: average precision, precision and
recall at the served review threshold, card precision@k, net benefit) and compares the
newest judged window with the champion's own test-window average precision.

``python -m monitoring.performance [--predictions DIR] [--labels FILE] [--as-of TIME]``
has the drift job's output contract: HTML + JSON summary (logged to MLflow), Prometheus
metrics, console summary, exit 0 (no drop) / 3 (performance drop) / 2 (error).
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data.ingest import read_transactions
from data.schema import CUSTOMER_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME, TX_FRAUD
from fraudops.bundle import MODEL_NAME, SCORE_COLUMN, ModelBundle, load_registered_bundle
from fraudops.config import EvaluateParams, Params, PerformanceParams, load_params
from fraudops.paths import paths
from fraudops.registry import mlflow_client
from monitoring.outputs import (
    EXIT_DRIFT,
    add_job_arguments,
    artifact_lines,
    build_summary,
    default_prediction_log_dir,
    exit_code,
    fail,
    model_ref,
    publish,
    quiet_mlflow_downloads,
)
from monitoring.prometheus import (
    performance_gauges,
    push,
    pushgateway_url,
    write_textfile,
)
from monitoring.trigger import trigger_if_found
from monitoring.window import (
    MonitoringInputError,
    champion_scores,
    read_log,
)
from training.evaluate import evaluate_scores

PERFORMANCE_DROP = "performance_drop"
#: The metric whose drop is the concept-drift signal (the registry compares models on it too).
JUDGED_METRIC = "average_precision"
#: The model card's test-window metrics (bundle metadata), else the training run's metric.
RUN_BASELINE_METRIC = f"test_{JUDGED_METRIC}"


@dataclass
class PerformanceJobConfig:
    """What one performance run judges and where it reports (CLI flags map one to one)."""

    predictions: Path | str
    labels: Path
    as_of: str | None = None
    alias: str = "champion"
    model_name: str = MODEL_NAME
    out_dir: Path | None = None
    log_to_mlflow: bool = True
    tracking_uri: str | None = None
    pushgateway_url: str | None = None


def read_labels(path: Path) -> pd.DataFrame:
    """``transaction_id``, ``tx_datetime``, ``tx_fraud`` of a labelled transactions file."""
    path = Path(path)
    if not path.exists():
        raise MonitoringInputError(f"{path}: labels (transactions) file not found")
    return read_transactions(path)[[TRANSACTION_ID, TX_DATETIME, TX_FRAUD]]


def matured_predictions(
    predictions: pd.DataFrame, labels: pd.DataFrame, cutoff: pd.Timestamp
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Predictions made before ``cutoff`` joined with their label, and what was left out.

    A transaction scored twice (a retry, a replay) counts once: its latest prediction.
    """
    # The label file is the one source of truth for labels.
    latest = predictions.drop(columns=[TX_FRAUD], errors="ignore")
    latest = latest.drop_duplicates(TRANSACTION_ID, keep="last")
    mature = latest[latest[TX_DATETIME] < cutoff]
    joined = mature.merge(labels[[TRANSACTION_ID, TX_FRAUD]], on=TRANSACTION_ID, how="inner")
    counts = {
        "predictions": len(latest),
        "matured": len(joined),
        "not_yet_mature": len(latest) - len(mature),
        "without_label": len(mature) - len(joined),
    }
    return joined.sort_values(TX_DATETIME, kind="stable").reset_index(drop=True), counts


def window_metrics(
    matured: pd.DataFrame,
    bundle: ModelBundle,
    cutoff: pd.Timestamp,
    evaluate: EvaluateParams,
    params: PerformanceParams,
) -> list[dict]:
    """Fraud metrics per ``window_days`` window, counted back from ``cutoff``, oldest first."""
    if matured.empty:
        return []
    width = pd.Timedelta(days=params.window_days)
    n_windows = int((cutoff - matured[TX_DATETIME].min()) / width) + 1
    windows = []
    for k in reversed(range(n_windows)):
        start, end = cutoff - (k + 1) * width, cutoff - k * width
        rows = matured[(matured[TX_DATETIME] >= start) & (matured[TX_DATETIME] < end)]
        if rows.empty:
            continue
        labelled = rows[[TX_DATETIME, CUSTOMER_ID, TX_AMOUNT, TX_FRAUD]].reset_index(drop=True)
        metrics = evaluate_scores(
            labelled, rows[SCORE_COLUMN].to_numpy(), bundle.thresholds, evaluate
        )
        n_fraud = int(labelled[TX_FRAUD].sum())
        windows.append(
            {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "judged": n_fraud >= params.min_fraud_per_window,
                **metrics,
            }
        )
    return windows


def baseline_average_precision(bundle: ModelBundle, tracking_uri: str | None = None) -> float:
    """The champion's test-window average precision (model card, else its training run)."""
    recorded = (bundle.metadata.get("metrics") or {}).get(JUDGED_METRIC)
    if recorded is not None:
        return float(recorded)
    if bundle.run_id:
        client, _ = mlflow_client(tracking_uri, check=False)
        run = client.get_run(bundle.run_id)
        if RUN_BASELINE_METRIC in run.data.metrics:
            return float(run.data.metrics[RUN_BASELINE_METRIC])
    raise MonitoringInputError(
        f"{JUDGED_METRIC}: model version {bundle.model_version} records no test-window value "
        f"(bundle metadata metrics or run metric {RUN_BASELINE_METRIC}) to compare with"
    )


def assess(windows: list[dict], baseline_ap: float, params: PerformanceParams) -> dict:
    """Whether the newest judged window's AP fell more than allowed below the baseline."""
    floor = baseline_ap * (1 - params.max_relative_ap_drop)
    judged = [w for w in windows if w["judged"]]
    latest = judged[-1] if judged else None
    dropped = latest is not None and latest[JUDGED_METRIC] < floor
    return {
        "baseline_average_precision": baseline_ap,
        "max_relative_drop": params.max_relative_ap_drop,
        "floor_average_precision": floor,
        "latest_window": latest,
        "relative_change": None if latest is None else latest[JUDGED_METRIC] / baseline_ap - 1,
        "dropped": bool(dropped),
        "judged_windows": len(judged),
        "min_fraud_per_window": params.min_fraud_per_window,
    }


def _html(summary: dict) -> str:
    stats = summary["statistics"]
    table = pd.DataFrame(stats["windows"])
    columns = [
        c
        for c in (
            "start",
            "end",
            "n_transactions",
            "n_fraud",
            "judged",
            "average_precision",
            "precision",
            "recall",
            "card_precision_at_k",
            "net_benefit",
            "alerts",
        )
        if c in table.columns
    ]
    body = (
        table[columns].to_html(index=False, float_format=lambda v: f"{v:.4f}")
        if len(table)
        else "<p>No matured window yet.</p>"
    )
    verdict = "PERFORMANCE DROP" if summary["drift_detected"] else "no drop"
    model = summary["model"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Fraud model performance (matured labels)</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body>
<h1>Fraud model performance with matured labels: {html.escape(verdict)}</h1>
<p>Model {html.escape(str(model["name"]))} v{html.escape(str(model["version"]))} (@{html.escape(str(model["alias"]))});
labels mature after {stats["label_delay_days"]} days; as of {html.escape(stats["as_of"])} (cutoff {html.escape(stats["cutoff"])}).</p>
<p>Baseline (champion test window) average precision {stats["baseline_average_precision"]:.4f};
a judged window below {stats["floor_average_precision"]:.4f} (-{stats["max_relative_drop"]:.0%}) is a concept-drift signal.
Windows with fewer than {stats["min_fraud_per_window"]} frauds are reported, not judged.</p>
<p>Predictions: {stats["counts"]["predictions"]:,}; matured with a label: {stats["counts"]["matured"]:,};
not yet mature: {stats["counts"]["not_yet_mature"]:,}; without a label: {stats["counts"]["without_label"]:,}.</p>
{body}
</body></html>
"""


def run_performance_job(config: PerformanceJobConfig, params: Params) -> dict:
    """Join matured labels with the prediction log, judge each window, publish everything."""
    bundle = load_registered_bundle(config.alias, config.model_name, config.tracking_uri)
    labels = read_labels(config.labels)
    if labels.empty:
        raise MonitoringInputError(f"{config.labels}: no labelled transactions")
    as_of = pd.Timestamp(config.as_of) if config.as_of else labels[TX_DATETIME].max()
    if as_of.tzinfo is not None:
        as_of = as_of.tz_convert("UTC").tz_localize(None)
    delay = params.featurize.label_delay_days
    cutoff = as_of - pd.Timedelta(days=delay)
    log = read_log(config.predictions)
    matured, counts = matured_predictions(log, labels, cutoff)
    if not matured.empty:
        matured = champion_scores(matured, bundle)
    windows = window_metrics(matured, bundle, cutoff, params.evaluate, params.monitor.performance)
    verdict = assess(
        windows, baseline_average_precision(bundle, config.tracking_uri), params.monitor.performance
    )
    statistics = {
        **verdict,
        "windows": windows,
        "label_delay_days": delay,
        "as_of": as_of.isoformat(),
        "cutoff": cutoff.isoformat(),
        "counts": counts,
    }
    first = windows[0]["start"] if windows else cutoff.isoformat()
    summary = build_summary(
        job="performance",
        detected=verdict["dropped"],
        model=model_ref(bundle, config.alias, config.model_name),
        window={
            "start": first,
            "end": cutoff.isoformat(),
            "source": str(config.predictions),
            "source_kind": "prediction_log",
            "labels": str(config.labels),
            "rows": counts["predictions"],
            "rows_analysed": counts["matured"],
        },
        signals=[PERFORMANCE_DROP] if verdict["dropped"] else [],
        drifted_features=[],
        statistics=statistics,
    )
    latest = verdict["latest_window"] or {}
    metrics = {
        "performance_drop": float(verdict["dropped"]),
        "baseline_average_precision": verdict["baseline_average_precision"],
        "matured_rows": float(counts["matured"]),
    }
    for key in ("average_precision", "precision", "recall", "card_precision_at_k", "net_benefit"):
        if latest.get(key) is not None:
            metrics[f"latest_{key}"] = latest[key]
    summary = publish(
        summary,
        lambda path: Path(path).write_text(_html(summary)),
        config.out_dir or paths().root / "reports" / "performance",
        metrics=metrics,
        experiment=params.drift.experiment if config.log_to_mlflow else None,
        tracking_uri=config.tracking_uri,
    )
    gauges = performance_gauges(summary)
    write_textfile(gauges, Path(summary["artifacts"]["metrics"]))
    if config.pushgateway_url:
        push(gauges, config.pushgateway_url, job="fraud-performance")
    return summary


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def console_summary(summary: dict) -> str:
    """The one-screen summary printed at the end of a run."""
    stats, model = summary["statistics"], summary["model"]
    verdict = "PERFORMANCE DROP (concept drift)" if summary["drift_detected"] else "no drop"
    counts = stats["counts"]
    lines = [
        f"performance job: {verdict}   model {model['name']} v{model['version']} (@{model['alias']})",
        (
            f"as of {stats['as_of']}: labels mature after {stats['label_delay_days']} d -> cutoff "
            f"{stats['cutoff']}"
        ),
        (
            f"predictions {counts['predictions']:,}: matured {counts['matured']:,}, not yet mature "
            f"{counts['not_yet_mature']:,}, without label {counts['without_label']:,}"
        ),
        (
            f"baseline AP {stats['baseline_average_precision']:.4f}; floor "
            f"{stats['floor_average_precision']:.4f} (-{stats['max_relative_drop']:.0%})"
        ),
        "",
        (
            f"{'window start':<21}{'tx':>8}{'fraud':>7}{'AP':>8}{'prec':>8}{'recall':>8}"
            f"{'CP@k':>8}{'net benefit':>14}  judged"
        ),
    ]
    for w in stats["windows"][-12:]:
        lines.append(
            f"{w['start'][:19]:<21}{int(w['n_transactions']):>8,}{int(w['n_fraud']):>7}"
            f"{_fmt(w['average_precision']):>8}{_fmt(w['precision']):>8}{_fmt(w['recall']):>8}"
            f"{_fmt(w['card_precision_at_k']):>8}{w['net_benefit']:>14,.0f}  "
            f"{'yes' if w['judged'] else 'no (few frauds)'}"
        )
    if not stats["windows"]:
        lines.append("(no matured predictions yet)")
    lines += [
        "",
        *artifact_lines(summary),
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.performance",
        description=(
            "Champion performance on predictions whose fraud labels have matured. "
            "Exit 0: no drop, 3: performance drop (concept drift), 2: error."
        ),
    )
    parser.add_argument(
        "--predictions", help="prediction-log directory or s3:// URI (default: run/predictions)"
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="labelled transactions (default: every batch in data/live, the simulator's)",
    )
    parser.add_argument("--as-of", help="'now' for label maturity (default: newest labelled tx)")
    add_job_arguments(parser, "performance")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 no drop, 3 drop, 2 error (one line on stderr)."""
    args = _parser().parse_args(argv)
    quiet_mlflow_downloads()
    try:
        params = load_params()
        config = PerformanceJobConfig(
            predictions=args.predictions or default_prediction_log_dir(),
            labels=args.labels or paths().live_dir,
            as_of=args.as_of,
            alias=args.alias,
            model_name=args.model_name,
            out_dir=args.out_dir,
            log_to_mlflow=not args.no_mlflow,
            pushgateway_url=pushgateway_url(),
        )
        summary = run_performance_job(config, params)
        print(console_summary(summary))
        trigger_if_found(summary, args, params)
    except Exception as exc:  # noqa: BLE001 -- CLI contract: one line and exit 2, no traceback
        return fail("performance job", exc)
    code = exit_code(summary)
    print(f"exit {code} ({'performance drop' if code == EXIT_DRIFT else 'no drop'})")
    return code


if __name__ == "__main__":
    sys.exit(main())
