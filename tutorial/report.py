"""``python -m tutorial.report`` (``make report``): the run report, one self-contained HTML page.

It gathers from the real sources -- the validated-data summary, the MLflow registry
(``@champion`` / ``@candidate`` runs: test metrics, thresholds, lineage tags, the champion's
promotion history), the latest drift summary (with a link to its Evidently report), one
explanation (the audit log, or computed with the serving explainer's functions), and the
latest canary verdict -- and renders them with inline CSS and inline SVG charts: no CDN,
no JavaScript, works offline. A source that does not exist yet renders as a "not run yet"
note naming the ``make`` target that produces it; nothing is ever made up.

The gathering functions return small typed records (or :class:`Missing`) and are separate
from the rendering, so each is testable on its own.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from data.validate import ValidationReport
from fraudops.bundle import ModelBundle
from fraudops.config import Params
from fraudops.paths import paths
from monitoring.lineage import VersionLineage

# --------------------------------------------------------------------------- gathered facts


@dataclass(frozen=True)
class Missing:
    """A section with nothing to show yet, and the command that produces it."""

    what: str
    command: str
    detail: str = ""


@dataclass(frozen=True)
class DataSummary(ValidationReport):
    """The validated dataset's report (``data/validated/report.json``) and where it was read."""

    source: str = ""


@dataclass(frozen=True)
class RegistryFacts:
    """``@champion`` and ``@candidate`` with their lineage, and the champion's history."""

    model_name: str
    tracking_uri: str
    champion: VersionLineage | None
    candidate: VersionLineage | None
    history: list[dict] = field(default_factory=list)
    #: decision thresholds per version (from the bundle the run logged)
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the MLflow run of every registered version, so a section about an older one names it
    run_ids: dict[str, str] = field(default_factory=dict)

    def run_of(self, version: str | None) -> str | None:
        """The run that produced ``version`` (``None`` when the registry does not know it)."""
        return None if version is None else self.run_ids.get(str(version))


@dataclass(frozen=True)
class PRCurve:
    """One model scored on the comparison window: its PR curve and every metric there."""

    label: str
    version: str
    recall: tuple[float, ...]
    precision: tuple[float, ...]
    average_precision: float
    role: str = ""
    run_id: str = ""
    #: fraud metrics on the comparison window (``training.evaluate.evaluate_scores``)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PRCurves:
    """Every compared model scored on the same test window (what champion-challenger does).

    The badges, the comparison table and the curve all read these figures, so champion and
    candidate are always compared on one window; each model's own test-window figures (as
    logged at training) are shown apart, labelled as such.
    """

    curves: tuple[PRCurve, ...]
    window: str
    n_transactions: int
    n_fraud: int
    source: str


@dataclass(frozen=True)
class DriftFacts:
    """The latest drift job's verdict (its JSON summary) and where its HTML report is."""

    summary_path: str
    html_path: str
    html_exists: bool
    drift_detected: bool
    signals: tuple[str, ...]
    drifted_features: tuple[str, ...]
    model_version: str | None
    window_start: str
    window_end: str
    rows: int | None
    rows_analysed: int | None
    reference_rows: int | None
    drifted_count: int | None
    drifted_share: float | None
    feature_count: int
    psi: tuple[tuple[str, float | None, str], ...]  # (feature, psi, level)
    score_statistic: str | None
    score_value: float | None
    score_drifted: bool | None
    alert_rate_reference: float | None
    alert_rate_current: float | None
    generated_at: str


@dataclass(frozen=True)
class Reason:
    """One feature's contribution to a score (log-odds; positive raises the fraud risk)."""

    feature: str
    value: float | None
    contribution: float
    text: str


@dataclass(frozen=True)
class ExampleExplanation:
    """One explained decision: the score, the decision and its largest contributions."""

    model_version: str
    decision: str
    fraud_probability: float
    base_value: float
    reasons: tuple[Reason, ...]
    source: str
    request_id: str | None = None
    transaction_id: int | None = None


@dataclass(frozen=True)
class CanaryFacts:
    """The latest canary verdict: the action, why, and each arm's numbers."""

    action: str
    reasons: tuple[str, ...]
    source: str
    candidate_version: str | None = None
    applied: str | None = None
    checks: dict[str, dict] = field(default_factory=dict)
    arms: tuple[dict, ...] = ()
    score_psi: float | None = None


@dataclass(frozen=True)
class RunReport:
    """Everything the page shows; each section is its facts or a :class:`Missing` note."""

    generated_at: str
    data: DataSummary | Missing
    registry: RegistryFacts | Missing
    pr_curves: PRCurves | Missing
    drift: DriftFacts | Missing
    explanation: ExampleExplanation | Missing
    canary: CanaryFacts | Missing


# --------------------------------------------------------------------------- gathering


def default_report_path() -> Path:
    """``reports/run-report.html`` under the project root."""
    return paths().reports_dir / "run-report.html"


def default_drift_summary() -> Path:
    """Where ``make drift`` writes its JSON summary (``reports/drift/drift_summary.json``)."""
    from monitoring.outputs import output_files

    return output_files(paths().root / "reports" / "drift", "drift").summary


def default_canary_verdict() -> Path:
    """Where the canary's verdict JSON is read from (``reports/canary/canary_verdict.json``)."""
    return paths().canary_verdict


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def gather_data_summary(report_json: Path) -> DataSummary | Missing:
    """The validation report written by ``data.validate`` (``make data``)."""
    raw = _read_json(report_json)
    if raw is None:
        return Missing("no validated data yet", "make data", f"{report_json} does not exist")
    try:
        return DataSummary(
            source=str(report_json),
            rows=int(raw["rows"]),
            days=int(raw["days"]),
            first_tx_datetime=str(raw["first_tx_datetime"]),
            last_tx_datetime=str(raw["last_tx_datetime"]),
            customers=int(raw["customers"]),
            terminals=int(raw["terminals"]),
            frauds=int(raw["frauds"]),
            fraud_rate=float(raw["fraud_rate"]),
            scenario_counts={str(k): int(v) for k, v in raw.get("scenario_counts", {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        return Missing("unreadable validation report", "make data", f"{report_json}: {exc!r}")


def gather_registry(model_name: str, tracking_uri: str) -> RegistryFacts | Missing:
    """``@champion`` / ``@candidate`` lineage and the champion's promotion history."""
    from mlflow.exceptions import MlflowException

    from fraudops.registry import mlflow_client
    from monitoring.lineage import LineageError, promotion_history, version_lineage
    from training.register import CANDIDATE, CHAMPION, RegistryUnavailableError, current_version

    try:
        versions = {
            alias: current_version(alias, model_name, tracking_uri)
            for alias in (CHAMPION, CANDIDATE)
        }
        if not any(versions.values()):
            return Missing(
                f"no {model_name} model in the registry yet", "make train", f"at {tracking_uri}"
            )
        lineage = {
            alias: version_lineage(version, model_name, tracking_uri) if version else None
            for alias, version in versions.items()
        }
        history = promotion_history(model_name, tracking_uri)
        client, _ = mlflow_client(tracking_uri)
        run_ids = {
            str(v.version): str(v.run_id)
            for v in client.search_model_versions(f"name='{model_name}'")
            if v.run_id
        }
    except (RegistryUnavailableError, LineageError, MlflowException) as exc:
        message = getattr(exc, "message", None) or str(exc)
        return Missing("the registry could not be read", "make train", message.splitlines()[0])
    return RegistryFacts(
        model_name,
        tracking_uri,
        lineage[CHAMPION],
        lineage[CANDIDATE],
        history,
        run_ids=run_ids,
    )


def load_bundles(registry: RegistryFacts | Missing) -> dict[str, ModelBundle]:
    """The logged bundle of each compared version (champion first), keyed by version."""
    from dataclasses import replace

    from fraudops.bundle import load_run_bundle

    if isinstance(registry, Missing):
        return {}
    bundles: dict[str, ModelBundle] = {}
    for lineage in (registry.champion, registry.candidate):
        if lineage is not None and lineage.version not in bundles:
            bundle = load_run_bundle(lineage.run_id, registry.tracking_uri)
            bundles[lineage.version] = replace(bundle, model_version=lineage.version)
    return bundles


def bundle_thresholds(bundles: dict[str, ModelBundle]) -> dict[str, dict[str, float]]:
    """``{version: {"review": p, "decline": p}}``: the cut-offs that travel with each model."""
    return {
        version: {"review": b.thresholds.review, "decline": b.thresholds.decline}
        for version, b in bundles.items()
    }


def _roles(registry: RegistryFacts) -> dict[str, tuple[str, VersionLineage]]:
    """``{version: ("champion", lineage)}`` -- one role per distinct version, champion first."""
    roles: dict[str, tuple[str, VersionLineage]] = {}
    for role, lineage in (("champion", registry.champion), ("candidate", registry.candidate)):
        if lineage is not None:
            roles.setdefault(lineage.version, (role, lineage))
    return roles


def gather_pr_curves(
    registry: RegistryFacts | Missing,
    bundles: dict[str, ModelBundle],
    training_set: Path,
    params: Params | None,
    max_points: int = 200,
) -> PRCurves | Missing:
    """Champion and candidate scored on the same test window of the training set.

    The window is the one champion-challenger uses for the current data; every figure the
    report shows for "candidate vs champion" is computed here, on it.
    """
    from data.schema import TX_FRAUD
    from training.evaluate import (
        EvaluationError,
        bundle_scores,
        evaluate_scores,
        pr_curve_points,
    )
    from training.run import holdout_window
    from training.split import SplitError

    if isinstance(registry, Missing) or not bundles or params is None:
        return Missing("no registered model to plot", "make train")
    if not Path(training_set).exists():
        return Missing("no training set to score", "make featurize", f"{training_set} is missing")
    try:
        test = holdout_window(Path(training_set), params)
    except SplitError as exc:
        return Missing("the test window could not be cut", "make featurize", str(exc))
    y = test[TX_FRAUD].to_numpy()
    if y.sum() == 0:
        return Missing("the test window has no fraud: no PR curve", "make featurize")
    curves = []
    for version, (role, lineage) in _roles(registry).items():
        bundle = bundles[version]
        try:
            scores = bundle_scores(bundle, test)
        except EvaluationError:
            continue  # a model whose features are gone cannot be plotted; the others can
        points = pr_curve_points(y, scores, max_points)
        metrics = evaluate_scores(test, scores, bundle.thresholds, params.evaluate)
        curves.append(
            PRCurve(
                label=f"{role} v{version}",
                version=version,
                recall=tuple(float(r) for r in points["recall"]),
                precision=tuple(float(p) for p in points["precision"]),
                average_precision=float(metrics["average_precision"]),
                role=role,
                run_id=lineage.run_id,
                metrics={key: float(value) for key, value in metrics.items()},
            )
        )
    if not curves:
        return Missing("no model can score the current test window", "make train")
    from data.schema import TX_DATETIME

    window = f"{test[TX_DATETIME].min():%Y-%m-%d}..{test[TX_DATETIME].max():%Y-%m-%d}"
    return PRCurves(
        tuple(curves),
        window=window,
        n_transactions=len(test),
        n_fraud=int(y.sum()),
        source=str(training_set),
    )


def _opt_float(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def gather_drift(summary_path: Path) -> DriftFacts | Missing:
    """The latest drift JSON summary (``monitoring.drift``) and its HTML report's location."""
    from monitoring.outputs import output_files

    summary = _read_json(summary_path)
    if summary is None:
        return Missing("no drift run yet", "make drift", f"{summary_path} does not exist")
    try:
        stats = summary.get("statistics", {})
        data_drift = stats.get("data_drift", {})
        prediction = stats.get("prediction", {})
        score = prediction.get("score", {})
        rate = prediction.get("alert_rate", {})
        window = summary.get("window", {})
        # The job writes its HTML next to the summary (monitoring.outputs.output_files).
        html_file = output_files(Path(summary_path).parent, summary.get("job", "drift")).html
        psi = tuple(
            (name, _opt_float(entry.get("psi")), str(entry.get("level", "")))
            for name, entry in stats.get("psi", {}).get("features", {}).items()
        )
        return DriftFacts(
            summary_path=str(summary_path),
            html_path=str(html_file),
            html_exists=html_file.exists(),
            drift_detected=bool(summary["drift_detected"]),
            signals=tuple(summary.get("signals", [])),
            drifted_features=tuple(summary.get("drifted_features", [])),
            model_version=summary.get("model", {}).get("version"),
            window_start=str(window.get("start", "?")),
            window_end=str(window.get("end", "?")),
            rows=window.get("rows"),
            rows_analysed=window.get("rows_analysed"),
            reference_rows=window.get("reference_rows"),
            drifted_count=data_drift.get("drifted_count"),
            drifted_share=_opt_float(data_drift.get("drifted_share")),
            feature_count=len(data_drift.get("features", {})),
            psi=psi,
            score_statistic=score.get("statistic"),
            score_value=_opt_float(score.get("score")),
            score_drifted=score.get("drifted"),
            alert_rate_reference=_opt_float(rate.get("reference")),
            alert_rate_current=_opt_float(rate.get("current")),
            generated_at=str(summary.get("generated_at", "?")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Missing("unreadable drift summary", "make drift", f"{summary_path}: {exc!r}")


def _reasons(raw: Sequence[dict]) -> tuple[Reason, ...]:
    return tuple(
        Reason(
            feature=str(r["feature"]),
            value=_opt_float(r.get("value")),
            contribution=float(r["contribution"]),
            text=str(r.get("text", "")),
        )
        for r in raw
    )


def latest_audit_record(audit_dir: Path) -> tuple[dict, Path] | None:
    """The newest explanation in the audit log, preferring a flagged (non-APPROVE) one."""
    from fraudops.bundle import APPROVE

    files = sorted(Path(audit_dir).glob("audit-*.jsonl")) if Path(audit_dir).is_dir() else []
    newest: tuple[dict, Path] | None = None
    flagged: tuple[dict, Path] | None = None
    for path in files:  # names sort by day (and rotation part): the last line read is newest
        with path.open() as handle:
            for line in handle:
                if not line.strip():
                    continue
                record = json.loads(line)
                newest = (record, path)
                if record.get("decision") != APPROVE:
                    flagged = (record, path)
    return flagged or newest


def explain_row(bundle, frame, source: str, top_k: int = 5) -> ExampleExplanation:
    """Explain the first row of ``frame`` with the serving explainer's own functions."""
    from serving.explain import contributions, top_reasons
    from training.train import feature_matrix

    X = feature_matrix(frame.head(1), bundle.feature_names)
    result = contributions(bundle, X)
    decision = str(bundle.thresholds.decide(result.probabilities)[0])
    row = frame.iloc[0]
    request_id = row.get("request_id")
    transaction_id = row.get("transaction_id")
    return ExampleExplanation(
        model_version=str(bundle.model_version or "local"),
        decision=decision,
        fraud_probability=float(result.probabilities[0]),
        base_value=result.base_value,
        reasons=_reasons(top_reasons(bundle.feature_names, X[0], result.values[0], top_k)),
        source=source,
        request_id=None if request_id is None else str(request_id),
        transaction_id=None if transaction_id is None else int(transaction_id),
    )


def gather_explanation(
    audit_dir: Path,
    prediction_log_dir: Path,
    bundles: dict[str, ModelBundle],
    champion_version: str | None,
    reference_loader=None,
    top_k: int = 5,
) -> ExampleExplanation | Missing:
    """One explanation: the audit log's newest flagged one, else computed by the champion.

    Without an audit record the champion explains the newest flagged transaction of the
    prediction log; without traffic, the highest-scored transaction of its training
    reference sample (``reference_loader()``).
    """
    from fraudops.bundle import APPROVE, SCORE_COLUMN

    audited = latest_audit_record(audit_dir)
    if audited is not None:
        record, path = audited
        return ExampleExplanation(
            model_version=str(record["model_version"]),
            decision=str(record["decision"]),
            fraud_probability=float(record["fraud_probability"]),
            base_value=float(record["base_value"]),
            reasons=_reasons(record.get("reasons", [])),
            source=f"audit log {path}",
            request_id=record.get("request_id"),
            transaction_id=record.get("transaction_id"),
        )
    if champion_version is None or champion_version not in bundles:
        return Missing("no explanation: no audit log and no champion", "make level5")
    champion = bundles[champion_version]
    from serving.prediction_log import read_prediction_log

    log = read_prediction_log(prediction_log_dir) if Path(prediction_log_dir).is_dir() else None
    if log is not None and not log.empty:
        have_features = all(name in log.columns for name in champion.feature_names)
        flagged = log[log["decision"] != APPROVE] if have_features else log.iloc[0:0]
        if not flagged.empty:
            row = flagged.tail(1).reset_index(drop=True)
            served = str(row.loc[0, "model_version"])
            bundle = bundles.get(served, champion)
            return explain_row(
                bundle,
                row,
                f"computed by v{bundle.model_version} (TreeSHAP, serving.explain) for the newest "
                f"flagged request in the prediction log {prediction_log_dir} (the audit log is "
                "empty)",
                top_k,
            )
    if reference_loader is not None:
        reference = reference_loader()
        if reference is not None and not reference.empty:
            row = reference.sort_values(SCORE_COLUMN, ascending=False).head(1)
            return explain_row(
                champion,
                row.reset_index(drop=True),
                f"computed by champion v{champion_version} (TreeSHAP, serving.explain) for the "
                "highest-scored transaction of its training reference sample (no traffic "
                "explained or logged yet: make level5)",
                top_k,
            )
    return Missing("no explanation yet", "make level5", "no audit log and no flagged prediction")


def gather_canary(
    verdict_path: Path, registry: RegistryFacts | Missing, tracking_uri: str | None = None
) -> CanaryFacts | Missing:
    """The canary verdict JSON (``CanaryReport.as_dict``), else the candidate's verdict tags.

    ``monitoring.canary`` tags the candidate version with ``canary_verdict`` and
    ``canary_reasons`` when it acts, so the registry holds the latest verdict too.
    """
    raw = _read_json(verdict_path)
    if raw is not None:
        verdict = raw.get("verdict", raw)
        arms = tuple(
            raw[arm] for arm in ("champion", "candidate") if isinstance(raw.get(arm), dict)
        )
        candidate = raw.get("candidate", {}) if isinstance(raw.get("candidate"), dict) else {}
        return CanaryFacts(
            action=str(verdict.get("action", "?")),
            reasons=tuple(verdict.get("reasons", [])),
            source=str(verdict_path),
            candidate_version=candidate.get("model_version"),
            applied=raw.get("applied"),
            checks=dict(verdict.get("checks", {})),
            arms=arms,
            score_psi=_opt_float(raw.get("score_psi")),
        )
    if not isinstance(registry, Missing):
        for lineage in (registry.candidate, registry.champion):
            tags = {} if lineage is None else lineage.version_tags
            if "canary_verdict" in tags:
                reasons = tags.get("canary_reasons", "").removeprefix("canary: ")
                return CanaryFacts(
                    action=tags["canary_verdict"],
                    reasons=tuple(r for r in reasons.split("; ") if r),
                    source=f"registry tags of {registry.model_name} version {lineage.version}",
                    candidate_version=lineage.version,
                )
    return Missing("no canary run yet", "make canary", f"{verdict_path} does not exist")


def gather_report(
    *,
    model_name: str,
    tracking_uri: str,
    params: Params | None,
    validation_report: Path,
    training_set: Path,
    drift_summary: Path,
    canary_verdict: Path,
    audit_dir: Path,
    prediction_log_dir: Path,
) -> RunReport:
    """Every section from its source (each may be :class:`Missing`, none raises for absence)."""
    from dataclasses import replace

    from mlflow.exceptions import MlflowException

    from fraudops.bundle import load_reference_sample

    registry = gather_registry(model_name, tracking_uri)
    try:
        bundles = load_bundles(registry)
    except (OSError, MlflowException) as exc:
        # The registry answers but the run's artifacts are gone (a wiped mlartifacts/).
        message = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
        missing = Missing("the models' logged bundles could not be loaded", "make train", message)
        bundles, unloadable = {}, missing
    else:
        unloadable = None
    if not isinstance(registry, Missing):
        registry = replace(registry, thresholds=bundle_thresholds(bundles))
    champion_version = (
        None
        if isinstance(registry, Missing) or registry.champion is None
        else registry.champion.version
    )

    def reference():
        if champion_version is None:
            return None
        return load_reference_sample("champion", model_name, tracking_uri)

    return RunReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data=gather_data_summary(validation_report),
        registry=registry,
        pr_curves=unloadable or gather_pr_curves(registry, bundles, training_set, params),
        drift=gather_drift(drift_summary),
        explanation=gather_explanation(
            audit_dir, prediction_log_dir, bundles, champion_version, reference
        ),
        canary=gather_canary(canary_verdict, registry, tracking_uri),
    )


# --------------------------------------------------------------------------- rendering

_e = html.escape
COLOURS = ("#1f5fa8", "#d9731a", "#2e8b57", "#8e44ad")
#: Test-window metrics in the comparison table (higher is better except the counts).
METRICS = (
    ("average_precision", "PR-AUC (average precision)"),
    ("roc_auc", "ROC-AUC"),
    ("recall_at_fpr", "recall at the FPR budget"),
    ("card_precision_at_k", "card precision@k"),
    ("f1", "F1 at the review threshold"),
    ("precision", "precision at the review threshold"),
    ("recall", "recall at the review threshold"),
    ("net_benefit", "net benefit"),
    ("alerts", "alerts"),
    ("n_transactions", "test transactions"),
    ("n_fraud", "test frauds"),
)


def fmt_metric(key: str, value: float | None) -> str:
    """A metric as people read it: money with $, counts with separators, ratios 4 digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if key == "net_benefit":
        return f"${value:,.0f}"
    if key in ("alerts", "n_transactions", "n_fraud", "declines"):
        return f"{value:,.0f}"
    return f"{value:.4f}"


def _missing(section: Missing) -> str:
    detail = f' <span class="detail">({_e(section.detail)})</span>' if section.detail else ""
    return (
        f'<p class="missing"><strong>not run yet</strong> — <code>{_e(section.command)}</code>: '
        f"{_e(section.what)}{detail}</p>"
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pr_curve_svg(curves: Sequence[PRCurve], width: int = 560, height: int = 380) -> str:
    """Precision (y) against recall (x) for each curve, as inline SVG with axes and a legend."""
    left, right, top, bottom = 56, 16, 16, 48
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(recall: float) -> float:
        return left + recall * plot_w

    def y(precision: float) -> float:
        return top + (1 - precision) * plot_h

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart pr-curve" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            'aria-label="precision-recall curves">'
        )
    ]
    for tick in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{top + plot_h}" '
            'class="grid"/>'
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" '
            'class="grid"/>'
            f'<text x="{x(tick):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{tick:g}</text>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">recall</text>'
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">precision</text>'
    )
    for i, curve in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        # Sorted by recall so the polyline reads left to right.
        points = sorted(zip(curve.recall, curve.precision))
        path = " ".join(f"{x(r):.1f},{y(p):.1f}" for r, p in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'data-version="{_e(curve.version)}"/>'
        )
        ly = top + 14 + 18 * i
        parts.append(
            f'<line x1="{left + plot_w - 200}" y1="{ly - 4}" x2="{left + plot_w - 180}" '
            f'y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{left + plot_w - 174}" y="{ly}">{_e(curve.label)} '
            f"(AP {curve.average_precision:.4f})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def contribution_svg(reasons: Sequence[Reason], width: int = 760) -> str:
    """Horizontal bars of each reason's contribution (log-odds) around zero, as inline SVG."""
    label_w, pad, row_h = 300, 12, 30
    height = pad * 2 + row_h * len(reasons) + 24
    bar_area = width - label_w - 2 * pad
    biggest = max((abs(r.contribution) for r in reasons), default=1.0) or 1.0
    zero = label_w + pad + bar_area / 2
    scale = (bar_area / 2 - 64) / biggest  # room for the value label past the longest bar
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart contributions" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            'aria-label="feature contributions to the fraud score">'
        ),
        f'<line x1="{zero:.1f}" y1="{pad}" x2="{zero:.1f}" y2="{height - pad - 18}" class="axis"/>',
    ]
    for i, reason in enumerate(reasons):
        top = pad + i * row_h
        length = abs(reason.contribution) * scale
        start = zero if reason.contribution >= 0 else zero - length
        cls = "raises" if reason.contribution > 0 else "lowers"
        value = "missing" if reason.value is None else f"{reason.value:,.4g}"
        text_x = start + length + 4 if reason.contribution >= 0 else start - 4
        anchor = "start" if reason.contribution >= 0 else "end"
        parts.append(
            f'<text x="{label_w}" y="{top + 19}" text-anchor="end">'
            f"{_e(reason.feature)} = {_e(value)}</text>"
            f'<rect x="{start:.1f}" y="{top + 6}" width="{max(length, 1):.1f}" height="{row_h - 12}" '
            f'class="{cls}"><title>{_e(reason.text)}</title></rect>'
            f'<text x="{text_x:.1f}" y="{top + 19}" text-anchor="{anchor}" class="value">'
            f"{reason.contribution:+.3f}</text>"
        )
    parts.append(
        f'<text x="{zero:.1f}" y="{height - 8}" text-anchor="middle" class="caption">'
        "← lowers risk · contribution to the log-odds · raises risk →</text></svg>"
    )
    return "".join(parts)


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>{body}</section>'


def render_data(data: DataSummary | Missing) -> str:
    """The data summary section."""
    if isinstance(data, Missing):
        return _section("data", "Data", _missing(data))
    from data.schema import FRAUD_SCENARIOS

    facts = [
        ("transactions", f"{data.rows:,}"),
        ("days", f"{data.days:,} ({_e(data.first_tx_datetime)} → {_e(data.last_tx_datetime)})"),
        ("customers", f"{data.customers:,}"),
        ("terminals", f"{data.terminals:,}"),
        ("frauds", f"{data.frauds:,}"),
        ("fraud rate", f"{data.fraud_rate:.3%}"),
    ]
    scenarios = [
        (_e(f"{sid}: {FRAUD_SCENARIOS.get(int(sid), 'unknown')}"), f"{count:,}")
        for sid, count in sorted(data.scenario_counts.items(), key=lambda kv: int(kv[0]))
    ]
    body = (
        _subject(
            "the validated dataset the next run trains on, not a model: the data each model "
            "was trained on is its DVC data hash under Lineage"
        )
        + '<div class="cols">'
        + _table(["validated data", ""], facts, "facts")
        + (_table(["fraud scenario", "transactions"], scenarios, "facts") if scenarios else "")
        + f'</div><p class="source">source: <code>{_e(data.source)}</code></p>'
    )
    return _section("data", "Data", body)


def _model_ref(role: str, version: str | None, run_id: str | None) -> str:
    """``champion v1 (run <code>abc…</code>)``: which model and which run a section shows."""
    who = f"{_e(role)} v{_e(str(version))}".strip()
    return who + (f" (run <code>{_e(run_id)}</code>)" if run_id else " (run unknown)")


def _subject(text: str) -> str:
    return f'<p class="subject"><b>describes</b> {text}</p>'


def _stale(text: str) -> str:
    return f'<p class="stale"><span class="badge warn">STALE</span> {text}</p>'


def _comparison_table(registry: RegistryFacts, curves: Sequence[PRCurve]) -> str:
    """Every metric of the compared models on the one comparison window, with the delta."""
    headers = ["metric"] + [_e(c.label) for c in curves]
    delta = len(curves) == 2
    if delta:
        headers.append("candidate − champion")
    rows = []
    for key, label in METRICS:
        values = [c.metrics.get(key) for c in curves]
        if all(v is None for v in values):
            continue
        row = [_e(label)] + [fmt_metric(key, v) for v in values]
        if delta:
            a, b = values
            row.append(
                "–"
                if a is None or b is None
                else f'<span class="delta">{fmt_metric(key, b - a).replace("$-", "−$")}</span>'
            )
        rows.append(row)
    rows += _threshold_rows(registry, [c.version for c in curves], delta)
    return _table(headers, rows, "metrics comparison")


def _threshold_rows(registry: RegistryFacts, versions: Sequence[str], pad: bool) -> list[list[str]]:
    rows = []
    for name in ("review", "decline"):
        cells = []
        for version in versions:
            value = registry.thresholds.get(version, {}).get(name)
            cells.append("–" if value is None else f"p ≥ {value:.4f}")
        rows.append([f"{name} threshold"] + cells + ([""] if pad else []))
    return rows


def _own_window_table(registry: RegistryFacts, roles: Sequence[tuple[str, VersionLineage]]) -> str:
    """Each model's figures on its own test window, as its training run logged them."""
    headers = ["metric (own test window)"] + [
        f"{_e(role)} v{_e(lin.version)}<br><small>{_e(lin.test_window or '?')}</small>"
        for role, lin in roles
    ]
    rows = []
    for key, label in METRICS:
        values = [lin.metrics.get(key) for _, lin in roles]
        if any(v is not None for v in values):
            rows.append([_e(label)] + [fmt_metric(key, v) for v in values])
    return _table(headers, rows, "metrics own-window")


def _compared_roles(registry: RegistryFacts) -> list[tuple[str, VersionLineage]]:
    """``[(role, lineage)]`` of the distinct versions, champion first."""
    champion, candidate = registry.champion, registry.candidate
    if champion is not None and candidate is not None and champion.version == candidate.version:
        return [("champion = candidate", champion)]
    return [
        (role, lineage)
        for role, lineage in (("champion", champion), ("candidate", candidate))
        if lineage is not None
    ]


def render_models(registry: RegistryFacts | Missing, pr: PRCurves | Missing) -> str:
    """Champion vs candidate on one window (table + PR curve), then each on its own window."""
    if isinstance(registry, Missing):
        return _section("models", "Champion vs candidate", _missing(registry))
    roles = _compared_roles(registry)
    body = _subject(" and ".join(_model_ref(role, lin.version, lin.run_id) for role, lin in roles))
    if len(roles) == 1 and registry.champion is not None and registry.candidate is not None:
        body += (
            f'<p class="note">@candidate is the champion (version '
            f"{_e(registry.champion.version)}): no challenger is waiting.</p>"
        )
    body += "<h3>Candidate vs champion, on one window</h3>"
    if isinstance(pr, Missing):
        body += _missing(pr)
    else:
        body += (
            f'<p class="window">scored on the test window <strong>{_e(pr.window)}</strong> '
            f"({pr.n_transactions:,} transactions, {pr.n_fraud:,} frauds) of "
            f"<code>{_e(pr.source)}</code> — the comparison champion-challenger makes; the "
            "badges above, this table and the curve below all come from it</p>"
            + _comparison_table(registry, pr.curves)
            + "<h3>Precision-recall curve</h3>"
            + pr_curve_svg(pr.curves)
        )
    body += (
        "<h3>Each model on its own test window</h3>"
        '<p class="note">as each training run logged them: the windows differ, so these '
        "figures do not compare the models with each other</p>" + _own_window_table(registry, roles)
    )
    return _section("models", "Champion vs candidate", body)


def _current(registry: RegistryFacts | Missing, alias: str) -> str | None:
    """The version ``@alias`` points at now (``None``: unknown or unset)."""
    if isinstance(registry, Missing):
        return None
    lineage = registry.champion if alias == "champion" else registry.candidate
    return None if lineage is None else lineage.version


def _run_of(registry: RegistryFacts | Missing, version: str | None) -> str | None:
    return None if isinstance(registry, Missing) else registry.run_of(version)


def render_drift(
    drift: DriftFacts | Missing, out_dir: Path, registry: RegistryFacts | Missing | None = None
) -> str:
    """The drift verdict, its signals and the link to the Evidently report."""
    if isinstance(drift, Missing):
        return _section("drift", "Drift", _missing(drift))
    registry = registry or Missing("", "")
    judged = None if drift.model_version is None else str(drift.model_version)
    header = _subject(
        f"the drift job's judgement of {_model_ref('champion', judged, _run_of(registry, judged))} "
        f"on the traffic of {_e(drift.window_start)} → {_e(drift.window_end)}"
    )
    champion = _current(registry, "champion")
    if champion is not None and judged != champion:
        header += _stale(
            f"this drift run judged champion v{_e(str(judged))}; the current @champion is "
            f"v{_e(champion)} — <code>make drift</code> judges it"
        )
    verdict = (
        '<span class="badge bad">DRIFT DETECTED</span>'
        if drift.drift_detected
        else '<span class="badge good">no drift</span>'
    )
    link = os.path.relpath(drift.html_path, out_dir)
    report = (
        f'<a href="{_e(link)}">Evidently drift report</a> (<code>{_e(drift.html_path)}</code>)'
        if drift.html_exists
        else f"Evidently report missing: <code>{_e(drift.html_path)}</code>"
    )
    share = "–" if drift.drifted_share is None else f"{drift.drifted_share:.0%}"
    facts = [
        ("judged model", f"v{_e(str(drift.model_version))}"),
        ("window", f"{_e(drift.window_start)} → {_e(drift.window_end)}"),
        (
            "rows (analysed) vs reference",
            (
                f"{fmt_metric('alerts', drift.rows)} "
                f"({fmt_metric('alerts', drift.rows_analysed)}) vs "
                f"{fmt_metric('alerts', drift.reference_rows)}"
            ),
        ),
        ("signals", _e(", ".join(drift.signals) or "none")),
        (
            "drifted features",
            f"{drift.drifted_count if drift.drifted_count is not None else '–'} of "
            f"{drift.feature_count} ({share})"
            + (f": {_e(', '.join(drift.drifted_features))}" if drift.drifted_features else ""),
        ),
        (
            "score distribution",
            f"{_e(str(drift.score_statistic))} {fmt_metric('score', drift.score_value)}"
            + (" (drifted)" if drift.score_drifted else " (stable)"),
        ),
        (
            "alert rate reference → current",
            "–"
            if drift.alert_rate_reference is None or drift.alert_rate_current is None
            else f"{drift.alert_rate_reference:.2%} → {drift.alert_rate_current:.2%}",
        ),
        ("run at", _e(drift.generated_at)),
    ]
    psi_rows = [
        [_e(name), fmt_metric("psi", value), f'<span class="level {_e(level)}">{_e(level)}</span>']
        for name, value, level in drift.psi
    ]
    body = (
        header
        + f"<p>{verdict} {report}</p>"
        + '<div class="cols">'
        + _table(["drift job", ""], facts, "facts")
        + (_table(["top feature (gain)", "PSI", "level"], psi_rows, "facts") if psi_rows else "")
        + f'</div><p class="source">source: <code>{_e(drift.summary_path)}</code></p>'
    )
    return _section("drift", "Drift", body)


def render_explanation(
    explanation: ExampleExplanation | Missing, registry: RegistryFacts | Missing | None = None
) -> str:
    """One decision with its reasons as a bar chart."""
    if isinstance(explanation, Missing):
        return _section("explanation", "Example explanation", _missing(explanation))
    registry = registry or Missing("", "")
    version = explanation.model_version
    champion, candidate = _current(registry, "champion"), _current(registry, "candidate")
    role = {champion: "champion", candidate: "candidate"}.get(version, "model")
    header = _subject(f"a decision by {_model_ref(role, version, _run_of(registry, version))}")
    if champion is not None and version not in (champion, candidate):
        header += _stale(
            f"decided by v{_e(version)}, neither the current @champion (v{_e(champion)}) nor "
            f"the current @candidate (v{_e(str(candidate))})"
        )
    who = []
    if explanation.request_id:
        who.append(f"request <code>{_e(explanation.request_id)}</code>")
    if explanation.transaction_id is not None:
        who.append(f"transaction {explanation.transaction_id}")
    badge = "good" if explanation.decision == "APPROVE" else "bad"
    reasons = "".join(f"<li>{_e(r.text)}</li>" for r in explanation.reasons)
    body = (
        header
        + f'<p><span class="badge {badge}">{_e(explanation.decision)}</span> fraud probability '
        f"<strong>{explanation.fraud_probability:.4f}</strong> by model "
        f"v{_e(explanation.model_version)}"
        + (f" — {', '.join(who)}" if who else "")
        + f" · base value (log-odds) {explanation.base_value:+.3f}</p>"
        + contribution_svg(explanation.reasons)
        + f'<ol class="reasons">{reasons}</ol>'
        + f'<p class="source">{_e(explanation.source)}</p>'
    )
    return _section("explanation", "Example explanation", body)


def _canary_header(canary: CanaryFacts, registry: RegistryFacts | Missing) -> str:
    """Which candidate (and champion) the verdict is about; stale when @candidate moved on."""
    judged = None if canary.candidate_version is None else str(canary.candidate_version)
    champion_arm = next((a for a in canary.arms if a.get("arm") == "champion"), {})
    against = champion_arm.get("model_version")
    text = f"the canary verdict on {_model_ref('candidate', judged, _run_of(registry, judged))}"
    if against:
        text += f" against {_model_ref('champion', str(against), _run_of(registry, str(against)))}"
    header = _subject(text)
    current = _current(registry, "candidate")
    if current is not None and judged is not None and judged != current:
        header += _stale(
            f"this verdict is about candidate v{_e(judged)}, an older candidate than the "
            f"current @candidate v{_e(current)} — <code>make canary</code> judges it"
        )
    return header


def render_canary(
    canary: CanaryFacts | Missing, registry: RegistryFacts | Missing | None = None
) -> str:
    """The canary verdict, its reasons and each arm's numbers."""
    if isinstance(canary, Missing):
        return _section("canary", "Canary verdict", _missing(canary))
    cls = {"promote": "good", "rollback": "bad"}.get(canary.action, "warn")
    body = _canary_header(canary, registry or Missing("", ""))
    body += f'<p><span class="badge {cls}">{_e(canary.action.upper())}</span>'
    if canary.candidate_version:
        body += f" candidate v{_e(str(canary.candidate_version))}"
    if canary.applied:
        body += f" — applied: {_e(canary.applied)}"
    body += "</p>"
    body += "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in canary.reasons) + "</ul>"
    if canary.arms:
        rows = [
            [
                _e(str(arm.get("arm", "?"))),
                _e(str(arm.get("model_version") or "–")),
                fmt_metric("alerts", arm.get("requests")),
                fmt_metric("alerts", arm.get("errors_5xx")),
                *(
                    f"{float(arm.get(k, float('nan'))):.1f}"
                    for k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
                ),
                f"{arm.get('fraud_caught', 0)}/{arm.get('labelled_fraud', 0)}",
                f"{arm.get('false_alerts', 0)}/{arm.get('labelled_genuine', 0)}",
            ]
            for arm in canary.arms
        ]
        body += _table(
            [
                "arm",
                "version",
                "requests",
                "5xx",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "fraud caught",
                "false alerts",
            ],
            rows,
            "metrics",
        )
    if canary.score_psi is not None:
        body += f"<p>score PSI candidate vs champion: {canary.score_psi:.3f}</p>"
    body += f'<p class="source">source: {_e(canary.source)}</p>'
    return _section("canary", "Canary verdict", body)


def render_lineage(registry: RegistryFacts | Missing) -> str:
    """Model version → run → git commit → DVC data hash → params, and the champion's moves."""
    if isinstance(registry, Missing):
        return _section("lineage", "Lineage", _missing(registry))
    blocks = []
    seen: set[str] = set()
    for role, lin in (("champion", registry.champion), ("candidate", registry.candidate)):
        if lin is None or lin.version in seen:
            continue
        seen.add(lin.version)
        chain = [
            (
                "model version",
                (
                    f"{_e(registry.model_name)} v{_e(lin.version)} "
                    f"({_e(', '.join('@' + a for a in lin.aliases) or 'no alias')})"
                ),
            ),
            ("MLflow run", f"<code>{_e(lin.run_id)}</code> ({_e(lin.run_name)})"),
            ("git commit", f"<code>{_e(lin.git_commit)}</code>"),
            ("DVC data hash", f"<code>{_e(lin.data_hash)}</code>"),
            ("params hash", f"<code>{_e(lin.params_hash)}</code>"),
            ("registered", _e(lin.registered_at)),
        ]
        params = "".join(
            f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in lin.params.items()
        )
        blocks.append(
            f'<div class="lineage"><h3>{_e(role)} v{_e(lin.version)}</h3>'
            + '<ol class="chain">'
            + "".join(f"<li><span>{k}</span> {v}</li>" for k, v in chain)
            + "</ol>"
            + f"<details><summary>params ({len(lin.params)})</summary>"
            + f'<table class="facts">{params}</table></details></div>'
        )
    history_rows = [
        [
            _e(str(e.get("time", "?"))),
            _e(str(e.get("event", "?"))),
            f"v{_e(str(e.get('previous') or '–'))} → v{_e(str(e.get('version', '?')))}",
            _e(str(e.get("actor", "?"))),
            _e(str(e.get("reason", ""))),
        ]
        for e in registry.history
    ]
    history = (
        _table(["when", "event", "move", "who / what", "why"], history_rows, "history")
        if history_rows
        else "<p>no recorded moves of @champion</p>"
    )
    body = (
        '<div class="cols">'
        + "".join(blocks)
        + "</div>"
        + "<h3>@champion promotion history</h3>"
        + history
        + '<p class="source">per request: <code>make lineage REQUEST_ID=…</code> '
        "(<code>python -m monitoring.lineage --request-id …</code>)</p>"
    )
    return _section("lineage", "Lineage", body)


CSS = """
:root { --fg:#1d2733; --muted:#5b6b7c; --line:#d8dee6; --bg:#f5f7fa; --good:#1e7d46;
        --bad:#b3261e; --warn:#9a6700; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; padding: 24px; }
main { max-width: 1100px; margin: 0 auto; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
nav { margin: 12px 0 8px; display: flex; gap: 8px; flex-wrap: wrap; }
nav .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
nav .card b { display: block; font-size: 12px; color: var(--muted); font-weight: 500; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px;
          margin: 16px 0; }
h2 { margin: 0 0 12px; font-size: 19px; }
h3 { margin: 16px 0 8px; font-size: 15px; }
table { border-collapse: collapse; margin: 4px 16px 8px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         vertical-align: top; }
table.metrics td:not(:first-child), table.metrics th:not(:first-child) { text-align: right; }
th { font-weight: 600; background: #eef2f6; }
.cols { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
.source, .detail, small { color: var(--muted); font-size: 12px; }
.missing { background: #fff8e1; border-left: 4px solid var(--warn); padding: 8px 12px; margin: 4px 0; }
.note { color: var(--muted); }
.subject { margin: 0 0 8px; } .subject b { color: var(--muted); font-weight: 500; }
.stale { background: #fff8e1; border-left: 4px solid var(--warn); padding: 6px 12px; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 10px; color: #fff;
         font-weight: 600; font-size: 12px; }
.badge.good { background: var(--good); } .badge.bad { background: var(--bad); }
.badge.warn { background: var(--warn); }
.level.alert { color: var(--bad); font-weight: 600; } .level.warning { color: var(--warn); }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #eef2f6;
       padding: 1px 4px; border-radius: 4px; word-break: break-all; }
svg.chart { display: block; margin: 8px 0; font-size: 12px; }
svg.chart text { fill: var(--fg); }
svg .grid { stroke: #e6eaef; } svg .frame { fill: none; stroke: #9aa7b4; }
svg .axis { stroke: #9aa7b4; } svg .raises { fill: #c0392b; } svg .lowers { fill: #2e86c1; }
svg text.caption { fill: var(--muted); }
ol.chain { list-style: none; padding: 0; margin: 0; }
ol.chain li { padding: 3px 0; } ol.chain li span { display: inline-block; width: 120px;
              color: var(--muted); }
ol.chain li + li::before { content: "↓ "; color: var(--muted); }
.lineage { min-width: 420px; flex: 1; }
"""


def _status_cards(report: RunReport) -> str:
    """Headline badges; a model's AP is the one on the comparison window, as in the table."""
    cards = []
    registry = report.registry
    pr = report.pr_curves
    compared = {} if isinstance(pr, Missing) else {c.version: c for c in pr.curves}
    if not isinstance(registry, Missing):
        for role, lin in (("champion", registry.champion), ("candidate", registry.candidate)):
            if lin is None:
                continue
            curve = compared.get(lin.version)
            # No comparison window, no AP: a figure from another window would mislead.
            ap = "" if curve is None else f" · AP {curve.average_precision:.4f}"
            cards.append((f"@{role}", f"v{_e(lin.version)}{ap}", lin.version))
    if not isinstance(report.drift, Missing):
        cards.append(("drift", "DRIFT" if report.drift.drift_detected else "none", None))
    if not isinstance(report.canary, Missing):
        cards.append(("canary", _e(report.canary.action), None))
    html_cards = []
    for key, text, version in cards:
        attribute = "" if version is None else f' data-version="{_e(version)}"'
        html_cards.append(f'<div class="card"{attribute}><b>{key}</b>{text}</div>')
    return "<nav>" + "".join(html_cards) + "</nav>"


def render_report(report: RunReport, out_path: Path) -> str:
    """The whole page: inline CSS and SVG, no script, links relative to ``out_path``."""
    out_dir = Path(out_path).resolve().parent
    name = (
        report.registry.model_name if not isinstance(report.registry, Missing) else "fraud-detector"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # An empty inline icon: the browser asks for no favicon (no request, no console error).
        '<link rel="icon" href="data:,">'
        f"<title>Run report — {_e(name)}</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>Run report — {_e(name)}</h1>"
        f"<p>generated {_e(report.generated_at)}"
        + (
            f" · registry <code>{_e(report.registry.tracking_uri)}</code>"
            if not isinstance(report.registry, Missing)
            else ""
        )
        + "</p></header>"
        + _status_cards(report)
        + render_data(report.data)
        + render_models(report.registry, report.pr_curves)
        + render_drift(report.drift, out_dir, report.registry)
        + render_explanation(report.explanation, report.registry)
        + render_canary(report.canary, report.registry)
        + render_lineage(report.registry)
        + "</main></body></html>\n"
    )


def write_report(page: str, out_path: Path) -> Path:
    """Write the page atomically (a reader never sees half a report)."""
    from data.files import atomic_path

    with atomic_path(Path(out_path)) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out_path)


def missing_sections(report: RunReport) -> list[str]:
    """Names of the sections that rendered as "not run yet"."""
    return [
        name
        for name in ("data", "registry", "pr_curves", "drift", "explanation", "canary")
        if isinstance(getattr(report, name), Missing)
    ]


def main(argv: list[str] | None = None) -> int:
    """Gather, render and write the report; print where it went and what was missing."""
    from fraudops.bundle import MODEL_NAME
    from fraudops.config import ConfigError, load_params, mlflow_tracking_uri
    from serving.settings import load_settings

    parser = argparse.ArgumentParser(
        prog="python -m tutorial.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, help="default: reports/run-report.html")
    parser.add_argument("--model-name", default=os.environ.get("FRAUD_MODEL_NAME", MODEL_NAME))
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
