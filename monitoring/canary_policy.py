"""The canary's verdict policy: what each arm did, and promote / roll back / hold (no I/O).

The watch-list, in the order it is judged:

* any 5xx from the candidate rolls back at once (over ``max_error_rate`` when one is set);
* too little candidate traffic holds (no verdict on thin evidence);
* latency p50 / p95 / p99 at most ``max_latency_ratio`` x the champion's (+ slack);
* the candidate's score distribution against the champion's (PSI, same traffic mix);
* fraud caught / false alerts per arm where labels have matured (enough frauds only).

The splitter (``monitoring.canary_splitter``) records an :class:`Outcome` per request; the
job (``monitoring.canary``) turns them into :class:`ArmStats` and asks :func:`canary_verdict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from data.schema import TRANSACTION_ID, TX_DATETIME, TX_FRAUD
from fraudops.bundle import APPROVE
from fraudops.config import CanaryParams

CHAMPION, CANDIDATE = "champion", "candidate"
PROMOTE, ROLLBACK, HOLD = "promote", "rollback", "hold"


class CanaryError(RuntimeError):
    """The canary cannot run (no candidate, a server that never became ready...)."""


@dataclass(frozen=True)
class Outcome:
    """One replayed request as the splitter saw it."""

    arm: str
    status: int
    latency_ms: float
    transaction_id: int | None
    model_version: str | None
    fraud_probability: float | None
    decision: str | None


@dataclass(frozen=True)
class ArmStats:
    """What one arm did during the canary."""

    arm: str
    model_version: str | None
    requests: int
    errors_5xx: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    labelled_fraud: int = 0
    fraud_caught: int = 0
    labelled_genuine: int = 0
    false_alerts: int = 0

    @property
    def error_rate(self) -> float:
        """Share of this arm's requests answered with a 5xx."""
        return self.errors_5xx / self.requests if self.requests else 0.0

    @property
    def recall(self) -> float:
        """Share of matured frauds sent to review or declined."""
        return self.fraud_caught / self.labelled_fraud if self.labelled_fraud else float("nan")

    @property
    def false_alert_rate(self) -> float:
        """Share of matured genuine payments sent to review or declined."""
        return self.false_alerts / self.labelled_genuine if self.labelled_genuine else float("nan")


@dataclass(frozen=True)
class CanaryVerdict:
    """``promote``, ``rollback`` or ``hold``, why, and every check's outcome."""

    action: str
    reasons: tuple[str, ...]
    checks: dict[str, dict] = field(default_factory=dict)


@dataclass
class _Checks:
    """The checks judged so far, in order, with the reasons that failed and passed."""

    checks: dict[str, dict] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)

    def record(self, name: str, passed: bool | None, detail: str) -> None:
        """Keep one check; ``None`` = not judged (neither a failure nor a pass reason)."""
        self.checks[name] = {"passed": passed, "detail": detail}
        if passed is False:
            self.failures.append(f"{name}: {detail}")
        elif passed:
            self.passes.append(f"{name}: {detail}")


def _errors_ok(champion: ArmStats, candidate: ArmStats, params: CanaryParams) -> tuple[bool, str]:
    passed = (
        candidate.error_rate <= params.max_error_rate
        if params.max_error_rate > 0
        else candidate.errors_5xx == 0
    )
    detail = (
        f"candidate 5xx {candidate.errors_5xx}/{candidate.requests} "
        f"(max rate {params.max_error_rate:.1%}); champion 5xx {champion.errors_5xx}/{champion.requests}"
    )
    return passed, detail


def _judge_latency(
    checks: _Checks, champion: ArmStats, candidate: ArmStats, params: CanaryParams
) -> None:
    for label in ("p50", "p95", "p99"):
        ours = getattr(candidate, f"latency_{label}_ms")
        theirs = getattr(champion, f"latency_{label}_ms")
        limit = theirs * params.max_latency_ratio + params.latency_slack_ms
        checks.record(
            f"latency_{label}",
            ours <= limit,
            f"candidate {ours:.1f} ms vs champion {theirs:.1f} ms (limit {limit:.1f} ms)",
        )


def _judge_scores(checks: _Checks, score_psi: float | None, params: CanaryParams) -> None:
    if score_psi is None:
        checks.record("score_distribution", None, "not enough scores on both arms to compare")
        return
    checks.record(
        "score_distribution",
        score_psi <= params.max_score_psi,
        f"PSI of candidate vs champion scores {score_psi:.3f} (max {params.max_score_psi:g})",
    )


def _judge_labels(
    checks: _Checks, champion: ArmStats, candidate: ArmStats, params: CanaryParams
) -> None:
    enough = min(champion.labelled_fraud, candidate.labelled_fraud) >= params.min_labelled_fraud
    if not enough:
        detail = (
            f"not judged: matured frauds champion {champion.labelled_fraud}, candidate "
            f"{candidate.labelled_fraud} (need {params.min_labelled_fraud} each)"
        )
        checks.record("fraud_caught", None, detail)
        checks.record("false_alerts", None, detail)
        return
    checks.record(
        "fraud_caught",
        candidate.recall >= champion.recall - params.max_recall_drop,
        f"recall candidate {candidate.recall:.3f} vs champion {champion.recall:.3f} "
        f"(max drop {params.max_recall_drop:g})",
    )
    checks.record(
        "false_alerts",
        candidate.false_alert_rate
        <= champion.false_alert_rate + params.max_false_alert_rate_increase,
        f"false-alert rate candidate {candidate.false_alert_rate:.4f} vs champion "
        f"{champion.false_alert_rate:.4f} (max increase {params.max_false_alert_rate_increase:g})",
    )


def canary_verdict(
    champion: ArmStats, candidate: ArmStats, score_psi: float | None, params: CanaryParams
) -> CanaryVerdict:
    """Judge the candidate against the champion on the watch-list (pure: no I/O)."""
    checks = _Checks()
    error_ok, error_detail = _errors_ok(champion, candidate, params)
    # Recorded, not a reason: a promote's reasons are the evidence for it, not the gate.
    checks.checks["errors"] = {"passed": error_ok, "detail": error_detail}
    if not error_ok:
        # Errors reach customers: no further evidence needed.
        return CanaryVerdict(ROLLBACK, (f"errors: {error_detail}",), checks.checks)
    if candidate.requests < params.min_candidate_requests:
        reason = (
            f"traffic: candidate served {candidate.requests} requests, a verdict needs "
            f"{params.min_candidate_requests} (monitor.canary.min_candidate_requests)"
        )
        return CanaryVerdict(HOLD, (reason,), checks.checks)
    _judge_latency(checks, champion, candidate, params)
    _judge_scores(checks, score_psi, params)
    _judge_labels(checks, champion, candidate, params)
    if checks.failures:
        return CanaryVerdict(ROLLBACK, tuple(checks.failures), checks.checks)
    return CanaryVerdict(PROMOTE, tuple(checks.passes), checks.checks)


# --------------------------------------------------------------------------- statistics


def _label_outcomes(served: list[Outcome], labels: pd.DataFrame) -> dict[str, int]:
    """Matured frauds / genuine payments an arm served, and how many of each it alerted on."""
    frame = pd.DataFrame(
        {
            TRANSACTION_ID: [o.transaction_id for o in served],
            "decision": [o.decision for o in served],
        }
    ).merge(labels[[TRANSACTION_ID, TX_FRAUD]], on=TRANSACTION_ID, how="inner")
    alerted = frame["decision"] != APPROVE
    fraud = frame[TX_FRAUD].astype(bool)
    return {
        "labelled_fraud": int(fraud.sum()),
        "fraud_caught": int((alerted & fraud).sum()),
        "labelled_genuine": int((~fraud).sum()),
        "false_alerts": int((alerted & ~fraud).sum()),
    }


def arm_stats(outcomes: Iterable[Outcome], arm: str, labels: pd.DataFrame | None) -> ArmStats:
    """Latency percentiles, 5xx count and (matured) label outcomes of one arm."""
    mine = [o for o in outcomes if o.arm == arm]
    latencies = np.array([o.latency_ms for o in mine]) if mine else np.zeros(1)
    served = [o for o in mine if o.status < 300]
    versions = sorted({o.model_version for o in served if o.model_version})
    stats = {
        "arm": arm,
        "model_version": versions[-1] if versions else None,
        "requests": len(mine),
        "errors_5xx": sum(o.status >= 500 for o in mine),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "latency_p99_ms": float(np.percentile(latencies, 99)),
    }
    if labels is not None and not labels.empty and served:
        stats |= _label_outcomes(served, labels)
    return ArmStats(**stats)


def matured_labels(
    transactions: pd.DataFrame, as_of: pd.Timestamp, delay_days: int
) -> pd.DataFrame:
    """Labels of the transactions older than the label delay at ``as_of``."""
    if TX_FRAUD not in transactions.columns:
        return transactions.iloc[0:0]
    cutoff = as_of - pd.Timedelta(days=delay_days)
    return transactions[transactions[TX_DATETIME] < cutoff][[TRANSACTION_ID, TX_FRAUD]]
