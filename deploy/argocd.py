"""Job 6 of the ML pipeline, first half: wait until Argo CD has synced a commit and it is healthy.

::

    python -m deploy.argocd --server $ARGOCD_SERVER --app fraud-detector --revision <sha>

Asks Argo CD's REST API (``GET /api/v1/applications/<app>?refresh=normal``, bearer token
from ARGOCD_AUTH_TOKEN) until the application reports ``Synced`` at ``revision`` and
``Healthy``. A ``Degraded`` or ``Missing`` health at that revision fails at once: the
workflow then rolls back.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from deploy.http import Unreachable, request, require_http_url

FAILED_HEALTH = frozenset({"Degraded", "Missing"})


@dataclass(frozen=True)
class AppState:
    """What Argo CD says about an application."""

    sync_status: str
    revision: str
    health: str
    message: str = ""

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> AppState:
        """Read the sync and health status out of an Application object."""
        status = body.get("status") or {}
        sync, health = status.get("sync") or {}, status.get("health") or {}
        return cls(
            sync_status=sync.get("status", "Unknown"),
            revision=sync.get("revision", ""),
            health=health.get("status", "Unknown"),
            message=health.get("message", ""),
        )

    def at(self, revision: str) -> bool:
        """Whether the synced revision is ``revision`` (a full or abbreviated SHA)."""
        return bool(revision) and self.revision.startswith(revision)


def fetch_state(server: str, app: str, token: str | None, timeout: float = 10.0) -> AppState:
    """One look at the application (asks Argo CD to refresh it from git first)."""
    url = f"{server}/api/v1/applications/{urllib.parse.quote(app)}?refresh=normal"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = request("GET", url, headers=headers, timeout=timeout)
    if answer.status != 200:
        raise Unreachable(f"GET {url}: HTTP {answer.status}: {answer.text()}")
    return AppState.from_api(answer.json())


def wait_synced_healthy(
    server: str, app: str, revision: str, token: str | None, wait_seconds: float, pause: float = 5.0
) -> tuple[bool, str]:
    """Poll until synced at ``revision`` and healthy; (False, why) on failure or timeout."""
    deadline = time.monotonic() + wait_seconds
    last = "no answer from Argo CD"
    while True:
        try:
            state = fetch_state(server, app, token)
            last = (
                f"sync {state.sync_status} at {state.revision[:12] or '?'}, health {state.health}"
            )
            if state.at(revision) and state.sync_status == "Synced":
                if state.health == "Healthy":
                    return True, last
                if state.health in FAILED_HEALTH:
                    return False, f"{last}: {state.message}".rstrip(": ")
        except (Unreachable, ValueError) as error:
            last = str(error)
        if time.monotonic() + pause >= deadline:
            return False, f"timed out after {wait_seconds:.0f} s: {last}"
        time.sleep(pause)


def main(argv: list[str] | None = None) -> int:
    """CLI: exit 0 once synced and healthy at the revision, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.argocd", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--server", default=os.environ.get("ARGOCD_SERVER"), help="Argo CD base URL"
    )
    parser.add_argument("--app", default="fraud-detector", help="Application name")
    parser.add_argument("--revision", required=True, help="git commit the sync must reach")
    parser.add_argument("--wait", type=float, default=900.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    if not args.server:
        print("error: --server (or ARGOCD_SERVER) is required", file=sys.stderr)
        return 1
    try:
        server = require_http_url(args.server, "--server")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    ok, detail = wait_synced_healthy(
        server, args.app, args.revision, os.environ.get("ARGOCD_AUTH_TOKEN"), args.wait
    )
    print(f"{'ok  ' if ok else 'FAIL'} {args.app}: {detail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
