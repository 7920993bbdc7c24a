"""Canary: the verdict as a pure function, then the splitter + replay + verdict + action
against stand-in model servers on loopback (good, erroring and score-shifted candidates)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pandas as pd
import pytest

from fraudops.config import CanaryParams
from monitoring.canary import console_summary, run_canary
from monitoring.canary_policy import (
    CANDIDATE,
    CHAMPION,
    HOLD,
    PROMOTE,
    ROLLBACK,
    ArmStats,
    canary_verdict,
)
from monitoring.canary_splitter import ARM_HEADER, VERSION_HEADER, TrafficSplitter, request_body
from tests.monitoring.conftest import World
from tests.monitoring.http_stub import Recorded, Reply, http_stub

PARAMS = CanaryParams(min_candidate_requests=50, latency_slack_ms=5.0, min_labelled_fraud=20)


def arm(name: str, **overrides) -> ArmStats:
    values = {
        "arm": name,
        "model_version": "1" if name == CHAMPION else "2",
        "requests": 800 if name == CHAMPION else 200,
        "errors_5xx": 0,
        "latency_p50_ms": 4.0,
        "latency_p95_ms": 8.0,
        "latency_p99_ms": 12.0,
        "labelled_fraud": 40,
        "fraud_caught": 30,
        "labelled_genuine": 900,
        "false_alerts": 9,
    }
    return ArmStats(**{**values, **overrides})


# --------------------------------------------------------------------------- pure verdict


def test_a_candidate_as_good_as_the_champion_is_promoted() -> None:
    verdict = canary_verdict(arm(CHAMPION), arm(CANDIDATE), 0.02, PARAMS)
    assert verdict.action == PROMOTE
    assert all(check["passed"] for check in verdict.checks.values())
    assert any(reason.startswith("latency_p99") for reason in verdict.reasons)


def test_any_5xx_from_the_candidate_rolls_back_at_once() -> None:
    # even before it has enough traffic for the other checks
    candidate = arm(CANDIDATE, requests=10, errors_5xx=1)
    verdict = canary_verdict(arm(CHAMPION), candidate, None, PARAMS)
    assert verdict.action == ROLLBACK
    assert verdict.reasons[0].startswith("errors: candidate 5xx 1/10")
    assert set(verdict.checks) == {"errors"}


def test_an_error_budget_allows_rare_errors() -> None:
    params = PARAMS.model_copy(update={"max_error_rate": 0.01})
    assert (
        canary_verdict(arm(CHAMPION), arm(CANDIDATE, errors_5xx=1), 0.0, params).action == PROMOTE
    )
    assert (
        canary_verdict(arm(CHAMPION), arm(CANDIDATE, errors_5xx=5), 0.0, params).action == ROLLBACK
    )


def test_too_little_candidate_traffic_holds() -> None:
    verdict = canary_verdict(arm(CHAMPION), arm(CANDIDATE, requests=20), 0.0, PARAMS)
    assert verdict.action == HOLD and "needs 50" in verdict.reasons[0]


def test_a_slow_tail_rolls_back_and_names_the_percentile() -> None:
    verdict = canary_verdict(arm(CHAMPION), arm(CANDIDATE, latency_p99_ms=40.0), 0.0, PARAMS)
    assert verdict.action == ROLLBACK
    assert [r.split(":")[0] for r in verdict.reasons] == ["latency_p99"]
    assert "limit 23.0 ms" in verdict.reasons[0]  # 12 x 1.5 + 5


def test_shifted_scores_roll_back() -> None:
    verdict = canary_verdict(arm(CHAMPION), arm(CANDIDATE), 0.35, PARAMS)
    assert verdict.action == ROLLBACK
    assert verdict.reasons == (
        "score_distribution: PSI of candidate vs champion scores 0.350 (max 0.2)",
    )


def test_labelled_outcomes_count_only_with_enough_matured_fraud() -> None:
    missing_fraud = arm(CANDIDATE, fraud_caught=15)  # recall 0.375 vs 0.75
    verdict = canary_verdict(arm(CHAMPION), missing_fraud, 0.0, PARAMS)
    assert verdict.action == ROLLBACK and verdict.reasons[0].startswith("fraud_caught")
    noisy = arm(CANDIDATE, labelled_fraud=5, fraud_caught=1)
    judged = canary_verdict(arm(CHAMPION), noisy, 0.0, PARAMS)
    assert judged.action == PROMOTE
    assert judged.checks["fraud_caught"]["passed"] is None
    assert "not judged" in judged.checks["fraud_caught"]["detail"]


def test_more_false_alerts_roll_back() -> None:
    verdict = canary_verdict(arm(CHAMPION), arm(CANDIDATE, false_alerts=45), 0.0, PARAMS)
    assert verdict.action == ROLLBACK and verdict.reasons[0].startswith("false_alerts")


# --------------------------------------------------------------------------- end to end


def model_server(version: str, shift: float = 0.0, fail_every: int = 0):
    """A stand-in L2 server: a fixed amount rule as its 'model'."""
    calls = {"n": 0}

    def handle(request: Recorded) -> Reply:
        calls["n"] += 1
        if fail_every and calls["n"] % fail_every == 0:
            return Reply(status=500, body={"error": "boom"})
        (tx,) = request.json()["instances"]
        p = min(1.0, (0.9 if tx["tx_amount"] > 220 else 0.02 + tx["tx_amount"] / 10_000) + shift)
        decision = "DECLINE" if p >= 0.6 else "REVIEW" if p >= 0.1 else "APPROVE"
        prediction = {
            "request_id": "r",
            "transaction_id": tx["transaction_id"],
            "fraud_probability": p,
            "decision": decision,
            "model_version": version,
            "unknown_customer": False,
            "unknown_terminal": False,
        }
        return Reply(
            body={"predictions": [prediction], "model_version": version, "request_id": "r"}
        )

    return handle


@contextmanager
def arms(candidate_handler) -> Iterator[dict[str, str]]:
    with http_stub(model_server("1")) as champion, http_stub(candidate_handler) as candidate:
        yield {CHAMPION: champion.url, CANDIDATE: candidate.url}


@pytest.fixture(scope="module")
def traffic(world: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    live = world.live("none").head(600)
    return live, live[["transaction_id", "tx_fraud"]]


class Calls:
    def __init__(self) -> None:
        self.promoted: list[dict] = []
        self.tags: list[tuple[str, dict]] = []

    def promote(self, **kwargs) -> None:
        self.promoted.append(kwargs)

    def tag(self, version: str, tags: dict[str, str]) -> None:
        self.tags.append((version, tags))


def test_a_good_candidate_is_promoted(traffic) -> None:
    transactions, labels = traffic
    calls = Calls()
    with arms(model_server("2")) as backends:
        report = run_canary(transactions, backends, PARAMS, labels, calls.promote, calls.tag)
    assert report.verdict.action == PROMOTE
    assert [c["version"] for c in calls.promoted] == ["2"]
    assert calls.promoted[0]["reason"].startswith("canary: ")
    assert calls.tags == [
        ("2", {"canary_verdict": PROMOTE, "canary_reasons": calls.promoted[0]["reason"]})
    ]
    assert report.applied == "@champion moved to version 2"
    # 80/20 split, every request answered and counted once
    assert report.champion.requests + report.candidate.requests == len(transactions)
    assert 0.14 < report.candidate.requests / len(transactions) < 0.26
    assert report.champion.model_version == "1" and report.candidate.model_version == "2"
    assert report.score_psi is not None and report.score_psi < PARAMS.max_score_psi
    assert report.champion.labelled_fraud + report.candidate.labelled_fraud == int(
        labels.tx_fraud.sum()
    )
    assert "PROMOTE" in console_summary(report)


def test_an_erroring_candidate_is_rolled_back_and_taken_out_of_traffic(traffic) -> None:
    transactions, labels = traffic
    calls = Calls()
    with arms(model_server("2", fail_every=25)) as backends:
        report = run_canary(transactions, backends, PARAMS, labels, calls.promote, calls.tag)
    assert report.verdict.action == ROLLBACK
    assert report.verdict.reasons[0].startswith("errors:")
    assert report.candidate.errors_5xx >= 1
    assert calls.promoted == []
    assert report.applied.startswith("candidate removed from traffic")
    assert calls.tags[0][1]["canary_verdict"] == ROLLBACK


def test_a_candidate_with_shifted_scores_is_rolled_back(traffic) -> None:
    transactions, labels = traffic
    calls = Calls()
    with arms(model_server("2", shift=0.3)) as backends:
        report = run_canary(transactions, backends, PARAMS, labels, calls.promote, calls.tag)
    assert report.verdict.action == ROLLBACK
    assert any(r.startswith("score_distribution") for r in report.verdict.reasons)
    assert report.score_psi > PARAMS.max_score_psi
    assert calls.promoted == []


def test_the_splitter_tags_answers_and_a_rollback_stops_candidate_traffic(traffic) -> None:
    transactions, _ = traffic
    with arms(model_server("2")) as backends:
        splitter = TrafficSplitter(backends, candidate_weight=0.5, seed=1)
        url = splitter.start()
        try:
            path = "/v1/models/fraud-detector:predict"
            body = request_body(transactions.iloc[0].to_dict())
            seen = set()
            for _ in range(20):
                response = httpx.post(
                    url + path, content=body, headers={"Content-Type": "application/json"}
                )
                assert response.status_code == 200
                seen.add((response.headers[ARM_HEADER], response.headers[VERSION_HEADER]))
                assert (
                    json.loads(response.content)["model_version"]
                    == response.headers[VERSION_HEADER]
                )
            assert seen == {(CHAMPION, "1"), (CANDIDATE, "2")}
            splitter.set_candidate_weight(0.0)
            before = len(splitter.outcomes)
            for _ in range(20):
                httpx.post(url + path, content=body, headers={"Content-Type": "application/json"})
            assert {o.arm for o in splitter.outcomes[before:]} == {CHAMPION}
        finally:
            splitter.stop()
