"""Rendering the run report: facts → small views → the Jinja2 template → one HTML page.

The views hold what the template shows, already formatted (numbers as people read them,
which model and run each section describes, whether a section is about an older model than
the current one); ``tutorial/templates/run_report.html.j2`` holds the markup. Autoescaping is
on, so every value from a source is escaped; only the inline SVG charts are marked safe.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from data.files import atomic_path
from data.schema import FRAUD_SCENARIOS
from fraudops.settings import MODEL_NAME
from monitoring.lineage import VersionLineage
from tutorial.report_charts import contribution_svg, mean_abs_shap_svg, pr_curve_svg
from tutorial.report_facts import (
    CanaryFacts,
    DataSummary,
    DriftFacts,
    ExampleExplanation,
    GlobalShap,
    Missing,
    ModelGlobalShap,
    PRCurve,
    PRCurves,
    RegistryFacts,
    RunReport,
)

TEMPLATES = Path(__file__).parent / "templates"
PAGE_TEMPLATE = "run_report.html.j2"
#: Metrics in the model tables (higher is better except the counts).
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


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ModelRef:
    """Which model (role and version) and which MLflow run a section describes."""

    role: str
    version: str | None
    run_id: str | None


@dataclass(frozen=True)
class Table:
    """A table for the template: headers (text, or (text, small print)) and rows of cells."""

    headers: Sequence[str | tuple[str, str]]
    rows: Sequence[Sequence[str]]
    cls: str = ""


@dataclass(frozen=True)
class LineageBlock:
    """One version's chain: version → run → commit → data → params."""

    title: str
    chain: Sequence[tuple[str, str, str]]  # (label, code, plain text)
    params: dict[str, str] = field(default_factory=dict)


def _current(registry: RegistryFacts | Missing, alias: str) -> str | None:
    """The version ``@alias`` points at now (``None``: unknown or unset)."""
    if isinstance(registry, Missing):
        return None
    lineage = registry.champion if alias == "champion" else registry.candidate
    return None if lineage is None else lineage.version


def _ref(role: str, version: str | None, registry: RegistryFacts | Missing) -> ModelRef:
    run_id = None if isinstance(registry, Missing) else registry.run_of(version)
    return ModelRef(role, None if version is None else str(version), run_id)


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


def data_view(data: DataSummary | Missing) -> dict | Missing:
    """The validated data's facts and its fraud scenarios."""
    if isinstance(data, Missing):
        return data
    facts = [
        ("transactions", f"{data.rows:,}"),
        ("days", f"{data.days:,} ({data.first_tx_datetime} → {data.last_tx_datetime})"),
        ("customers", f"{data.customers:,}"),
        ("terminals", f"{data.terminals:,}"),
        ("frauds", f"{data.frauds:,}"),
        ("fraud rate", f"{data.fraud_rate:.3%}"),
    ]
    scenarios = [
        (f"{sid}: {FRAUD_SCENARIOS.get(int(sid), 'unknown')}", f"{count:,}")
        for sid, count in sorted(data.scenario_counts.items(), key=lambda kv: int(kv[0]))
    ]
    return {
        "facts": Table(["validated data", ""], facts, "facts"),
        "scenarios": Table(["fraud scenario", "transactions"], scenarios, "facts")
        if scenarios
        else None,
        "source": data.source,
    }


def comparison_table(registry: RegistryFacts, curves: Sequence[PRCurve]) -> Table:
    """Every metric of the compared models on the one comparison window, with the delta."""
    headers: list[str | tuple[str, str]] = ["metric", *(c.label for c in curves)]
    delta = len(curves) == 2
    if delta:
        headers.append("candidate − champion")
    rows = []
    for key, label in METRICS:
        values = [c.metrics.get(key) for c in curves]
        if all(v is None for v in values):
            continue
        row = [label] + [fmt_metric(key, v) for v in values]
        if delta:
            a, b = values
            change = "–" if a is None or b is None else fmt_metric(key, b - a)
            row.append(Markup('<span class="delta">{}</span>').format(change.replace("$-", "−$")))
        rows.append(row)
    for name in ("review", "decline"):
        cells = []
        for curve in curves:
            value = registry.thresholds.get(curve.version, {}).get(name)
            cells.append("–" if value is None else f"p ≥ {value:.4f}")
        rows.append([f"{name} threshold", *cells, *([""] if delta else [])])
    return Table(headers, rows, "metrics comparison")


def own_window_table(registry: RegistryFacts) -> Table:
    """Each model's figures on its own test window, as its training run logged them."""
    roles = _compared_roles(registry)
    headers: list[str | tuple[str, str]] = ["metric (own test window)"]
    headers += [(f"{role} v{lin.version}", lin.test_window or "?") for role, lin in roles]
    rows = []
    for key, label in METRICS:
        values = [lin.metrics.get(key) for _, lin in roles]
        if any(v is not None for v in values):
            rows.append([label] + [fmt_metric(key, v) for v in values])
    return Table(headers, rows, "metrics own-window")


def models_view(registry: RegistryFacts | Missing, pr: PRCurves | Missing) -> dict | Missing:
    """Champion vs candidate on one window (table + PR curve), then each on its own window."""
    if isinstance(registry, Missing):
        return registry
    roles = _compared_roles(registry)
    comparison: dict | Missing = pr
    if not isinstance(pr, Missing):
        comparison = {
            "window": pr.window,
            "n_transactions": f"{pr.n_transactions:,}",
            "n_fraud": f"{pr.n_fraud:,}",
            "source": pr.source,
            "table": comparison_table(registry, pr.curves),
            "svg": Markup(pr_curve_svg(pr.curves)),
        }
    same = len(roles) == 1 and registry.champion is not None and registry.candidate is not None
    return {
        "refs": [ModelRef(role, lin.version, lin.run_id) for role, lin in roles],
        "same_version": registry.champion.version if same else None,
        "comparison": comparison,
        "own": own_window_table(registry),
    }


def _drift_facts(drift: DriftFacts) -> list[tuple[str, str]]:
    share = "–" if drift.drifted_share is None else f"{drift.drifted_share:.0%}"
    count = "–" if drift.drifted_count is None else drift.drifted_count
    drifted = f"{count} of {drift.feature_count} ({share})"
    if drift.drifted_features:
        drifted += f": {', '.join(drift.drifted_features)}"
    rate = (
        "–"
        if drift.alert_rate_reference is None or drift.alert_rate_current is None
        else f"{drift.alert_rate_reference:.2%} → {drift.alert_rate_current:.2%}"
    )
    rows = (
        f"{fmt_metric('alerts', drift.rows)} ({fmt_metric('alerts', drift.rows_analysed)}) vs "
        f"{fmt_metric('alerts', drift.reference_rows)}"
    )
    score = f"{drift.score_statistic} {fmt_metric('score', drift.score_value)}" + (
        " (drifted)" if drift.score_drifted else " (stable)"
    )
    return [
        ("judged model", f"v{drift.model_version}"),
        ("window", f"{drift.window_start} → {drift.window_end}"),
        ("rows (analysed) vs reference", rows),
        ("signals", ", ".join(drift.signals) or "none"),
        ("drifted features", drifted),
        ("score distribution", score),
        ("alert rate reference → current", rate),
        ("run at", drift.generated_at),
    ]


def drift_view(
    drift: DriftFacts | Missing, out_dir: Path, registry: RegistryFacts | Missing
) -> dict | Missing:
    """The drift verdict, the model it judged (stale if @champion moved on), its signals."""
    if isinstance(drift, Missing):
        return drift
    judged = None if drift.model_version is None else str(drift.model_version)
    champion = _current(registry, "champion")
    psi_rows = [
        [name, fmt_metric("psi", value), Markup('<span class="level {0}">{0}</span>').format(level)]
        for name, value, level in drift.psi
    ]
    return {
        "judged": _ref("champion", judged, registry),
        "stale_current": champion
        if None not in (champion, judged) and judged != champion
        else None,
        "facts": drift,
        "link": os.path.relpath(drift.html_path, out_dir),
        "table": Table(["drift job", ""], _drift_facts(drift), "facts"),
        "psi": Table(["top feature (gain)", "PSI", "level"], psi_rows, "facts")
        if psi_rows
        else None,
    }


def explanation_view(
    explanation: ExampleExplanation | Missing, registry: RegistryFacts | Missing
) -> dict | Missing:
    """One decision, the model that made it (stale if neither alias points at it now)."""
    if isinstance(explanation, Missing):
        return explanation
    version = explanation.model_version
    champion, candidate = _current(registry, "champion"), _current(registry, "candidate")
    role = {champion: "champion", candidate: "candidate"}.get(version, "model")
    who = []
    if explanation.request_id:
        who.append(("request", explanation.request_id))
    if explanation.transaction_id is not None:
        who.append(("transaction", str(explanation.transaction_id)))
    stale = champion is not None and version not in (champion, candidate)
    return {
        "ref": _ref(role, version, registry),
        "stale": {"champion": champion, "candidate": candidate} if stale else None,
        "facts": explanation,
        "badge": "good" if explanation.decision == "APPROVE" else "bad",
        "who": who,
        "svg": Markup(contribution_svg(explanation.reasons)),
    }


def png_data_uri(png: bytes) -> str:
    """A PNG inlined as a ``data:`` URI: the page stays one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _global_shap_block(shap: GlobalShap) -> dict:
    rows = [[item.feature, f"{item.mean_abs_shap:.4f}"] for item in shap.features]
    return {
        "svg": Markup(mean_abs_shap_svg(shap.features, shap.units)),
        "table": Table(["feature", ("mean |SHAP|", shap.units)], rows, "metrics importance"),
        "summary": None if shap.summary_png is None else png_data_uri(shap.summary_png),
        "dependence": [(feature, png_data_uri(png)) for feature, png in shap.dependence_png],
    }


def global_shap_view(models: Sequence[ModelGlobalShap] | Missing) -> dict | Missing:
    """Each compared model's logged global SHAP (or why it has none), champion first."""
    if isinstance(models, Missing):
        return models
    blocks = []
    for model in models:
        block = {"ref": ModelRef(model.role, model.version, model.run_id), "shap": model.shap}
        if not isinstance(model.shap, Missing):
            block.update(_global_shap_block(model.shap))
        blocks.append(block)
    return {"refs": [b["ref"] for b in blocks], "models": blocks}


def _arms_table(canary: CanaryFacts) -> Table | None:
    if not canary.arms:
        return None
    rows = [
        [
            str(arm.get("arm", "?")),
            str(arm.get("model_version") or "–"),
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
    headers = ["arm", "version", "requests", "5xx", "p50 ms", "p95 ms", "p99 ms"]
    return Table([*headers, "fraud caught", "false alerts"], rows, "metrics")


def canary_view(canary: CanaryFacts | Missing, registry: RegistryFacts | Missing) -> dict | Missing:
    """The verdict, which candidate and champion it is about (stale if @candidate moved on)."""
    if isinstance(canary, Missing):
        return canary
    judged = None if canary.candidate_version is None else str(canary.candidate_version)
    champion_arm = next((a for a in canary.arms if a.get("arm") == "champion"), {})
    against = champion_arm.get("model_version")
    current = _current(registry, "candidate")
    return {
        "judged": _ref("candidate", judged, registry),
        "against": None if not against else _ref("champion", str(against), registry),
        "stale_current": current
        if current is not None and judged is not None and judged != current
        else None,
        "facts": canary,
        "badge": {"promote": "good", "rollback": "bad"}.get(canary.action, "warn"),
        "arms": _arms_table(canary),
    }


def _lineage_block(role: str, registry: RegistryFacts, lin: VersionLineage) -> LineageBlock:
    aliases = ", ".join("@" + a for a in lin.aliases) or "no alias"
    chain = [
        ("model version", "", f"{registry.model_name} v{lin.version} ({aliases})"),
        ("MLflow run", lin.run_id, f"({lin.run_name})"),
        ("git commit", lin.git_commit, ""),
        ("DVC data hash", lin.data_hash, ""),
        ("params hash", lin.params_hash, ""),
        ("registered", "", lin.registered_at),
    ]
    return LineageBlock(f"{role} v{lin.version}", chain, dict(lin.params))


def lineage_view(registry: RegistryFacts | Missing) -> dict | Missing:
    """Each version's chain and the champion's promotion history."""
    if isinstance(registry, Missing):
        return registry
    blocks, seen = [], set()
    for role, lin in (("champion", registry.champion), ("candidate", registry.candidate)):
        if lin is not None and lin.version not in seen:
            seen.add(lin.version)
            blocks.append(_lineage_block(role, registry, lin))
    rows = [
        [
            str(e.get("time", "?")),
            str(e.get("event", "?")),
            f"v{e.get('previous') or '–'} → v{e.get('version', '?')}",
            str(e.get("actor", "?")),
            str(e.get("reason", "")),
        ]
        for e in registry.history
    ]
    headers = ["when", "event", "move", "who / what", "why"]
    return {"blocks": blocks, "history": Table(headers, rows, "history") if rows else None}


def status_cards(report: RunReport) -> list[tuple[str, str, str | None]]:
    """Headline badges ``(title, text, version)``; a model's AP is the comparison window's."""
    cards = []
    registry, pr = report.registry, report.pr_curves
    compared = {} if isinstance(pr, Missing) else {c.version: c for c in pr.curves}
    if not isinstance(registry, Missing):
        for role, lin in (("champion", registry.champion), ("candidate", registry.candidate)):
            if lin is None:
                continue
            curve = compared.get(lin.version)
            # No comparison window, no AP: a figure from another window would mislead.
            ap = "" if curve is None else f" · AP {curve.average_precision:.4f}"
            cards.append((f"@{role}", f"v{lin.version}{ap}", lin.version))
    if not isinstance(report.drift, Missing):
        cards.append(("drift", "DRIFT" if report.drift.drift_detected else "none", None))
    if not isinstance(report.canary, Missing):
        cards.append(("canary", report.canary.action, None))
    return cards


# --------------------------------------------------------------------------- the page


@cache
def environment() -> jinja2.Environment:
    """The template environment (built once, on first use: nothing happens at import)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.tests["missing"] = lambda value: isinstance(value, Missing)
    env.tests["pair"] = lambda value: isinstance(value, tuple)
    return env


def render_report(report: RunReport, out_path: Path) -> str:
    """The whole page: inline CSS and SVG, no script, links relative to ``out_path``."""
    out_dir = Path(out_path).resolve().parent
    registry = report.registry
    return (
        environment()
        .get_template(PAGE_TEMPLATE)
        .render(
            name=registry.model_name if not isinstance(registry, Missing) else MODEL_NAME,
            generated_at=report.generated_at,
            tracking_uri=None if isinstance(registry, Missing) else registry.tracking_uri,
            cards=status_cards(report),
            data=data_view(report.data),
            models=models_view(registry, report.pr_curves),
            drift=drift_view(report.drift, out_dir, registry),
            explanation=explanation_view(report.explanation, registry),
            global_shap=global_shap_view(report.global_shap),
            canary=canary_view(report.canary, registry),
            lineage=lineage_view(registry),
        )
    )


def write_report(page: str, out_path: Path) -> Path:
    """Write the page atomically (a reader never sees half a report)."""
    with atomic_path(Path(out_path)) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out_path)
