"""The run report's facts: small typed records, one per section, or :class:`Missing`.

:mod:`tutorial.report_gather` fills them from the real sources; :mod:`tutorial.report_render`
turns them into the page. Nothing here reads a file or renders anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data.validate import ValidationReport
from monitoring.lineage import VersionLineage


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
class FeatureShap:
    """One feature's mean |SHAP| over the explained sample (in :attr:`GlobalShap.units`)."""

    feature: str
    mean_abs_shap: float


@dataclass(frozen=True)
class GlobalShap:
    """A training run's logged global explanation (``training.explain_global``)."""

    units: str
    n_rows: int
    base_value: float
    #: largest first, in the order of the logged ``mean_abs_shap.json``
    features: tuple[FeatureShap, ...]
    summary_png: bytes | None
    #: ``(feature, png)`` dependence plots, in the order of :attr:`features`
    dependence_png: tuple[tuple[str, bytes], ...]
    source: str


@dataclass(frozen=True)
class ModelGlobalShap:
    """Which model (role, version, run) and its global explanation, or why there is none."""

    role: str
    version: str
    run_id: str
    shap: GlobalShap | Missing


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
    #: champion first, then the candidate when it is another version
    global_shap: tuple[ModelGlobalShap, ...] | Missing = Missing(
        "no registered model to explain", "make train"
    )
