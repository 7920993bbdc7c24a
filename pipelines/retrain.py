"""``make retrain``: new data → validate → retrain → evaluate → compare → (canary, monitor).

The series' retraining loop on embedded defaults: simulate the next N days of live traffic
(optionally with a drift scenario), version them with DVC (``data/live.dvc``), run the DVC
pipeline (whose ``train`` stage is the Kubeflow pipeline under kfp.local), push the data, and
print what happened at each of the six gates plus whether ``@champion`` moved.

With ``--days 0`` it retrains on the data already there: DVC finds nothing changed and no
duplicate candidate is registered — running it twice without new data is a no-op.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from fraudops.config import DriftScenario, load_params, mlflow_tracking_uri
from fraudops.paths import Paths, paths
from pipelines.run_local import highlights
from training.register import CANDIDATE, CHAMPION, current_version


class RetrainFailed(RuntimeError):
    """A gate stopped the retraining; the message names it."""


@dataclass(frozen=True)
class RegistryState:
    """Where the aliases point (``None``: not set)."""

    champion: str | None
    candidate: str | None


def registry_state(tracking_uri: str) -> RegistryState:
    """The current ``@champion`` / ``@candidate`` versions."""
    model = load_params().register_.model_name
    return RegistryState(
        current_version(CHAMPION, model, tracking_uri),
        current_version(CANDIDATE, model, tracking_uri),
    )


def _run(command: list[str], root: Path, extra_env: dict[str, str] | None = None) -> str:
    """Run a step, streaming its output; raise naming the step when it fails."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **(extra_env or {}),
    }
    process = subprocess.run(
        command, check=False, cwd=root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    print(process.stdout, end="")
    if process.returncode != 0:
        raise RetrainFailed(f"`{' '.join(command)}` exited {process.returncode}")
    return process.stdout


def retrain(
    layout: Paths, days: int, drift: str | None, promote_via: str | None = None
) -> str:
    """The loop; returns the closing summary (gates and the champion move)."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    uri = mlflow_tracking_uri()
    before = registry_state(uri)
    layout.live_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    if days > 0:
        command = [sys.executable, "-m", "data.acquire", "--no-progress", "next-days"]
        command += ["--days", str(days)]
        if drift:
            command += ["--drift", drift]
        _run(command, layout.root)
        scenario = drift or load_params().simulate.drift
        lines.append(f"new data: {days} days of live traffic (drift: {scenario})")
    else:
        lines.append("new data: none generated (--days 0): retrain on what data/live holds")
    # Version whatever data/live holds now (a no-op when nothing changed).
    _run([dvc, "add", "-q", str(layout.live_dir.relative_to(layout.root))], layout.root)
    extra = {"FRAUD_PROMOTE_VIA": promote_via} if promote_via else None
    try:
        output = _run([dvc, "repro"], layout.root, extra)
    except RetrainFailed as exc:
        raise RetrainFailed(f"{exc}; @champion untouched (still v{before.champion})") from None
    _run([dvc, "push", "-q"], layout.root)
    after = registry_state(uri)
    if "Data and pipelines are up to date" in output:
        lines.append("pipeline: nothing changed, nothing retrained (no duplicate candidate)")
    else:
        lines += highlights(output)
    moved = after.champion != before.champion
    lines.append(
        f"@champion: v{before.champion} -> v{after.champion} (moved)" if moved
        else f"@champion: unchanged at v{after.champion}; @candidate = v{after.candidate}"
    )
    lines.append(
        "next gates: deploy via canary (`make canary`: 80/20, promote or roll back) → "
        "monitor (`make drift`, `make performance`)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.retrain [--days N] [--drift SCENARIO]``."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.retrain", description=__doc__)
    parser.add_argument("--days", type=int, default=7, help="days of new live traffic (0: none)")
    parser.add_argument(
        "--drift", choices=get_args(DriftScenario), help="default: params.yaml simulate.drift"
    )
    parser.add_argument(
        "--promote-via",
        choices=("pipeline", "canary"),
        help="who moves @champion when the candidate wins (default: params.yaml register)",
    )
    args = parser.parse_args(argv)
    if args.days < 0:
        parser.error(f"--days: must be >= 0, got {args.days}")
    try:
        summary = retrain(paths(), args.days, args.drift, args.promote_via)
    except RetrainFailed as exc:
        print(f"retrain stopped: {exc}", file=sys.stderr)
        return 1
    print("\n== retraining summary ==\n" + summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
