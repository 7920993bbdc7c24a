"""Job 6's three smoke tests against a fake KServe model server on loopback."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from data import schema
from deploy.smoke import (
    Target,
    check_rejects_bad_input,
    main,
    run_smoke_tests,
    sample_transaction,
    score_of,
)

MODEL = "fraud-detector"
READY = f"/v1/models/{MODEL}"
PREDICT = f"/v1/models/{MODEL}:predict"


def predict_like_the_transformer(request) -> tuple[int, Any, dict[str, str]]:
    """Validate like serving/ does: a negative amount is a 422 naming the field."""
    (instance,) = request.body["instances"]
    if instance[schema.TX_AMOUNT] < 0:
        return (
            422,
            {"error": f"{schema.TX_AMOUNT}: must be >= 0, got {instance[schema.TX_AMOUNT]}"},
            {},
        )
    answer = {"fraud_probability": 0.031, "decision": "approve", "model_version": "7"}
    return 200, {"predictions": [answer]}, {"x-fraud-model-variant": "champion"}


@pytest.fixture
def healthy(fake_server):
    fake_server.route("GET", READY, (200, {"name": MODEL, "ready": True}, {}))
    fake_server.route("POST", PREDICT, predict_like_the_transformer)
    return fake_server


def test_three_smoke_tests_pass_on_a_healthy_service(healthy, capsys):
    assert main(["--url", healthy.url, "--ready-wait", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == 3
    assert "score 0.0310" in out and "variant champion" in out
    sent = [r.body for r in healthy.requests if r.method == "POST"]
    dated = sent[0]["instances"][0][schema.TX_DATETIME]
    assert sent[0]["instances"][0] == sample_transaction(dated)
    # Dated now by default: the serving manifests check event times against the server clock.
    age = pd.Timestamp.now(tz="UTC").tz_localize(None) - pd.Timestamp(dated)
    assert pd.Timedelta(0) <= age < pd.Timedelta(minutes=5)
    assert sent[1]["instances"][0][schema.TX_AMOUNT] == -5.0


def test_a_replayed_deployment_dates_the_smoke_transaction_at_its_replay_clock(healthy):
    args = ["--url", healthy.url, "--ready-wait", "1", "--tx-datetime", "2026-04-30T10:15:00"]
    assert main(args) == 0
    sent = [r.body for r in healthy.requests if r.method == "POST"]
    assert {body["instances"][0][schema.TX_DATETIME] for body in sent} == {"2026-04-30T10:15:00"}


def test_a_500_on_bad_input_fails_the_smoke_tests(fake_server, capsys):
    fake_server.route("GET", READY, (200, {"name": MODEL, "ready": True}, {}))

    def crash_on_bad_input(request):
        if request.body["instances"][0][schema.TX_AMOUNT] < 0:
            return 500, {"error": "Internal Server Error"}, {}
        return predict_like_the_transformer(request)

    fake_server.route("POST", PREDICT, crash_on_bad_input)
    assert main(["--url", fake_server.url, "--ready-wait", "1"]) == 1
    assert "FAIL rejects bad input: expected a 4xx, got HTTP 500" in capsys.readouterr().out


def test_a_4xx_that_does_not_name_the_field_fails(fake_server):
    fake_server.route("POST", PREDICT, (400, {"error": "bad request"}, {}))
    result = check_rejects_bad_input(Target(fake_server.url))
    assert not result.ok and schema.TX_AMOUNT in result.detail


@pytest.mark.parametrize(
    "prediction", [{"fraud_probability": 1.7}, {"decision": "approve"}, "high"]
)
def test_a_prediction_without_a_probability_fails(fake_server, prediction, capsys):
    fake_server.route("GET", READY, (200, {"name": MODEL, "ready": True}, {}))
    fake_server.route("POST", PREDICT, (200, {"predictions": [prediction]}, {}))
    assert main(["--url", fake_server.url, "--ready-wait", "1"]) == 1
    assert "FAIL scores a transaction" in capsys.readouterr().out


def test_a_model_that_never_gets_ready_stops_after_the_wait(fake_server):
    fake_server.route("GET", READY, (503, {"name": MODEL, "ready": False}, {}))
    results = run_smoke_tests(Target(fake_server.url, timeout=1), ready_wait_seconds=0.5)
    assert [(r.name, r.ok) for r in results] == [("ready", False)]
    assert not [r for r in fake_server.requests if r.method == "POST"]


def test_host_header_reaches_the_server(healthy):
    run_smoke_tests(
        Target(healthy.url, host_header="fraud-detector.fraud-detection.example.com"), 1
    )
    assert healthy.requests[0].headers["host"] == "fraud-detector.fraud-detection.example.com"


def test_unreachable_service_fails_without_traceback(closed_port_url, capsys):
    assert main(["--url", closed_port_url, "--ready-wait", "0.2", "--timeout", "1"]) == 1
    assert "FAIL ready" in capsys.readouterr().out


def test_score_of_reads_numbers_and_known_keys():
    assert score_of(0.2) == 0.2
    assert score_of({"fraud_probability": 0.9}) == 0.9
    assert score_of({"score": 1}) == 1.0
    assert score_of(True) is None and score_of({"probability_of_rain": 0.1}) is None


def test_url_is_required(monkeypatch, capsys):
    monkeypatch.delenv("FRAUD_SERVING_URL", raising=False)
    assert main([]) == 1
    assert "--url" in capsys.readouterr().err
