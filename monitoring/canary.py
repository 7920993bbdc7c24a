"""Local canary: ``@champion`` and ``@candidate`` side by side behind a weighted splitter.

``python -m monitoring.canary`` (``make canary``) starts two L2 model servers
(``serving.level2`` with ``FRAUD_MODEL_ALIAS=champion`` / ``candidate``), puts a small
traffic splitter in front (``monitor.canary.candidate_weight``, default 80/20; every
answer is tagged with the arm and the serving model version -- on a cluster Istio/KServe
does this split), replays simulated transactions through it and judges the candidate on
the series' watch-list:

* any 5xx from the candidate rolls back at once;
* latency p50 / p95 / p99 at most ``max_latency_ratio`` x the champion's (+ slack);
* the candidate's score distribution against the champion's (PSI, same traffic mix);
* fraud caught / false alerts per arm where labels have matured (enough frauds only).

``promote`` moves ``@champion`` to the candidate (``training.register.promote``);
``rollback`` takes the candidate out of traffic and tags its version with the reasons;
``hold`` (too little candidate traffic) changes nothing. Exit code: 0 promote or hold,
3 rollback, 2 error.

Three modules, one job each: ``monitoring.canary_policy`` (the verdict, a pure function of
the arms' statistics), ``monitoring.canary_splitter`` (the weighted splitter and the
replay client) and this one (the run: model servers, replay, verdict, action, CLI).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from data.files import write_json_atomic
from data.ingest import read_transactions
from data.schema import TX_DATETIME
from fraudops.config import CanaryParams, load_params
from fraudops.paths import paths
from fraudops.registry import mlflow_client
from monitoring.canary_policy import (
    CANDIDATE,
    CHAMPION,
    PROMOTE,
    ROLLBACK,
    ArmStats,
    CanaryError,
    CanaryVerdict,
    Outcome,
    arm_stats,
    canary_verdict,
    matured_labels,
)
from monitoring.canary_splitter import TrafficSplitter, replay
from monitoring.drift_analysis import psi
from monitoring.outputs import EXIT_DRIFT, EXIT_OK, fail, json_ready, quiet_mlflow_downloads
from serving.processes import Component, spawn, terminate, wait_ready
from training.register import CANDIDATE as CANDIDATE_ALIAS
from training.register import CHAMPION as CHAMPION_ALIAS
from training.register import current_version
from training.register import promote as promote_alias


def score_divergence(outcomes: Iterable[Outcome], min_scores: int = 30) -> float | None:
    """PSI of the candidate's scores against the champion's (the drift job's PSI, Evidently)."""
    scores = {
        arm: [
            o.fraud_probability
            for o in outcomes
            if o.arm == arm and o.fraud_probability is not None
        ]
        for arm in (CHAMPION, CANDIDATE)
    }
    if min(len(s) for s in scores.values()) < min_scores:
        return None
    return psi(pd.Series(scores[CHAMPION]), pd.Series(scores[CANDIDATE]))


# --------------------------------------------------------------------------- model servers


def model_server(alias: str, port: int) -> Component:
    """The ``serving.level2`` process serving registry ``alias`` on 127.0.0.1:``port``."""
    return Component(
        name=f"canary-{alias}",
        module="serving.level2",
        args=("--host", "127.0.0.1", "--port", str(port)),
        port=port,
        ready_path="/readyz",
        # The canary pins what each arm serves: an alias move mid-run must not swap it.
        env={"FRAUD_MODEL_ALIAS": alias, "FRAUD_RELOAD_INTERVAL_SECONDS": "0"},
    )


# --------------------------------------------------------------------------- the run


@dataclass
class CanaryReport:
    """Everything the canary measured and decided."""

    verdict: CanaryVerdict
    champion: ArmStats
    candidate: ArmStats
    score_psi: float | None
    applied: str

    def as_dict(self) -> dict:
        """Strict-JSON-ready dict."""
        return json_ready(
            {
                "verdict": asdict(self.verdict),
                "champion": asdict(self.champion),
                "candidate": asdict(self.candidate),
                "score_psi": self.score_psi,
                "applied": self.applied,
            }
        )


def analyse(
    outcomes: list[Outcome], labels: pd.DataFrame | None, params: CanaryParams
) -> CanaryReport:
    """Arm statistics, score divergence and the verdict (nothing applied yet)."""
    champion = arm_stats(outcomes, CHAMPION, labels)
    candidate = arm_stats(outcomes, CANDIDATE, labels)
    divergence = score_divergence(outcomes)
    verdict = canary_verdict(champion, candidate, divergence, params)
    return CanaryReport(verdict, champion, candidate, divergence, applied="nothing")


def apply_verdict(
    report: CanaryReport,
    splitter: TrafficSplitter | None,
    promote: Callable[..., object],
    tag_candidate: Callable[[str, dict[str, str]], None] | None = None,
) -> str:
    """Act on the verdict: promote moves @champion; rollback removes the candidate from traffic."""
    verdict, version = report.verdict, report.candidate.model_version
    reason = "canary: " + "; ".join(verdict.reasons)
    if verdict.action == PROMOTE:
        if version is None:
            raise CanaryError(
                "promote: the candidate served no successful request to name its version"
            )
        promote(version=version, actor="canary", reason=reason[:500])
        applied = f"@champion moved to version {version}"
    elif verdict.action == ROLLBACK:
        if splitter is not None:
            splitter.set_candidate_weight(0.0)
        applied = "candidate removed from traffic (weight 0); @champion unchanged"
    else:
        applied = "nothing changed (hold)"
    if tag_candidate is not None and version is not None:
        tag_candidate(version, {"canary_verdict": verdict.action, "canary_reasons": reason[:500]})
    report.applied = applied
    return applied


def run_canary(
    transactions: pd.DataFrame,
    backends: dict[str, str],
    params: CanaryParams,
    labels: pd.DataFrame | None = None,
    promote: Callable[..., object] | None = None,
    tag_candidate: Callable[[str, dict[str, str]], None] | None = None,
    apply: bool = True,
) -> CanaryReport:
    """Replay ``transactions`` through a splitter over ``backends``, judge, and act."""
    splitter = TrafficSplitter(backends, params.candidate_weight, params.seed)
    url = splitter.start()
    try:
        replay(url, transactions)
        report = analyse(list(splitter.outcomes), labels, params)
        if apply:
            if promote is None:
                raise CanaryError("apply: a promote function is required")
            apply_verdict(report, splitter, promote, tag_candidate)
    finally:
        splitter.stop()
    return report


def console_summary(report: CanaryReport) -> str:
    """The verdict, the reasons and the per-arm numbers, one screen."""
    lines = [f"canary verdict: {report.verdict.action.upper()}"]
    lines += [f"  - {reason}" for reason in report.verdict.reasons]
    lines.append(f"applied: {report.applied}")
    lines.append("")
    lines.append(
        f"{'arm':<10}{'version':>8}{'requests':>10}{'5xx':>6}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'frauds':>8}{'caught':>8}{'false alerts':>14}"
    )
    for arm in (report.champion, report.candidate):
        lines.append(
            f"{arm.arm:<10}{arm.model_version or '-':>8}{arm.requests:>10}{arm.errors_5xx:>6}"
            f"{arm.latency_p50_ms:>9.1f}{arm.latency_p95_ms:>9.1f}{arm.latency_p99_ms:>9.1f}"
            f"{arm.labelled_fraud:>8}{arm.fraud_caught:>8}{arm.false_alerts:>14}"
        )
    psi_text = "-" if report.score_psi is None else f"{report.score_psi:.3f}"
    lines.append(f"score PSI candidate vs champion: {psi_text}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.canary",
        description="Champion vs candidate behind a weighted splitter; promote or roll back.",
    )
    parser.add_argument(
        "--transactions",
        type=Path,
        help="traffic to replay (default: every batch in data/live, the simulator's)",
    )
    parser.add_argument("--requests", type=int, help="how many to replay (default: monitor.canary)")
    parser.add_argument("--candidate-weight", type=float, help="candidate share (default 0.2)")
    parser.add_argument("--as-of", help="'now' for label maturity (default: newest transaction)")
    parser.add_argument("--no-apply", action="store_true", help="print the verdict, change nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON as well")
    return parser


def _versions_under_test(model_name: str) -> None:
    """Refuse to run without a candidate that differs from the champion."""
    champion_version = current_version(CHAMPION_ALIAS, model_name)
    candidate_version = current_version(CANDIDATE_ALIAS, model_name)
    if candidate_version is None:
        raise CanaryError(f"{model_name}@candidate: no candidate to test (train one first)")
    if candidate_version == champion_version:
        raise CanaryError(
            f"{model_name}@candidate is version {candidate_version}, already @champion"
        )


def _start_arms(
    canary: CanaryParams, started: list[tuple[Component, subprocess.Popen, Path]]
) -> dict[str, str]:
    """Start both model servers (appending each to ``started`` at once, for the cleanup)."""
    log_dir = paths().run_dir / "canary"
    env = {"FRAUD_PREDICTION_LOG_DIR": str(log_dir / "predictions")}
    components = [
        model_server(CHAMPION, canary.champion_port),
        model_server(CANDIDATE, canary.candidate_port),
    ]
    for component in components:
        log_path = log_dir / f"{component.name}.log"
        started.append((component, spawn(component, log_path, env), log_path))
    for component, process, log_path in started:
        wait_ready(component, process, log_path, canary.startup_timeout_seconds)
    return {CHAMPION: components[0].url(), CANDIDATE: components[1].url()}


def _run(args: argparse.Namespace, started: list) -> CanaryReport:
    """Load the traffic, start the arms, replay, judge and (unless --no-apply) act."""
    params = load_params()
    canary = params.monitor.canary
    if args.candidate_weight is not None:
        canary = canary.model_copy(update={"candidate_weight": args.candidate_weight})
    model_name = params.register_.model_name
    _versions_under_test(model_name)
    source = args.transactions or paths().live_dir
    transactions = read_transactions(source).sort_values(TX_DATETIME, kind="stable")
    as_of = pd.Timestamp(args.as_of) if args.as_of else transactions[TX_DATETIME].max()
    labels = matured_labels(transactions, as_of, params.featurize.label_delay_days)
    replayed = transactions.head(args.requests or canary.n_requests)
    backends = _start_arms(canary, started)
    report = run_canary(replayed, backends, canary, labels, apply=False)
    if not args.no_apply:
        apply_verdict(
            report,
            None,
            lambda **kw: promote_alias(model_name=model_name, **kw),
            lambda version, tags: _tag_version(model_name, version, tags),
        )
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: start both servers, replay, judge, act; 0 promote/hold, 3 rollback."""
    args = _parser().parse_args(argv)
    quiet_mlflow_downloads()
    started: list[tuple[Component, subprocess.Popen, Path]] = []
    try:
        report = _run(args, started)
    except Exception as exc:  # noqa: BLE001 -- CLI contract: one line and exit 2, no traceback
        return fail("canary", exc)
    finally:
        # Only the two servers this run started, by their PIDs.
        terminate([process.pid for _, process, _ in started])
    # The run report (`make report`) shows the latest verdict from this file.
    write_json_atomic(json_ready(report.as_dict()), paths().canary_verdict)
    print(console_summary(report))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return EXIT_DRIFT if report.verdict.action == ROLLBACK else EXIT_OK


def _tag_version(model_name: str, version: str, tags: dict[str, str]) -> None:
    client, _ = mlflow_client(check=False)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)


if __name__ == "__main__":
    sys.exit(main())
