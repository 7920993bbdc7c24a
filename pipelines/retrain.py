"""``make retrain``: new data → validate → retrain → evaluate → compare → (canary, monitor).

The series' retraining loop on embedded defaults: simulate the next N days of live traffic
(optionally with a drift scenario), version them with DVC (``data/live.dvc``), run the DVC
pipeline (whose ``train`` stage is the Kubeflow pipeline under kfp.local), push the data, and
print what happened at each of the six gates plus whether ``@champion`` moved. The steps'
whole output goes to ``run/logs/retrain.log`` (``--verbose`` or ``FRAUD_VERBOSE=1`` prints
it too); the summary is also written to ``run/retrain-summary.json`` for other processes.

With ``--days 0`` it retrains on the data already there: DVC finds nothing changed and no
duplicate candidate is registered — running it twice without new data is a no-op.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

from data.files import write_json_atomic
from fraudops.config import DriftScenario, load_params, mlflow_tracking_uri
from fraudops.paths import Paths, paths
from pipelines.console import VERBOSE_ENV, choose_echo, run_logged, verbose_requested
from pipelines.run_local import pipeline_run_since
from training.register import CANDIDATE, CHAMPION, current_version

#: ``schema`` of ``run/retrain-summary.json``; bump it when a field changes meaning.
SUMMARY_SCHEMA = "fraud-mlops.retrain/1"


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


def retrain_log(layout: Paths) -> Path:
    """Where the steps' whole output goes (``run/logs/retrain.log``)."""
    return layout.run_dir / "logs" / "retrain.log"


def retrain_summary_path(layout: Paths) -> Path:
    """Where the summary goes (``run/retrain-summary.json``)."""
    return layout.run_dir / "retrain-summary.json"


@dataclass(frozen=True)
class Runner:
    """Runs the steps from the project root, logging all their output, echoing some."""

    root: Path
    log: Path
    verbose: bool

    def __call__(self, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        """Run a step; raise naming the step (and its last output line) when it fails."""
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            # The pipeline under `dvc repro` is as verbose as this run.
            VERBOSE_ENV: "1" if self.verbose else "0",
            **(extra_env or {}),
        }
        echo = choose_echo(self.verbose)
        returncode, output = run_logged(command, self.root, self.log, echo, env)
        if returncode != 0:
            tail = next((line for line in reversed(output.splitlines()) if line.strip()), "")
            raise RetrainFailed(f"`{' '.join(command)}` exited {returncode}: {tail.strip()}")


@dataclass(frozen=True)
class RetrainSummary:
    """What one retraining did (``run/retrain-summary.json`` holds it with ``schema``)."""

    new_data: str
    retrained: bool
    champion_before: str | None
    champion_after: str | None
    candidate_after: str | None
    promotion_deferred_to_canary: bool
    gates: list[dict]
    pipeline_summary: list[str]
    lines: list[str]
    log: str
    #: kfp.local's whole output when the pipeline ran (``run/logs/pipeline.log``)
    pipeline_log: str | None = None

    @property
    def champion_moved(self) -> bool:
        """Did ``@champion`` point somewhere else after the run?"""
        return self.champion_after != self.champion_before

    def as_dict(self) -> dict:
        """The JSON document, with its schema tag and when it was written."""
        return {
            "schema": SUMMARY_SCHEMA,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **asdict(self),
            "champion_moved": self.champion_moved,
        }


def retrain(
    layout: Paths,
    days: int,
    drift: str | None,
    promote_via: str | None = None,
    verbose: bool = False,
) -> RetrainSummary:
    """The loop; returns its summary (gates and the champion move)."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    uri = mlflow_tracking_uri()
    before = registry_state(uri)
    layout.live_dir.mkdir(parents=True, exist_ok=True)
    log = retrain_log(layout)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")  # this run's output only
    run = Runner(layout.root, log, verbose)
    began = datetime.now(UTC).isoformat(timespec="seconds")
    if days > 0:
        command = [sys.executable, "-m", "data.acquire", "--no-progress", "next-days"]
        command += ["--days", str(days)]
        if drift:
            command += ["--drift", drift]
        run(command)
        scenario = drift or load_params().simulate.drift
        new_data = f"new data: {days} days of live traffic (drift: {scenario})"
    else:
        new_data = "new data: none generated (--days 0): retrain on what data/live holds"
    # Version whatever data/live holds now (a no-op when nothing changed).
    run([dvc, "add", "-q", str(layout.live_dir.relative_to(layout.root))])
    extra = {"FRAUD_PROMOTE_VIA": promote_via} if promote_via else None
    try:
        run([dvc, "repro"], extra)
    except RetrainFailed as exc:
        raise RetrainFailed(f"{exc}; @champion untouched (still v{before.champion})") from None
    run([dvc, "push", "-q"])
    after = registry_state(uri)
    pipeline = pipeline_run_since(layout, began)
    lines = [new_data]
    if pipeline is None:
        lines.append("pipeline: nothing changed, nothing retrained (no duplicate candidate)")
    else:
        lines += pipeline["gate_lines"] + pipeline["summary"]
    lines.append(
        f"@champion: v{before.champion} -> v{after.champion} (moved)"
        if after.champion != before.champion
        else f"@champion: unchanged at v{after.champion}; @candidate = v{after.candidate}"
    )
    lines.append(
        "next gates: deploy via canary (`make canary`: 80/20, promote or roll back) → "
        "monitor (`make drift`, `make performance`)"
    )
    return RetrainSummary(
        new_data=new_data,
        retrained=pipeline is not None,
        champion_before=before.champion,
        champion_after=after.champion,
        candidate_after=after.candidate,
        promotion_deferred_to_canary=bool(pipeline and pipeline["promotion_deferred_to_canary"]),
        gates=[] if pipeline is None else pipeline["gates"],
        pipeline_summary=[] if pipeline is None else pipeline["summary"],
        lines=lines,
        log=str(log),
        pipeline_log=None if pipeline is None else pipeline["log"],
    )


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
    parser.add_argument(
        "--verbose", action="store_true", help="print every step's whole output (FRAUD_VERBOSE=1)"
    )
    args = parser.parse_args(argv)
    if args.days < 0:
        parser.error(f"--days: must be >= 0, got {args.days}")
    layout = paths()
    try:
        summary = retrain(
            layout, args.days, args.drift, args.promote_via, verbose_requested(args.verbose)
        )
    except RetrainFailed as exc:
        print(f"retrain stopped: {exc} (full log: {retrain_log(layout)})", file=sys.stderr)
        return 1
    write_json_atomic(summary.as_dict(), retrain_summary_path(layout))
    print("\n== retraining summary ==\n" + "\n".join(summary.lines))
    print(f"full log: {summary.log}  (summary: {retrain_summary_path(layout)})")
    if summary.pipeline_log:
        print(f"pipeline log: {summary.pipeline_log} (kfp.local's whole output)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
