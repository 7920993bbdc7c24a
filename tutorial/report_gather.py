"""Gathering the run report's facts from the real sources (no rendering here).

The validated-data summary, the MLflow registry (``@champion`` / ``@candidate`` runs: test
metrics, thresholds, lineage tags, the champion's promotion history), both models scored on
one test window, the latest drift summary, one explanation (the audit log, or computed with
the serving explainer's functions) and the latest canary verdict. Each function returns its
record or a :class:`~tutorial.report_facts.Missing` note naming the ``make`` target that
produces the source; none raises because a source is absent, and nothing is made up.
Each model's logged global SHAP is read by :mod:`tutorial.report_shap`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from data.schema import TX_DATETIME, TX_FRAUD
from fraudops.bundle import (
    APPROVE,
    SCORE_COLUMN,
    ModelBundle,
    load_reference_sample,
    load_run_bundle,
)
from fraudops.config import Params
from fraudops.registry import RegistryUnavailableError, mlflow_client
from monitoring.lineage import LineageError, VersionLineage, promotion_history, version_lineage
from monitoring.outputs import output_files
from serving.explain import contributions, top_reasons
from serving.prediction_log import read_prediction_log
from training.evaluate import EvaluationError, bundle_scores, evaluate_scores, pr_curve_points
from training.register import CANDIDATE, CHAMPION, current_version
from training.run import holdout_window
from training.split import SplitError
from training.train import feature_matrix
from tutorial.report_facts import (
    CanaryFacts,
    DataSummary,
    DriftFacts,
    ExampleExplanation,
    Missing,
    PRCurve,
    PRCurves,
    Reason,
    RegistryFacts,
    RunReport,
)
from tutorial.report_shap import gather_global_shap


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


def explain_row(
    bundle: ModelBundle, frame: pd.DataFrame, source: str, top_k: int = 5
) -> ExampleExplanation:
    """Explain the first row of ``frame`` with the serving explainer's own functions."""

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
    reference_loader: Callable[[], pd.DataFrame | None] | None = None,
    top_k: int = 5,
) -> ExampleExplanation | Missing:
    """One explanation: the audit log's newest flagged one, else computed by the champion.

    Without an audit record the champion explains the newest flagged transaction of the
    prediction log; without traffic, the highest-scored transaction of its training
    reference sample (``reference_loader()``).
    """
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

    def reference() -> pd.DataFrame | None:
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
        global_shap=gather_global_shap(registry),
    )
