"""The retrain trigger: what a drift (or performance-drop) signal sets in motion.

* local mode runs the retrain command (``monitor.trigger.retrain_command``, ``make retrain``);
* GitHub mode sends a ``repository_dispatch`` event (type ``drift-detected``, the job's JSON
  summary as ``client_payload``) to ``GITHUB_REPOSITORY`` with ``GITHUB_TOKEN``; the API base
  is ``GITHUB_API_URL`` (GitHub Actions sets it; tests point it at a loopback server);
* ``--dry-run`` prints the request (token redacted) or the command instead;
* a cool-down keeps one trigger per model version per ``cooldown_hours`` (state in a small
  JSON file), so a drift that persists does not start a retrain every hour.

``python -m monitoring.trigger --summary reports/drift/drift_summary.json [--mode local|github]
[--dry-run]`` exits 0 when it triggered or had nothing to do, 2 when it failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from data.files import write_json_atomic
from fraudops.config import TriggerParams, load_params, project_root
from monitoring.outputs import EXIT_OK, MAX_TOP_LEVEL_KEYS, fail

DEFAULT_GITHUB_API = "https://api.github.com"
#: GitHub's limit on a client_payload's serialised size.
MAX_PAYLOAD_BYTES = 64 * 1024
Mode = Literal["auto", "local", "github"]


class TriggerError(RuntimeError):
    """The trigger could not do its job (bad configuration, API error, retrain failed)."""


@dataclass(frozen=True)
class DispatchRequest:
    """One ``POST /repos/{owner}/{repo}/dispatches`` call, ready to send or print."""

    url: str
    headers: dict[str, str]
    body: dict
    method: str = "POST"

    def redacted(self) -> dict:
        """The request as a dict with the token hidden (for dry runs and logs)."""
        headers = dict(self.headers)
        if "Authorization" in headers:
            headers["Authorization"] = "Bearer ***"
        return {"method": self.method, "url": self.url, "headers": headers, "body": self.body}


@dataclass(frozen=True)
class TriggerOutcome:
    """What the trigger did: ``dispatched``, ``retrained``, ``dry-run`` or ``skipped``."""

    action: str
    detail: str


def dispatch_payload(summary: dict) -> dict:
    """The summary as a client_payload: at most ten top-level keys and under 64 KB.

    An oversized summary keeps everything but the detailed statistics (the full document
    stays in MLflow and on disk, named in ``artifacts``).
    """
    if len(summary) > MAX_TOP_LEVEL_KEYS:
        raise TriggerError(
            f"client_payload: GitHub allows {MAX_TOP_LEVEL_KEYS} top-level keys, the summary "
            f"has {len(summary)} ({', '.join(summary)})"
        )
    if len(json.dumps(summary).encode()) < MAX_PAYLOAD_BYTES:
        return summary
    return {**summary, "statistics": {"omitted": "over 64 KB; see artifacts.summary"}}


def github_dispatch_request(
    summary: dict,
    repository: str,
    token: str,
    params: TriggerParams,
    api_url: str | None = None,
) -> DispatchRequest:
    """The repository_dispatch request for ``summary`` (``repository`` is ``owner/repo``)."""
    parts = repository.strip().split("/")
    if len(parts) != 2 or not all(parts):
        raise TriggerError(f"GITHUB_REPOSITORY: must be owner/repo, got {repository!r}")
    owner, repo = parts
    base = (api_url or DEFAULT_GITHUB_API).rstrip("/")
    return DispatchRequest(
        url=f"{base}/repos/{owner}/{repo}/dispatches",
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": params.github_api_version,
            "User-Agent": "fraud-mlops-monitoring",
        },
        body={"event_type": params.event_type, "client_payload": dispatch_payload(summary)},
    )


def send_dispatch(request: DispatchRequest, timeout: float) -> None:
    """POST the dispatch; GitHub answers 204 No Content. Anything else is a ``TriggerError``."""
    import httpx

    try:
        response = httpx.post(
            request.url, headers=request.headers, json=request.body, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise TriggerError(f"GitHub API {request.url}: unreachable ({exc})") from None
    if response.status_code != 204:
        try:
            message = response.json().get("message", "")
        except ValueError:
            message = response.text.strip()[:200]
        raise TriggerError(
            f"GitHub API {request.url}: HTTP {response.status_code}"
            + (f" ({message})" if message else "")
            + "; repository_dispatch not sent"
        )


# --------------------------------------------------------------------------- cool-down


def _read_state(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise TriggerError(f"{path}: cool-down state is not valid JSON ({exc.msg})") from None


def last_trigger(state_path: Path, model_name: str, model_version: str) -> datetime | None:
    """When this model version last triggered a retrain (None if never)."""
    entry = _read_state(Path(state_path)).get(model_name, {}).get(str(model_version))
    return datetime.fromisoformat(entry["triggered_at"]) if entry else None


def cooldown_remaining(
    state_path: Path, model_name: str, model_version: str, hours: float, now: datetime
) -> timedelta | None:
    """Time left in this version's cool-down, or None when a trigger is allowed."""
    last = last_trigger(state_path, model_name, model_version)
    if last is None:
        return None
    remaining = last + timedelta(hours=hours) - now
    return remaining if remaining > timedelta(0) else None


def record_trigger(
    state_path: Path, model_name: str, model_version: str, now: datetime, mode: str, signals: list
) -> None:
    """Remember that this version triggered now (the cool-down starts)."""
    state = _read_state(Path(state_path))
    state.setdefault(model_name, {})[str(model_version)] = {
        "triggered_at": now.isoformat(),
        "mode": mode,
        "signals": list(signals),
    }
    write_json_atomic(state, Path(state_path))


# --------------------------------------------------------------------------- the trigger


def resolve_mode(mode: Mode, env: Mapping[str, str]) -> str:
    """``auto`` means GitHub when GITHUB_REPOSITORY and GITHUB_TOKEN are set, else local."""
    if mode != "auto":
        return mode
    return "github" if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_TOKEN") else "local"


def trigger_retrain(
    summary: dict,
    params: TriggerParams,
    *,
    mode: Mode = "auto",
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    root: Path | None = None,
    now: datetime | None = None,
    run_command: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    echo: Callable[[str], None] = print,
) -> TriggerOutcome:
    """Act on a monitoring summary: retrain locally or dispatch to GitHub, within cool-down."""
    env = os.environ if env is None else env
    root = Path(root) if root is not None else project_root()
    now = now or datetime.now(UTC)
    if not summary.get("drift_detected"):
        return TriggerOutcome("skipped", "no drift in the summary: nothing to trigger")
    model = summary.get("model", {})
    name, version = str(model.get("name")), str(model.get("version"))
    state_path = root / params.state_file
    remaining = cooldown_remaining(state_path, name, version, params.cooldown_hours, now)
    if remaining is not None:
        last = last_trigger(state_path, name, version)
        return TriggerOutcome(
            "skipped",
            f"cool-down: {name} v{version} already triggered at {last:%Y-%m-%d %H:%M} UTC; "
            f"next allowed in {remaining.total_seconds() / 3600:.1f} h "
            f"(monitor.trigger.cooldown_hours={params.cooldown_hours:g})",
        )
    chosen = resolve_mode(mode, env)
    if chosen == "github":
        repository = env.get("GITHUB_REPOSITORY")
        token = env.get("GITHUB_TOKEN")
        if not repository:
            raise TriggerError("GITHUB_REPOSITORY: not set (owner/repo to dispatch to)")
        if not token and not dry_run:
            raise TriggerError("GITHUB_TOKEN: not set (a token allowed to create dispatch events)")
        request = github_dispatch_request(
            summary, repository, token or "", params, env.get("GITHUB_API_URL")
        )
        if dry_run:
            echo(json.dumps(request.redacted(), indent=2))
            return TriggerOutcome("dry-run", f"would POST {request.url}")
        send_dispatch(request, params.timeout_seconds)
        record_trigger(state_path, name, version, now, chosen, summary.get("signals", []))
        return TriggerOutcome(
            "dispatched", f"repository_dispatch {params.event_type} sent to {repository}"
        )
    command = shlex.split(params.retrain_command)
    if not command:
        raise TriggerError("monitor.trigger.retrain_command: empty")
    if dry_run:
        echo(f"would run (in {root}): {params.retrain_command}")
        return TriggerOutcome("dry-run", f"would run {params.retrain_command}")
    try:
        result = run_command(command, cwd=root, check=False)
    except OSError as exc:
        raise TriggerError(
            f"retrain command {params.retrain_command!r}: cannot start ({exc})"
        ) from None
    if result.returncode != 0:
        raise TriggerError(f"retrain command {params.retrain_command!r} exited {result.returncode}")
    record_trigger(state_path, name, version, now, chosen, summary.get("signals", []))
    return TriggerOutcome("retrained", f"ran {params.retrain_command}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.trigger",
        description="Retrain (local) or send a drift-detected repository_dispatch (GitHub).",
    )
    parser.add_argument(
        "--summary", type=Path, required=True, help="a drift/performance JSON summary"
    )
    parser.add_argument("--mode", choices=("auto", "local", "github"), default="auto")
    parser.add_argument("--dry-run", action="store_true", help="print the request/command only")
    return parser


def trigger_if_found(summary: dict, args: argparse.Namespace, params) -> None:
    """With ``--trigger`` and a finding, start retraining (local command or GitHub dispatch)."""
    if args.trigger and summary["drift_detected"]:
        outcome = trigger_retrain(
            summary, params.monitor.trigger, mode=args.trigger_mode, dry_run=args.dry_run
        )
        print(f"retrain trigger: {outcome.action}: {outcome.detail}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0 triggered or nothing to do, 2 on any failure."""
    args = _parser().parse_args(argv)
    try:
        if not args.summary.exists():
            raise TriggerError(f"{args.summary}: summary file not found")
        summary = json.loads(args.summary.read_text())
        outcome = trigger_retrain(
            summary, load_params().monitor.trigger, mode=args.mode, dry_run=args.dry_run
        )
    except Exception as exc:  # noqa: BLE001 -- the CLI contract: one line and exit 2, no traceback
        return fail("retrain trigger", exc)
    print(f"retrain trigger: {outcome.action}: {outcome.detail}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
