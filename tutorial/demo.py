"""``make demo``: the whole story on embedded defaults, one numbered step at a time.

Each step prints a heading and a one-line result; a failing step stops the demo with the
step's name and the reason, and whatever it started is stopped. Running it again reuses
what exists (DVC skips unchanged stages) and still tells the story.

The story is :data:`STEPS`, a list of :class:`Step` objects run in order over one
:class:`DemoContext` (the project root, the commands, what earlier steps found, what to stop).
Between processes it reads the JSON files the jobs write (pipeline and retraining
summaries, the drift summary, the canary verdict), never their console text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from data.files import live_batches
from data.schema import REQUEST_COLUMNS
from fraudops.config import MODEL_NAME, mlflow_tracking_uri, project_root
from fraudops.paths import paths
from monitoring.outputs import quiet_mlflow_downloads
from pipelines.console import progress_line
from pipelines.retrain import retrain_summary_path
from pipelines.run_local import pipeline_run_since
from serving.launch import http_json
from training.register import CANDIDATE, CHAMPION, current_version
from training.show import describe_champion


class StepFailed(RuntimeError):
    """A demo step could not finish; the message says why."""


#: The drift the demo injects into its second day of traffic (any simulator scenario works).
DEMO_DRIFT = "amount_shift"
#: Instances per request when replaying a day through the servers (FRAUD_MAX_BATCH_SIZE).
REPLAY_BATCH = 200
ENTRY = f"http://127.0.0.1:8080/v1/models/{MODEL_NAME}"


@dataclass
class DemoContext:
    """What the steps share: where the project is, how to run its commands, what earlier
    steps found (the two days of traffic, whether the candidate won), and what to stop."""

    root: Path
    started: float = field(default_factory=time.perf_counter)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    #: the day of normal traffic and the drifted day (set by the traffic step)
    normal: pd.DataFrame | None = None
    drifted: pd.DataFrame | None = None
    #: the retrained candidate won offline and waits for the canary to promote it
    candidate_won: bool = False

    @property
    def py(self) -> str:
        """The project environment's Python."""
        return sys.executable

    @property
    def dvc(self) -> str:
        """The project environment's ``dvc``."""
        return str(Path(sys.executable).with_name("dvc"))

    def sh(self, *command: str, quiet: bool = False, progress: bool = False) -> str:
        """Run a project command from the root and return its output.

        Its output streams unless ``quiet``; with ``progress`` only the lines that say which
        stage or pipeline step is starting are shown, so a long step shows it is moving.
        """
        process = subprocess.Popen(
            command,
            cwd=self.root,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if progress and (stage := progress_line(line)):
                print(f"  … {stage}", flush=True)
            elif not quiet and not progress:
                print(line, end="", flush=True)
        if process.wait() != 0:
            tail = " | ".join(line.strip() for line in lines[-5:])
            raise StepFailed(f"`{' '.join(command)}` exited {process.returncode}: {tail}")
        return "".join(lines)

    def close(self) -> None:
        """Run the cleanups (stop servers) in reverse order."""
        while self.cleanups:
            self.cleanups.pop()()


@dataclass(frozen=True)
class Step:
    """One numbered step of the story: its heading and what it does (returns its result line)."""

    title: str
    action: Callable[[DemoContext], str]

    def run(self, number: int, demo: DemoContext) -> None:
        """Print the heading, run the action, print its one-line result and the time."""
        print(f"\n\033[1m[{number}] {self.title}\033[0m", flush=True)
        began = time.perf_counter()
        try:
            outcome = self.action(demo)
        except StepFailed as exc:
            raise StepFailed(f"step {number} ({self.title}) failed: {exc}") from None
        print(f"  → {outcome}  ({time.perf_counter() - began:.0f}s)", flush=True)


def _requests(frame: pd.DataFrame) -> list[dict]:
    """Raw-transaction instances (the one request schema) from a transactions frame."""
    rows = frame[list(REQUEST_COLUMNS)].copy()
    rows["tx_datetime"] = rows["tx_datetime"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return rows.to_dict(orient="records")


def replay(frame: pd.DataFrame, batch: int = REPLAY_BATCH) -> dict[str, int]:
    """Send ``frame`` through the running level-5 entry point; count decisions."""
    counts: dict[str, int] = {}
    for start in range(0, len(frame), batch):
        instances = _requests(frame.iloc[start : start + batch])
        status, body = http_json(f"{ENTRY}:predict", {"instances": instances}, timeout=60)
        if status != 200:
            raise StepFailed(f"predict answered HTTP {status}: {str(body)[:200]}")
        for prediction in body["predictions"]:
            counts[prediction["decision"]] = counts.get(prediction["decision"], 0) + 1
    return counts


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _indented(lines: Sequence[str]) -> None:
    print("\n".join(f"  {line}" for line in lines))


# --------------------------------------------------------------------------- the steps


def environment(demo: DemoContext) -> str:
    """Versions of what the story runs on."""
    # Imported here: only this step needs their version strings.
    import mlflow
    import xgboost

    return (
        f"Python {sys.version.split()[0]}, MLflow {mlflow.__version__}, "
        f"XGBoost {xgboost.__version__}"
    )


def data(demo: DemoContext) -> str:
    """Simulate and validate the transactions with DVC, push them to the local remote."""
    paths(demo.root).live_dir.mkdir(parents=True, exist_ok=True)
    demo.sh(demo.dvc, "repro", "validate", progress=True)
    demo.sh(demo.dvc, "push", "-q", quiet=True)
    report = json.loads(paths(demo.root).validation_report.read_text())
    return (
        f"{report['rows']:,} transactions over {report['days']} days, "
        f"fraud rate {report['fraud_rate']:.2%}; versioned with DVC (pushed to the local remote)"
    )


def pipeline(demo: DemoContext) -> str:
    """``dvc repro`` (featurize → the Kubeflow pipeline); its gates and the champion."""
    began = _now()
    demo.sh(demo.dvc, "repro", progress=True)
    run = pipeline_run_since(paths(demo.root), began)
    if run is not None:
        _indented(run["gate_lines"] + run["summary"])
    else:
        _indented(["(nothing changed: DVC reused every stage)"])
    demo.sh(demo.dvc, "push", "-q", quiet=True)
    summary = describe_champion(tracking_uri=mlflow_tracking_uri())
    _indented(summary.splitlines())
    return summary.splitlines()[0]


def serve(demo: DemoContext) -> str:
    """Level 5 up; score the last day's known frauds and genuine payments, explain one."""
    demo.cleanups.append(lambda: demo.sh(demo.py, "-m", "serving.launch", "stop", quiet=True))
    demo.sh(demo.py, "-m", "serving.launch", "level5", quiet=True)
    # Score the last day's known frauds next to genuine payments, explain the riskiest.
    history = pd.read_parquet(paths(demo.root).validated_transactions)
    last_day = history[history.tx_datetime >= history.tx_datetime.max().normalize()]
    sample = pd.concat(
        [last_day[last_day.tx_fraud == 1].head(3), last_day[last_day.tx_fraud == 0].head(3)]
    )
    status, body = http_json(f"{ENTRY}:predict", {"instances": _requests(sample)}, timeout=60)
    if status != 200:
        raise StepFailed(f"predict answered HTTP {status}: {str(body)[:200]}")
    predictions = body["predictions"]
    for tx, prediction in zip(sample.itertuples(), predictions):
        truth = "fraud" if tx.tx_fraud else "genuine"
        print(
            f"  tx {tx.transaction_id} ${tx.tx_amount:>8.2f} ({truth:>7}) -> "
            f"{prediction['decision']:<8} p={prediction['fraud_probability']:.3f}"
        )
    riskiest = max(range(len(predictions)), key=lambda i: predictions[i]["fraud_probability"])
    _explain(sample.iloc[[riskiest]])
    flagged = sum(p["decision"] != "APPROVE" for p in predictions)
    return (
        f"level 5 up on :8080 (transformer → predictor, explainer); {flagged} of "
        f"{len(predictions)} flagged, reasons above"
    )


def _explain(row: pd.DataFrame) -> None:
    """Ask the explainer why ``row`` (one transaction) scored as it did; print the reasons."""
    status, explained = http_json(f"{ENTRY}:explain", {"instances": _requests(row)}, timeout=60)
    if status != 200:
        raise StepFailed(f"explain answered HTTP {status}: {str(explained)[:200]}")
    explanation = explained["explanations"][0]
    print(
        f"  why tx {row.iloc[0].transaction_id} is {explanation.get('decision', 'flagged')} "
        f"(p={explanation['fraud_probability']:.3f}, base {explanation['base_value']:+.2f}):"
    )
    for reason in explanation["reasons"][:5]:
        print(f"    {reason['contribution']:+.2f}  {reason['text']}")


def traffic(demo: DemoContext) -> str:
    """A normal day, then a drifted day, simulated and sent through level 5."""
    live = paths(demo.root).live_dir
    before = set(live_batches(live))
    next_day = [demo.py, "-m", "data.acquire", "--no-progress", "next-days", "--days", "1"]
    demo.sh(*next_day, "--drift", "none", quiet=True)
    demo.sh(*next_day, "--drift", DEMO_DRIFT, quiet=True)
    normal_path, drift_path = sorted(set(live_batches(live)) - before)
    normal, drifted = pd.read_parquet(normal_path), pd.read_parquet(drift_path)
    demo.normal, demo.drifted = normal, drifted
    counts_normal, counts_drift = replay(normal), replay(drifted)
    # The chargebacks of these days, from the label stream (a file here): the terminal-risk
    # state learns them as the label delay passes.
    labels = demo.sh(demo.py, "-m", "features.label_events", "consume", quiet=True).strip()
    print(f"  {labels.splitlines()[-1]}")
    skew = live_skew(demo, normal.tx_datetime.min(), drifted.tx_datetime.max())
    return (
        f"day {normal.tx_datetime.min():%Y-%m-%d}: {len(normal):,} scored {counts_normal}; "
        f"day {drifted.tx_datetime.min():%Y-%m-%d} ({DEMO_DRIFT}): {len(drifted):,} scored "
        f"{counts_drift}; {skew}"
    )


def _run_finding(demo: DemoContext, command: list[str]) -> None:
    """Run a monitoring job and show its console; exit 3 is a finding, other non-zero stops."""
    result = subprocess.run(
        command,
        check=False,
        cwd=demo.root,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    _indented(result.stdout.strip().splitlines())
    if result.returncode not in (0, 3):
        raise StepFailed(f"{command[2]} exited {result.returncode}")


def monitoring_job(demo: DemoContext, job: str, start: str, end: str) -> dict:
    """Run ``monitoring.<job>`` over [start, end), show its console, return its JSON summary.

    Exit 3 is a finding (drift, skew), not a failure; anything else but 0 stops the step.
    """
    _run_finding(demo, [demo.py, "-m", f"monitoring.{job}", "--start", start, "--end", end])
    summary_file = paths(demo.root).reports_dir / job / f"{job}_summary.json"
    return json.loads(summary_file.read_text())


def live_skew(demo: DemoContext, first: pd.Timestamp, last: pd.Timestamp) -> str:
    """The skew job on the live days: served vectors vs the offline definition (its JSON)."""
    end = f"{last + pd.Timedelta(microseconds=1):%Y-%m-%dT%H:%M:%S.%f}"
    stats = monitoring_job(demo, "skew", f"{first:%Y-%m-%dT%H:%M:%S}", end)["statistics"]
    return (
        f"served features equal to training's on {stats['equal_share']:.2%} of "
        f"{stats['transactions']:,} live transactions"
    )


def drift(demo: DemoContext) -> str:
    """The drift job over each day of traffic against the champion's training reference."""
    lines = []
    for name, day in (("normal", demo.normal), ("drifted", demo.drifted)):
        if day is None:
            raise StepFailed(f"no {name} day of traffic: the traffic step did not run")
        start = f"{day.tx_datetime.min():%Y-%m-%d}"
        end = f"{day.tx_datetime.max().normalize() + pd.Timedelta(days=1):%Y-%m-%d}"
        summary = monitoring_job(demo, "drift", start, end)
        named = ", ".join(summary["drifted_features"]) or "scores only"
        found = f"DRIFT in {named}" if summary["drift_detected"] else "no drift"
        lines.append(f"{name} day: {found}")
    return "; ".join(lines) + " (exit 3 = drift; on a cluster this dispatches drift-detected)"


def retrain(demo: DemoContext) -> str:
    """``pipelines.retrain`` on the new days, winners left for the canary; its summary."""
    demo.sh(
        demo.py, "-m", "pipelines.retrain", "--days", "0", "--promote-via", "canary", progress=True
    )
    summary = json.loads(retrain_summary_path(paths(demo.root)).read_text())
    _indented(summary["lines"])
    demo.candidate_won = bool(summary["promotion_deferred_to_canary"])
    return next(line for line in summary["lines"] if line.startswith("@champion"))


def canary(demo: DemoContext) -> str:
    """Champion and candidate side by side on live traffic; the verdict (applied if it won)."""
    uri = mlflow_tracking_uri()
    champion = current_version(CHAMPION, tracking_uri=uri)
    if current_version(CANDIDATE, tracking_uri=uri) in (None, champion):
        return "no canary: there is no candidate besides the champion"
    # A candidate that lost offline is shown on live traffic but never promoted by it.
    won = demo.candidate_won
    command = [demo.py, "-m", "monitoring.canary", *([] if won else ["--no-apply"])]
    _run_finding(demo, command)
    report = json.loads(paths(demo.root).canary_verdict.read_text())
    verdict = f"canary verdict: {report['verdict']['action'].upper()}"
    if won:
        return (
            f"{verdict}: applied (promote moves @champion, rollback takes the candidate out of "
            "traffic)"
        )
    return f"{verdict} on live traffic; not applied: the candidate lost offline, @champion stays"


def stop(demo: DemoContext) -> str:
    """Stop the servers the story started."""
    demo.close()
    return "servers stopped"


def where(demo: DemoContext) -> str:
    """Write the run report; print where everything is."""
    root = demo.root
    demo.sh(demo.py, "-m", "tutorial.report", quiet=True)
    print(f"  run report:     {root / 'reports' / 'run-report.html'}")
    print(f"  MLflow UI:      make mlflow-ui  (tracking URI {mlflow_tracking_uri()})")
    print(f"  drift reports:  {root / 'reports' / 'drift'}")
    layout = paths(root)
    print(f"  prediction log: {layout.prediction_log_dir}   audit log: {layout.audit_log_dir}")
    print(f"  data (DVC):     {root / 'data'}  remote: {root / 'dvc-remote'}")
    return f"done in {time.perf_counter() - demo.started:.0f}s"


STEPS: tuple[Step, ...] = (
    Step("Environment", environment),
    Step("Simulate and version the data (DVC: acquire → validate)", data),
    Step("Kubeflow pipeline, locally (DVC: featurize → train) → @champion", pipeline),
    Step("Level 5: transformer + predictor + explainer; score and explain", serve),
    Step(f"Traffic: a normal day, then a day with drift ({DEMO_DRIFT})", traffic),
    Step("Drift job: each day vs the champion's training reference", drift),
    Step("Retrain on the new data: candidate vs champion", retrain),
    Step("Canary 80/20: promote or roll back", canary),
    Step("Stop the servers", stop),
    Step("Report and where everything is", where),
)


def run_demo(root: Path, steps: Sequence[Step] = STEPS) -> None:
    """The story, step by step (see module doc); whatever a step started is stopped."""
    quiet_mlflow_downloads()  # the story, not per-file progress bars (inherited by every step)
    demo = DemoContext(root)
    try:
        for number, step in enumerate(steps, start=1):
            step.run(number, demo)
    finally:
        demo.close()


def main() -> int:
    """CLI entry point for ``make demo``."""
    try:
        run_demo(project_root())
    except StepFailed as exc:
        print(f"\ndemo stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
