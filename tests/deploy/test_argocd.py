"""Job 6's sync-and-health wait against a fake Argo CD API on loopback."""

from __future__ import annotations

from deploy.argocd import AppState, main, wait_synced_healthy

SHA = "0123456789abcdef0123456789abcdef01234567"
APP_PATH = "/api/v1/applications/fraud-detector?refresh=normal"


def app(sync: str, revision: str, health: str, message: str = "") -> dict:
    return {
        "status": {
            "sync": {"status": sync, "revision": revision},
            "health": {"status": health, "message": message},
        }
    }


def test_waits_through_sync_and_progressing_until_healthy(fake_server, monkeypatch, capsys):
    states = iter(
        [
            app("OutOfSync", "f" * 40, "Healthy"),
            app("Synced", SHA, "Progressing"),
            app("Synced", SHA, "Healthy"),
        ]
    )
    fake_server.route("GET", APP_PATH, lambda _request: (200, next(states), {}))
    ok, detail = wait_synced_healthy(
        fake_server.url, "fraud-detector", SHA, "tok", wait_seconds=10, pause=0.01
    )
    assert ok, detail
    assert len(fake_server.requests) == 3
    assert fake_server.requests[0].headers["authorization"] == "Bearer tok"


def test_degraded_release_fails_at_once(fake_server):
    fake_server.route(
        "GET", APP_PATH, (200, app("Synced", SHA, "Degraded", "predictor CrashLoopBackOff"), {})
    )
    ok, detail = wait_synced_healthy(
        fake_server.url, "fraud-detector", SHA, None, wait_seconds=10, pause=0.01
    )
    assert not ok and "CrashLoopBackOff" in detail
    assert len(fake_server.requests) == 1


def test_an_old_revision_never_counts(fake_server):
    fake_server.route("GET", APP_PATH, (200, app("Synced", "a" * 40, "Healthy"), {}))
    ok, detail = wait_synced_healthy(
        fake_server.url, "fraud-detector", SHA, None, wait_seconds=0.3, pause=0.05
    )
    assert not ok and detail.startswith("timed out")


def test_api_errors_are_reported_not_raised(fake_server, monkeypatch, capsys):
    fake_server.route("GET", APP_PATH, (401, {"error": "invalid session"}, {}))
    monkeypatch.setenv("ARGOCD_AUTH_TOKEN", "expired")
    code = main(["--server", fake_server.url, "--revision", SHA, "--wait", "0.2"])
    assert code == 1
    assert "HTTP 401" in capsys.readouterr().out


def test_abbreviated_revision_matches():
    assert AppState("Synced", SHA, "Healthy").at(SHA[:12])
    assert not AppState("Synced", SHA, "Healthy").at("")


def test_server_is_required(monkeypatch, capsys):
    monkeypatch.delenv("ARGOCD_SERVER", raising=False)
    assert main(["--revision", SHA]) == 1
    assert "--server" in capsys.readouterr().err
