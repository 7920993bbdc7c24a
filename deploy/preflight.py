"""Job 0 of the ML pipeline: are MLflow, the object store and the DVC remote reachable?

Fails fast (the workflow gives the job 5 minutes) with one line per service, so a broken
credential or a down tracking server stops the run before any data is pulled::

    python -m deploy.preflight --mlflow-url $MLFLOW_TRACKING_URI \\
        --object-store-url $MLFLOW_S3_ENDPOINT_URL --dvc-remote-url $DVC_REMOTE_ENDPOINT_URL

Each URL falls back to its environment variable. MLflow must answer ``GET /health`` with
200; the object store and the DVC remote (S3 / MinIO endpoints) count as reachable when
they answer at all below 500 (an anonymous S3 request gets 403: the endpoint is up).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from dataclasses import dataclass

from deploy.http import Unreachable, request, require_http_url


@dataclass(frozen=True)
class Check:
    """One service to reach: its name, URL and whether only 200 counts as up."""

    name: str
    url: str
    require_ok: bool
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Outcome:
    """The result of one check: up or not, and a one-line explanation."""

    check: Check
    ok: bool
    detail: str


def mlflow_check(url: str) -> Check:
    """MLflow's health endpoint (basic auth from MLFLOW_TRACKING_USERNAME/PASSWORD if set)."""
    headers: tuple[tuple[str, str], ...] = ()
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers = (("Authorization", f"Basic {token}"),)
    return Check("mlflow", require_http_url(url, "mlflow") + "/health", True, headers)


def endpoint_check(name: str, url: str) -> Check:
    """An S3-style endpoint: any answer below 500 means it is reachable."""
    return Check(name, require_http_url(url, name), False)


def run_check(check: Check, deadline: float, timeout: float, pause: float = 2.0) -> Outcome:
    """Try ``check`` until it passes or ``deadline`` (monotonic seconds) passes."""
    detail = "not tried"
    while True:
        try:
            answer = request("GET", check.url, headers=dict(check.headers), timeout=timeout)
            ok = answer.status == 200 if check.require_ok else answer.status < 500
            detail = f"HTTP {answer.status} in {answer.seconds:.2f} s"
            if ok:
                return Outcome(check, True, detail)
        except Unreachable as error:
            detail = str(error)
        if time.monotonic() + pause >= deadline:
            return Outcome(check, False, detail)
        time.sleep(pause)


def run_all(checks: list[Check], budget_seconds: float, timeout: float) -> list[Outcome]:
    """Run every check within one shared time budget."""
    deadline = time.monotonic() + budget_seconds
    return [run_check(check, deadline, timeout) for check in checks]


def main(argv: list[str] | None = None) -> int:
    """CLI: exit 0 when every service answers, 1 (one line per failure) otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.preflight", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--mlflow-url", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--object-store-url", default=os.environ.get("MLFLOW_S3_ENDPOINT_URL"))
    parser.add_argument("--dvc-remote-url", default=os.environ.get("DVC_REMOTE_ENDPOINT_URL"))
    parser.add_argument("--budget", type=float, default=120.0, help="seconds for all retries")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    args = parser.parse_args(argv)
    wanted = {
        "mlflow": args.mlflow_url,
        "object-store": args.object_store_url,
        "dvc-remote": args.dvc_remote_url,
    }
    missing = [name for name, url in wanted.items() if not url]
    if missing:
        print(
            f"error: no URL for {', '.join(missing)} (pass --<name>-url or set its env var)",
            file=sys.stderr,
        )
        return 1
    try:
        checks = [
            mlflow_check(args.mlflow_url),
            endpoint_check("object-store", args.object_store_url),
            endpoint_check("dvc-remote", args.dvc_remote_url),
        ]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    outcomes = run_all(checks, args.budget, args.timeout)
    for outcome in outcomes:
        status = "ok  " if outcome.ok else "FAIL"
        print(f"{status} {outcome.check.name}: {outcome.check.url} ({outcome.detail})")
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
