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
``hold`` (too little candidate traffic) changes nothing. The verdict is the pure function
:func:`canary_verdict`. Exit code: 0 promote or hold, 3 rollback, 2 error.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from data.files import write_json_atomic
from data.schema import REQUEST_COLUMNS, TRANSACTION_ID, TX_DATETIME, TX_FRAUD
from fraudops.bundle import APPROVE, MODEL_NAME
from fraudops.config import CanaryParams, load_params
from fraudops.paths import paths
from fraudops.registry import mlflow_client
from monitoring.outputs import EXIT_DRIFT, EXIT_OK, fail, json_ready, quiet_mlflow_downloads
from serving.launch import Component, spawn, terminate, wait_ready

CHAMPION, CANDIDATE = "champion", "candidate"
PROMOTE, ROLLBACK, HOLD = "promote", "rollback", "hold"
ARM_HEADER, VERSION_HEADER = "X-Canary-Arm", "X-Model-Version"


class CanaryError(RuntimeError):
    """The canary cannot run (no candidate, a server that never became ready...)."""


# --------------------------------------------------------------------------- the verdict


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


def canary_verdict(
    champion: ArmStats, candidate: ArmStats, score_psi: float | None, params: CanaryParams
) -> CanaryVerdict:
    """Judge the candidate against the champion on the watch-list (pure: no I/O)."""
    checks: dict[str, dict] = {}
    error_ok = (
        candidate.error_rate <= params.max_error_rate
        if params.max_error_rate > 0
        else candidate.errors_5xx == 0
    )
    checks["errors"] = {
        "passed": error_ok,
        "detail": f"candidate 5xx {candidate.errors_5xx}/{candidate.requests} "
        f"(max rate {params.max_error_rate:.1%}); champion 5xx {champion.errors_5xx}/{champion.requests}",
    }
    if not error_ok:
        # Errors reach customers: no further evidence needed.
        return CanaryVerdict(ROLLBACK, (f"errors: {checks['errors']['detail']}",), checks)
    if candidate.requests < params.min_candidate_requests:
        reason = (
            f"traffic: candidate served {candidate.requests} requests, a verdict needs "
            f"{params.min_candidate_requests} (monitor.canary.min_candidate_requests)"
        )
        return CanaryVerdict(HOLD, (reason,), checks)

    failures: list[str] = []
    passes: list[str] = []

    def record(name: str, passed: bool | None, detail: str) -> None:
        checks[name] = {"passed": passed, "detail": detail}
        if passed is False:
            failures.append(f"{name}: {detail}")
        elif passed:
            passes.append(f"{name}: {detail}")

    for label in ("p50", "p95", "p99"):
        ours = getattr(candidate, f"latency_{label}_ms")
        theirs = getattr(champion, f"latency_{label}_ms")
        limit = theirs * params.max_latency_ratio + params.latency_slack_ms
        record(
            f"latency_{label}",
            ours <= limit,
            f"candidate {ours:.1f} ms vs champion {theirs:.1f} ms (limit {limit:.1f} ms)",
        )
    if score_psi is None:
        record("score_distribution", None, "not enough scores on both arms to compare")
    else:
        record(
            "score_distribution",
            score_psi <= params.max_score_psi,
            f"PSI of candidate vs champion scores {score_psi:.3f} (max {params.max_score_psi:g})",
        )
    enough = min(champion.labelled_fraud, candidate.labelled_fraud) >= params.min_labelled_fraud
    if not enough:
        detail = (
            f"not judged: matured frauds champion {champion.labelled_fraud}, candidate "
            f"{candidate.labelled_fraud} (need {params.min_labelled_fraud} each)"
        )
        record("fraud_caught", None, detail)
        record("false_alerts", None, detail)
    else:
        record(
            "fraud_caught",
            candidate.recall >= champion.recall - params.max_recall_drop,
            f"recall candidate {candidate.recall:.3f} vs champion {champion.recall:.3f} "
            f"(max drop {params.max_recall_drop:g})",
        )
        record(
            "false_alerts",
            candidate.false_alert_rate
            <= champion.false_alert_rate + params.max_false_alert_rate_increase,
            f"false-alert rate candidate {candidate.false_alert_rate:.4f} vs champion "
            f"{champion.false_alert_rate:.4f} (max increase {params.max_false_alert_rate_increase:g})",
        )
    if failures:
        return CanaryVerdict(ROLLBACK, tuple(failures), checks)
    return CanaryVerdict(PROMOTE, tuple(passes), checks)


# --------------------------------------------------------------------------- the splitter


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


class TrafficSplitter:
    """A weighted HTTP splitter on 127.0.0.1: each POST goes to one arm, answers are tagged.

    Locally it stands in for Istio's weighted routes / KServe's ``canaryTrafficPercent``.
    ``set_candidate_weight(0)`` takes the candidate out of traffic (what a rollback does).
    """

    def __init__(
        self, backends: dict[str, str], candidate_weight: float, seed: int, timeout: float = 10.0
    ) -> None:
        import httpx

        missing = {CHAMPION, CANDIDATE} - set(backends)
        if missing:
            raise CanaryError(f"backends: missing {', '.join(sorted(missing))}")
        self.backends = {arm: url.rstrip("/") for arm, url in backends.items()}
        self.candidate_weight = candidate_weight
        self.outcomes: list[Outcome] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=timeout)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def set_candidate_weight(self, weight: float) -> None:
        """Change the candidate's share of new requests (0 = out of traffic)."""
        with self._lock:
            self.candidate_weight = weight

    def _choose(self) -> str:
        with self._lock:
            return CANDIDATE if self._random.random() < self.candidate_weight else CHAMPION

    def forward(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict]:
        """Send one request to a weighted-random arm; record and tag the answer."""
        import httpx

        arm = self._choose()
        started = time.perf_counter()
        try:
            response = self._client.post(self.backends[arm] + path, content=body, headers=headers)
            status, content = response.status_code, response.content
        except httpx.HTTPError as exc:
            status, content = 502, json.dumps({"error": f"{arm} unreachable: {exc}"}).encode()
        latency_ms = (time.perf_counter() - started) * 1000
        version = probability = decision = transaction_id = None
        if status < 300:
            try:
                prediction = json.loads(content)["predictions"][0]
                version = str(prediction.get("model_version"))
                probability = float(prediction["fraud_probability"])
                decision = str(prediction["decision"])
                transaction_id = int(prediction["transaction_id"])
            except (ValueError, KeyError, IndexError, TypeError):
                status = 502  # an answer the client cannot use is a server failure
        outcome = Outcome(arm, status, latency_ms, transaction_id, version, probability, decision)
        with self._lock:
            self.outcomes.append(outcome)
        return status, content, {ARM_HEADER: arm, VERSION_HEADER: version or ""}

    def start(self) -> str:
        """Listen on a free loopback port; returns the splitter's base URL."""
        splitter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, content, extra = splitter.forward(
                    self.path,
                    self.rfile.read(length),
                    {"Content-Type": self.headers.get("Content-Type", "application/json")},
                )
                self.send_response(status)
                for name, value in {**extra, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args) -> None:  # the console shows the verdict, not access logs
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop listening and close the upstream client."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()


def request_body(transaction: dict) -> bytes:
    """The KServe v1 body for one raw transaction (request columns only)."""
    instance = {column: transaction[column] for column in REQUEST_COLUMNS}
    instance[TX_DATETIME] = pd.Timestamp(instance[TX_DATETIME]).isoformat()
    instance[TRANSACTION_ID] = int(instance[TRANSACTION_ID])
    instance["customer_id"] = int(instance["customer_id"])
    instance["terminal_id"] = int(instance["terminal_id"])
    instance["tx_amount"] = float(instance["tx_amount"])
    return json.dumps({"instances": [instance]}).encode()


def replay(url: str, transactions: pd.DataFrame, model_name: str = MODEL_NAME) -> int:
    """POST each transaction (one per request, in time order) to the splitter; returns count."""
    import httpx

    path = f"/v1/models/{model_name}:predict"
    with httpx.Client(timeout=30.0) as client:
        for transaction in transactions.to_dict("records"):
            client.post(
                url + path,
                content=request_body(transaction),
                headers={"Content-Type": "application/json"},
            )
    return len(transactions)


# --------------------------------------------------------------------------- statistics


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
        frame = pd.DataFrame(
            {
                TRANSACTION_ID: [o.transaction_id for o in served],
                "decision": [o.decision for o in served],
            }
        ).merge(labels[[TRANSACTION_ID, TX_FRAUD]], on=TRANSACTION_ID, how="inner")
        alerted = frame["decision"] != APPROVE
        fraud = frame[TX_FRAUD].astype(bool)
        stats |= {
            "labelled_fraud": int(fraud.sum()),
            "fraud_caught": int((alerted & fraud).sum()),
            "labelled_genuine": int((~fraud).sum()),
            "false_alerts": int((alerted & ~fraud).sum()),
        }
    return ArmStats(**stats)


def score_divergence(outcomes: Iterable[Outcome], min_scores: int = 30) -> float | None:
    """PSI of the candidate's scores against the champion's (the drift job's PSI, Evidently)."""
    from monitoring.drift import psi

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


def matured_labels(
    transactions: pd.DataFrame, as_of: pd.Timestamp, delay_days: int
) -> pd.DataFrame:
    """Labels of the transactions older than the label delay at ``as_of``."""
    if TX_FRAUD not in transactions.columns:
        return transactions.iloc[0:0]
    cutoff = as_of - pd.Timedelta(days=delay_days)
    return transactions[transactions[TX_DATETIME] < cutoff][[TRANSACTION_ID, TX_FRAUD]]


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


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: start both servers, replay, judge, act; 0 promote/hold, 3 rollback."""
    from data.ingest import read_transactions
    from training.register import CANDIDATE as CANDIDATE_ALIAS
    from training.register import current_version
    from training.register import promote as promote_alias

    args = _parser().parse_args(argv)
    quiet_mlflow_downloads()
    started: list[tuple[Component, subprocess.Popen, Path]] = []
    try:
        params = load_params()
        canary = params.monitor.canary
        if args.candidate_weight is not None:
            canary = canary.model_copy(update={"candidate_weight": args.candidate_weight})
        model_name = params.register_.model_name
        champion_version = current_version("champion", model_name)
        candidate_version = current_version(CANDIDATE_ALIAS, model_name)
        if candidate_version is None:
            raise CanaryError(f"{model_name}@candidate: no candidate to test (train one first)")
        if candidate_version == champion_version:
            raise CanaryError(
                f"{model_name}@candidate is version {candidate_version}, already @champion"
            )
        source = args.transactions or paths().live_dir
        transactions = read_transactions(source).sort_values(TX_DATETIME, kind="stable")
        as_of = pd.Timestamp(args.as_of) if args.as_of else transactions[TX_DATETIME].max()
        labels = matured_labels(transactions, as_of, params.featurize.label_delay_days)
        replayed = transactions.head(args.requests or canary.n_requests)
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
        backends = {
            CHAMPION: components[0].url(),
            CANDIDATE: components[1].url(),
        }
        report = run_canary(replayed, backends, canary, labels, apply=False)
        if not args.no_apply:
            apply_verdict(
                report,
                None,
                lambda **kw: promote_alias(model_name=model_name, **kw),
                lambda version, tags: _tag_version(model_name, version, tags),
            )
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
