"""Retrain trigger: the repository_dispatch request as GitHub expects it, dry run, cool-down,
API failures, and local mode -- against a loopback server, never the real API."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fraudops.config import TriggerParams
from monitoring import trigger
from monitoring.outputs import EXIT_ERROR, EXIT_OK, build_summary
from monitoring.trigger import (
    MAX_PAYLOAD_BYTES,
    TriggerError,
    dispatch_payload,
    github_dispatch_request,
    trigger_retrain,
)
from tests.monitoring.http_stub import Recorded, Reply, http_stub

TOKEN = "ghp_test-secret-token"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def drift_summary(version: str = "3", detected: bool = True) -> dict:
    return build_summary(
        job="drift",
        detected=detected,
        model={"name": "fraud-detector", "alias": "champion", "version": version, "run_id": "r1"},
        window={"start": "2026-05-25T00:00:00", "end": "2026-06-01T00:00:00", "rows": 7000},
        signals=["data_drift", "psi"] if detected else [],
        drifted_features=["tx_amount"] if detected else [],
        statistics={"psi": {"features": {"tx_amount": {"psi": 0.31, "level": "alert"}}}},
    )


def github_env(api_url: str) -> dict[str, str]:
    return {
        "GITHUB_REPOSITORY": "acme/fraud-mlops",
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": api_url,
    }


def accept(request: Recorded) -> Reply:
    return Reply(status=204)


def test_dispatch_request_reaches_the_api_as_github_documents_it(tmp_path: Path) -> None:
    summary = drift_summary()
    with http_stub(accept) as api:
        outcome = trigger_retrain(
            summary, TriggerParams(), mode="github", env=github_env(api.url), root=tmp_path, now=NOW
        )
    assert outcome.action == "dispatched"
    (request,) = api.requests
    assert request.method == "POST"
    assert request.path == "/repos/acme/fraud-mlops/dispatches"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    body = request.json()
    assert body == {"event_type": "drift-detected", "client_payload": summary}
    assert len(body["client_payload"]) <= 10


def test_auto_mode_uses_github_only_with_repository_and_token(tmp_path: Path) -> None:
    assert (
        trigger.resolve_mode("auto", {"GITHUB_REPOSITORY": "a/b", "GITHUB_TOKEN": "t"}) == "github"
    )
    assert trigger.resolve_mode("auto", {"GITHUB_REPOSITORY": "a/b"}) == "local"
    assert (
        trigger.resolve_mode("local", {"GITHUB_REPOSITORY": "a/b", "GITHUB_TOKEN": "t"}) == "local"
    )


def test_dry_run_prints_the_request_with_the_token_redacted(tmp_path: Path) -> None:
    printed: list[str] = []
    with http_stub(accept) as api:
        outcome = trigger_retrain(
            drift_summary(),
            TriggerParams(),
            mode="github",
            dry_run=True,
            env=github_env(api.url),
            root=tmp_path,
            now=NOW,
            echo=printed.append,
        )
    assert outcome.action == "dry-run"
    assert api.requests == []  # nothing sent
    shown = json.loads(printed[0])
    assert shown["method"] == "POST" and shown["url"].endswith("/repos/acme/fraud-mlops/dispatches")
    assert shown["headers"]["Authorization"] == "Bearer ***"
    assert TOKEN not in printed[0]
    assert shown["body"]["event_type"] == "drift-detected"
    # A dry run does not start the cool-down.
    assert not (tmp_path / TriggerParams().state_file).exists()


def test_cooldown_blocks_a_second_dispatch_for_the_same_version(tmp_path: Path) -> None:
    params = TriggerParams(cooldown_hours=24)
    with http_stub(accept) as api:
        env = github_env(api.url)
        first = trigger_retrain(
            drift_summary("3"), params, mode="github", env=env, root=tmp_path, now=NOW
        )
        again = trigger_retrain(
            drift_summary("3"),
            params,
            mode="github",
            env=env,
            root=tmp_path,
            now=NOW + timedelta(hours=5),
        )
        other_version = trigger_retrain(
            drift_summary("4"),
            params,
            mode="github",
            env=env,
            root=tmp_path,
            now=NOW + timedelta(hours=5),
        )
        after_window = trigger_retrain(
            drift_summary("3"),
            params,
            mode="github",
            env=env,
            root=tmp_path,
            now=NOW + timedelta(hours=25),
        )
    assert first.action == "dispatched"
    assert again.action == "skipped" and "cool-down" in again.detail and "19.0 h" in again.detail
    assert other_version.action == "dispatched"
    assert after_window.action == "dispatched"
    assert len(api.requests) == 3
    state = json.loads((tmp_path / params.state_file).read_text())
    assert set(state["fraud-detector"]) == {"3", "4"}


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "Bad credentials"), (404, "Not Found"), (422, "Invalid request")],
)
def test_an_api_error_is_reported_clearly_and_starts_no_cooldown(
    tmp_path: Path, status: int, message: str
) -> None:
    reply = Reply(status=status, body={"message": message})
    with http_stub(lambda request: reply) as api, pytest.raises(TriggerError) as error:
        trigger_retrain(
            drift_summary(),
            TriggerParams(),
            mode="github",
            env=github_env(api.url),
            root=tmp_path,
            now=NOW,
        )
    text = str(error.value)
    assert (
        f"HTTP {status}" in text
        and message in text
        and "/repos/acme/fraud-mlops/dispatches" in text
    )
    assert TOKEN not in text
    assert not (tmp_path / TriggerParams().state_file).exists()


def test_the_cli_exits_non_zero_with_one_line_on_an_api_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary_path = tmp_path / "drift_summary.json"
    summary_path.write_text(json.dumps(drift_summary()))
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("FRAUD_PARAMS", str(Path(__file__).resolve().parents[2] / "params.yaml"))
    with http_stub(
        lambda request: Reply(status=403, body={"message": "Resource not accessible"})
    ) as api:
        for key, value in github_env(api.url).items():
            monkeypatch.setenv(key, value)
        code = trigger.main(["--summary", str(summary_path), "--mode", "github"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_ERROR
    assert err.splitlines() == [err] and "HTTP 403" in err and "Resource not accessible" in err


def test_unreachable_api_and_missing_configuration_are_errors(tmp_path: Path) -> None:
    env = {**github_env("http://127.0.0.1:9"), "GITHUB_REPOSITORY": "acme/fraud-mlops"}
    with pytest.raises(TriggerError, match="unreachable"):
        trigger_retrain(
            drift_summary(), TriggerParams(), mode="github", env=env, root=tmp_path, now=NOW
        )
    with pytest.raises(TriggerError, match="GITHUB_TOKEN: not set"):
        trigger_retrain(
            drift_summary(),
            TriggerParams(),
            mode="github",
            env={"GITHUB_REPOSITORY": "acme/x"},
            root=tmp_path,
            now=NOW,
        )
    with pytest.raises(TriggerError, match="GITHUB_REPOSITORY: must be owner/repo"):
        github_dispatch_request(drift_summary(), "no-slash", TOKEN, TriggerParams())


def test_local_mode_runs_the_retrain_command_once_per_cooldown(tmp_path: Path) -> None:
    calls: list[tuple[list[str], Path]] = []

    def fake_run(command, cwd, check):
        calls.append((command, cwd))
        return subprocess.CompletedProcess(command, 0)

    params = TriggerParams(retrain_command="make retrain SOURCE=live")
    first = trigger_retrain(
        drift_summary(), params, mode="local", env={}, root=tmp_path, now=NOW, run_command=fake_run
    )
    second = trigger_retrain(
        drift_summary(), params, mode="local", env={}, root=tmp_path, now=NOW, run_command=fake_run
    )
    assert first.action == "retrained" and second.action == "skipped"
    assert calls == [(["make", "retrain", "SOURCE=live"], tmp_path)]


def test_a_failing_local_retrain_is_an_error(tmp_path: Path) -> None:
    params = TriggerParams(retrain_command="false")
    with pytest.raises(TriggerError, match="exited 1"):
        trigger_retrain(drift_summary(), params, mode="local", env={}, root=tmp_path, now=NOW)


def test_no_drift_means_no_trigger(tmp_path: Path) -> None:
    with http_stub(accept) as api:
        outcome = trigger_retrain(
            drift_summary(detected=False),
            TriggerParams(),
            mode="github",
            env=github_env(api.url),
            root=tmp_path,
            now=NOW,
        )
    assert outcome.action == "skipped" and api.requests == []


def test_payload_limits_are_enforced() -> None:
    huge = drift_summary()
    huge["statistics"] = {"blob": "x" * MAX_PAYLOAD_BYTES}
    trimmed = dispatch_payload(huge)
    assert len(json.dumps(trimmed).encode()) < MAX_PAYLOAD_BYTES
    assert trimmed["drift_detected"] is True and "omitted" in trimmed["statistics"]
    too_many = {f"k{i}": i for i in range(11)}
    with pytest.raises(TriggerError, match="10 top-level keys"):
        dispatch_payload(too_many)


def test_the_cli_dry_run_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary_path = tmp_path / "drift_summary.json"
    summary_path.write_text(json.dumps(drift_summary()))
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("FRAUD_PARAMS", str(Path(__file__).resolve().parents[2] / "params.yaml"))
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/fraud-mlops")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert trigger.main(["--summary", str(summary_path), "--dry-run"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Bearer ***" in out and TOKEN not in out and "dry-run" in out
