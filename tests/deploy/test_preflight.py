"""Job 0's pre-flight checks against loopback servers."""

from __future__ import annotations

import time

from deploy.preflight import endpoint_check, main, mlflow_check, run_all, run_check


def test_all_services_up(fake_server, capsys):
    fake_server.route("GET", "/health", (200, "OK", {}))
    # An anonymous request to an S3 endpoint is refused: the endpoint is still up.
    fake_server.route("GET", "/", (403, {"Code": "AccessDenied"}, {}))
    code = main(
        [
            "--mlflow-url",
            fake_server.url,
            "--object-store-url",
            fake_server.url,
            "--dvc-remote-url",
            fake_server.url,
            "--budget",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("ok  ") == 3 and "HTTP 403" in out


def test_mlflow_must_answer_200(fake_server):
    fake_server.route("GET", "/health", (503, {"error": "db down"}, {}))
    (outcome,) = run_all([mlflow_check(fake_server.url)], budget_seconds=0.5, timeout=1)
    assert not outcome.ok and "HTTP 503" in outcome.detail


def test_unreachable_service_fails_fast_and_says_which(fake_server, closed_port_url, capsys):
    fake_server.route("GET", "/health", (200, "OK", {}))
    code = main(
        [
            "--mlflow-url",
            fake_server.url,
            "--object-store-url",
            closed_port_url,
            "--dvc-remote-url",
            fake_server.url + "/",
            "--budget",
            "0.5",
            "--timeout",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL object-store" in out and "ok   mlflow" in out


def test_object_store_5xx_is_down(fake_server):
    fake_server.route("GET", "/", (500, {}, {}))
    (outcome,) = run_all([endpoint_check("object-store", fake_server.url)], 0.5, 1)
    assert not outcome.ok


def test_retries_until_the_service_comes_up(fake_server):
    answers = iter([(503, {}, {}), (200, "OK", {})])
    fake_server.route("GET", "/health", lambda _request: next(answers))
    check = mlflow_check(fake_server.url)
    outcome = run_check(check, deadline=time.monotonic() + 10, timeout=1, pause=0.05)
    assert outcome.ok and len(fake_server.requests) == 2


def test_basic_auth_from_the_environment(fake_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ci")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    fake_server.route("GET", "/health", (200, "OK", {}))
    (outcome,) = run_all([mlflow_check(fake_server.url)], 0.5, 1)
    assert outcome.ok
    assert fake_server.requests[0].headers["authorization"] == "Basic Y2k6czNjcmV0"


def test_missing_or_bad_urls_exit_1_with_one_line(monkeypatch, capsys):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "DVC_REMOTE_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--mlflow-url", "http://127.0.0.1:1"]) == 1
    assert "object-store, dvc-remote" in capsys.readouterr().err
    assert (
        main(
            [
                "--mlflow-url",
                "sqlite:///mlflow.db",
                "--object-store-url",
                "http://x",
                "--dvc-remote-url",
                "http://x",
            ]
        )
        == 1
    )
    assert "mlflow: expected an http:// or https:// URL" in capsys.readouterr().err
