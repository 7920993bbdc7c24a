"""The output contract every monitoring job shares (drift and delayed-label performance).

Each run produces:

* an HTML report people open, and a JSON summary with at most ten top-level keys (it is
  sent as-is as a GitHub ``repository_dispatch`` ``client_payload``, which allows ten)::

      job, drift_detected, model {name, alias, version, run_id}, window {start, end, source,
      rows, rows_analysed, reference_rows}, signals, drifted_features, statistics,
      generated_at, artifacts {html, summary, metrics, mlflow_run_id, mlflow_experiment}

* both files logged to MLflow in the monitoring experiment, the run tagged with the champion
  version;
* Prometheus metrics (a textfile locally, the Pushgateway when FRAUD_PUSHGATEWAY_URL is set);
* a one-screen console summary, and the exit code: ``0`` nothing found, ``3`` drift (or a
  performance drop), ``2`` the job could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from data.files import write_json_atomic
from fraudops.paths import paths
from fraudops.registry import tracking_uri_or_default
from fraudops.settings import MODEL_NAME, ModelSettings, MonitoringSettings
from monitoring.window import is_uri

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_DRIFT = 3
#: GitHub rejects a client_payload with more top-level properties than this.
MAX_TOP_LEVEL_KEYS = 10
SUMMARY_KEYS = (
    "job",
    "drift_detected",
    "model",
    "window",
    "signals",
    "drifted_features",
    "statistics",
    "generated_at",
    "artifacts",
)


# Where the jobs read and write unless told: the drift, performance and A/B CLIs share these.
def default_prediction_log_dir() -> Path | str:
    """``FRAUD_PREDICTION_LOG_DIR`` (a folder or an ``s3://`` URI), else ``run/predictions``."""
    configured = MonitoringSettings().prediction_log_dir
    if not configured:
        return paths().prediction_log_dir
    return configured if is_uri(configured) else Path(configured)


def default_report_dir(job: str) -> Path:
    """``reports/<job>`` under the project root."""
    return paths().reports_dir / job


def json_ready(value):
    """``value`` with numpy scalars as Python numbers and NaN/inf as ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (datetime,)):
        return value.isoformat()
    return value


def build_summary(
    *,
    job: str,
    detected: bool,
    model: dict,
    window: dict,
    signals: list[str],
    drifted_features: list[str],
    statistics: dict,
) -> dict:
    """The JSON summary of one monitoring run (``artifacts`` is filled in when published)."""
    summary = {
        "job": job,
        "drift_detected": bool(detected),
        "model": model,
        "window": window,
        "signals": list(signals),
        "drifted_features": list(drifted_features),
        "statistics": statistics,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "artifacts": {},
    }
    return json_ready(summary)


def exit_code(summary: dict) -> int:
    """``EXIT_DRIFT`` when the run found drift (or a performance drop), else ``EXIT_OK``."""
    return EXIT_DRIFT if summary.get("drift_detected") else EXIT_OK


def model_ref(bundle, alias: str, model_name: str) -> dict:
    """The ``model`` block of a summary: which registered version was judged."""
    return {
        "name": model_name,
        "alias": alias,
        "version": None if bundle.model_version is None else str(bundle.model_version),
        "run_id": bundle.run_id,
    }


@dataclass(frozen=True)
class OutputFiles:
    """Where one job writes its report, summary and Prometheus textfile."""

    html: Path
    summary: Path
    metrics: Path


def output_files(out_dir: Path, job: str) -> OutputFiles:
    """``<out_dir>/<job>_report.html``, ``<job>_summary.json`` and ``fraud_<job>.prom``."""
    out_dir = Path(out_dir)
    return OutputFiles(
        html=out_dir / f"{job}_report.html",
        summary=out_dir / f"{job}_summary.json",
        metrics=out_dir / f"fraud_{job}.prom",
    )


def _run_name(summary: dict) -> str:
    window = summary.get("window", {})
    start, end = str(window.get("start", ""))[:10], str(window.get("end", ""))[:10]
    return f"{summary['job']}-{start}-to-{end}"


def _tags(summary: dict) -> dict[str, str]:
    model = summary.get("model", {})
    return {
        "monitoring_job": summary["job"],
        "model_name": str(model.get("name")),
        "model_alias": str(model.get("alias")),
        "model_version": str(model.get("version")),
        "drift_detected": str(summary["drift_detected"]).lower(),
        "signals": ",".join(summary.get("signals", [])) or "none",
        "window_start": str(summary.get("window", {}).get("start")),
        "window_end": str(summary.get("window", {}).get("end")),
    }


def publish(
    summary: dict,
    write_html: Callable[[Path], object],
    out_dir: Path,
    *,
    metrics: dict[str, float],
    experiment: str | None,
    tracking_uri: str | None = None,
) -> dict:
    """Write the HTML report and JSON summary; log both (and ``metrics``) to MLflow.

    ``experiment=None`` skips MLflow. Returns the summary with ``artifacts`` filled in (the
    MLflow run id included, so the JSON in MLflow and on disk are the same document).
    """
    files = output_files(out_dir, summary["job"])
    files.html.parent.mkdir(parents=True, exist_ok=True)
    write_html(files.html)
    summary["artifacts"] = {
        "html": str(files.html),
        "summary": str(files.summary),
        "metrics": str(files.metrics),
        "mlflow_run_id": None,
        "mlflow_experiment": experiment,
    }
    if experiment is None:
        write_json_atomic(summary, files.summary)
        return summary

    import mlflow

    # Lazy: the training stack, only for a job that logs to MLflow (not ab, canary, the demo).
    from training.tracking import configure_experiment

    experiment_id = configure_experiment(tracking_uri_or_default(tracking_uri), experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=_run_name(summary)) as run:
        summary["artifacts"]["mlflow_run_id"] = run.info.run_id
        write_json_atomic(summary, files.summary)
        mlflow.set_tags(_tags(summary))
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        if finite:
            mlflow.log_metrics(finite)
        mlflow.log_artifact(str(files.html))
        mlflow.log_artifact(str(files.summary))
    return summary


def artifact_lines(summary: dict) -> list[str]:
    """The console footer every job prints: where its report, summary and MLflow run are."""
    artifacts = summary["artifacts"]
    return [
        f"report {artifacts['html']}",
        (
            f"summary {artifacts['summary']}   mlflow run "
            f"{artifacts['mlflow_run_id'] or '(not logged)'}"
        ),
    ]


def add_job_arguments(parser: argparse.ArgumentParser, job: str) -> None:
    """The options the drift and performance jobs share: model, outputs, retrain trigger."""
    model = ModelSettings()
    parser.add_argument(
        "--alias",
        default=model.model_alias,
        help="registry alias to judge (default: FRAUD_MODEL_ALIAS or champion)",
    )
    parser.add_argument(
        "--model-name",
        default=model.model_name,
        help=f"registered model (default: FRAUD_MODEL_NAME or {MODEL_NAME})",
    )
    parser.add_argument("--out-dir", type=Path, help=f"report directory (default: reports/{job})")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the run to MLflow")
    parser.add_argument(
        "--trigger", action="store_true", help="on a finding, run the retrain trigger"
    )
    parser.add_argument("--trigger-mode", choices=("auto", "local", "github"), default="auto")
    parser.add_argument("--dry-run", action="store_true", help="trigger: print instead of acting")


def quiet_mlflow_downloads() -> None:
    """No per-file download progress bars on a job's console (CLI start-up, not import)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def fail(job: str, exc: BaseException) -> int:
    """Print one readable line for a failed job and return ``EXIT_ERROR``."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    print(f"{job} failed: {message}", file=sys.stderr)
    return EXIT_ERROR


def dumps(summary: dict) -> str:
    """The summary as strict, compact JSON."""
    return json.dumps(json_ready(summary), allow_nan=False, separators=(",", ":"))
