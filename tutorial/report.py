"""``python -m tutorial.report`` (``make report``): the run report, one self-contained HTML page.

It gathers from the real sources -- the validated-data summary, the MLflow registry
(``@champion`` / ``@candidate`` runs: test metrics, thresholds, lineage tags, the champion's
promotion history), champion and candidate scored on one test window, the latest drift
summary (with a link to its Evidently report), one explanation, the latest canary verdict
and each model's logged global SHAP -- and renders them with inline CSS, inline SVG charts
and inline (data: URI) plots: no CDN, no JavaScript, works offline. A source that does not
exist yet renders as a "not run yet" note naming the ``make`` target that produces it;
nothing is ever made up.

The jobs live in their own modules: :mod:`tutorial.report_facts` (the typed records),
:mod:`tutorial.report_gather` and :mod:`tutorial.report_shap` (reading the sources),
:mod:`tutorial.report_charts` (the SVG), :mod:`tutorial.report_render` with
``tutorial/templates/run_report.html.j2`` (the page). This module is the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fraudops.config import ConfigError, load_params, mlflow_tracking_uri
from fraudops.paths import paths
from fraudops.settings import ModelSettings
from monitoring.outputs import output_files
from serving.settings import load_settings
from tutorial.report_facts import Missing, RunReport
from tutorial.report_gather import gather_report
from tutorial.report_render import render_report, write_report


def default_report_path() -> Path:
    """``reports/run-report.html`` under the project root."""
    return paths().reports_dir / "run-report.html"


def default_drift_summary() -> Path:
    """Where ``make drift`` writes its JSON summary (``reports/drift/drift_summary.json``)."""
    return output_files(paths().root / "reports" / "drift", "drift").summary


def default_canary_verdict() -> Path:
    """Where the canary's verdict JSON is read from (``reports/canary/canary_verdict.json``)."""
    return paths().canary_verdict


def missing_sections(report: RunReport) -> list[str]:
    """Names of the sections that rendered as "not run yet"."""
    return [
        name
        for name in (
            "data",
            "registry",
            "pr_curves",
            "drift",
            "explanation",
            "canary",
            "global_shap",
        )
        if isinstance(getattr(report, name), Missing)
    ]


def main(argv: list[str] | None = None) -> int:
    """Gather, render and write the report; print where it went and what was missing."""
    parser = argparse.ArgumentParser(
        prog="python -m tutorial.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, help="default: reports/run-report.html")
    parser.add_argument("--model-name", default=ModelSettings().model_name)
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the local SQLite")
    parser.add_argument(
        "--training-set", type=Path, help="default: data/features/training_set.parquet"
    )
    parser.add_argument(
        "--drift-summary", type=Path, help="default: reports/drift/drift_summary.json"
    )
    parser.add_argument(
        "--canary-verdict", type=Path, help="default: reports/canary/canary_verdict.json"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        params = load_params()
    except ConfigError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    layout, settings = paths(), load_settings()
    out = args.out or default_report_path()
    report = gather_report(
        model_name=args.model_name,
        tracking_uri=args.tracking_uri or mlflow_tracking_uri(),
        params=params,
        validation_report=layout.validation_report,
        training_set=args.training_set or layout.training_set,
        drift_summary=args.drift_summary or default_drift_summary(),
        canary_verdict=args.canary_verdict or default_canary_verdict(),
        audit_dir=settings.audit_log_path(),
        prediction_log_dir=settings.prediction_log_path(),
    )
    write_report(render_report(report, out), out)
    missing = missing_sections(report)
    print(f"wrote {out}" + (f" (not run yet: {', '.join(missing)})" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
