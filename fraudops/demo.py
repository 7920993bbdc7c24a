"""``make demo``: the whole story on embedded defaults, one numbered step at a time.

Each step prints a heading and a one-line result; a failing step stops the demo with the
step's name and the reason, and whatever it started is stopped. Running it again reuses
what exists (DVC skips unchanged stages) and still tells the story.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fraudops.config import mlflow_tracking_uri, project_root
from fraudops.paths import paths


class StepFailed(RuntimeError):
    """A demo step could not finish; the message says why."""


@dataclass
class Demo:
    """Runs steps in order, timing each, and remembers what to clean up."""

    root: Path
    started: float = field(default_factory=time.perf_counter)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

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
            if progress and (stage := _progress_line(line)):
                print(f"  … {stage}", flush=True)
            elif not quiet and not progress:
                print(line, end="", flush=True)
        if process.wait() != 0:
            tail = " | ".join(line.strip() for line in lines[-5:])
            raise StepFailed(f"`{' '.join(command)}` exited {process.returncode}: {tail}")
        return "".join(lines)

    def step(self, number: int, title: str, action: Callable[[], str]) -> None:
        """Print the heading, run ``action``, print its one-line result and the time."""
        print(f"\n\033[1m[{number}] {title}\033[0m", flush=True)
        began = time.perf_counter()
        outcome = action()
        print(f"  → {outcome}  ({time.perf_counter() - began:.0f}s)", flush=True)

    def close(self) -> None:
        """Run the cleanups (stop servers) in reverse order."""
        while self.cleanups:
            self.cleanups.pop()()


_PROGRESS = re.compile(r"Running stage '([^']+)'|Executing task \x1b\[\d+m'([^']+)'|Executing task '([^']+)'")


def _progress_line(line: str) -> str | None:
    """``stage validate`` / ``pipeline step train-model`` when ``line`` starts one."""
    match = _PROGRESS.search(line)
    if not match:
        return None
    if match.group(1):
        return f"DVC stage {match.group(1)}"
    return f"pipeline step {match.group(2) or match.group(3)}"


def _python() -> str:
    return sys.executable


#: The drift the demo injects into its second day of traffic (any simulator scenario works).
DEMO_DRIFT = "amount_shift"
#: Instances per request when replaying a day through the servers (FRAUD_MAX_BATCH_SIZE).
REPLAY_BATCH = 200
ENTRY = "http://127.0.0.1:8080/v1/models/fraud-detector"


def _requests(frame) -> list[dict]:
    """Raw-transaction instances (the one request schema) from a transactions frame."""
    from data.schema import REQUEST_COLUMNS

    rows = frame[list(REQUEST_COLUMNS)].copy()
    rows["tx_datetime"] = rows["tx_datetime"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return rows.to_dict(orient="records")


def replay(frame, batch: int = REPLAY_BATCH) -> dict[str, int]:
    """Send ``frame`` through the running level-5 entry point; count decisions."""
    from serving.launch import http_json

    counts: dict[str, int] = {}
    for start in range(0, len(frame), batch):
        status, body = http_json(f"{ENTRY}:predict", {"instances": _requests(frame.iloc[start:start + batch])}, timeout=60)
        if status != 200:
            raise StepFailed(f"predict answered HTTP {status}: {str(body)[:200]}")
        for prediction in body["predictions"]:
            counts[prediction["decision"]] = counts.get(prediction["decision"], 0) + 1
    return counts


def run_demo(root: Path) -> None:
    """The story, step by step (see module doc)."""
    import json

    import pandas as pd

    from data.files import live_batches
    from monitoring.outputs import quiet_mlflow_downloads

    quiet_mlflow_downloads()  # the story, not per-file progress bars (inherited by every step)
    demo = Demo(root)
    dvc = str(Path(_python()).with_name("dvc"))
    py = _python()
    state: dict[str, object] = {}

    def environment() -> str:
        import mlflow
        import xgboost

        return f"Python {sys.version.split()[0]}, MLflow {mlflow.__version__}, XGBoost {xgboost.__version__}"

    def data() -> str:
        (root / "data" / "live").mkdir(parents=True, exist_ok=True)
        demo.sh(dvc, "repro", "validate", progress=True)
        demo.sh(dvc, "push", "-q", quiet=True)
        report = json.loads((root / "data" / "validated" / "report.json").read_text())
        return (
            f"{report['rows']:,} transactions over {report['days']} days, "
            f"fraud rate {report['fraud_rate']:.2%}; versioned with DVC (pushed to the local remote)"
        )

    def pipeline() -> str:
        from pipelines.run_local import highlights

        output = demo.sh(dvc, "repro", progress=True)
        shown = highlights(output) or ["(nothing changed: DVC reused every stage)"]
        print("\n".join(f"  {line}" for line in shown))
        demo.sh(dvc, "push", "-q", quiet=True)
        from training.show import describe_champion

        summary = describe_champion(tracking_uri=mlflow_tracking_uri())
        print("\n".join(f"  {line}" for line in summary.splitlines()))
        return summary.splitlines()[0]

    def serve() -> str:
        demo.cleanups.append(lambda: demo.sh(py, "-m", "serving.launch", "stop", quiet=True))
        demo.sh(py, "-m", "serving.launch", "level5", quiet=True)
        from serving.launch import http_json

        # Score the last day's known frauds next to genuine payments, explain the riskiest.
        history = pd.read_parquet(root / "data" / "validated" / "transactions.parquet")
        last_day = history[history.tx_datetime >= history.tx_datetime.max().normalize()]
        sample = pd.concat([last_day[last_day.tx_fraud == 1].head(3), last_day[last_day.tx_fraud == 0].head(3)])
        status, body = http_json(f"{ENTRY}:predict", {"instances": _requests(sample)}, timeout=60)
        if status != 200:
            raise StepFailed(f"predict answered HTTP {status}: {str(body)[:200]}")
        predictions = body["predictions"]
        for tx, prediction in zip(sample.itertuples(), predictions):
            truth = "fraud" if tx.tx_fraud else "genuine"
            print(f"  tx {tx.transaction_id} ${tx.tx_amount:>8.2f} ({truth:>7}) -> "
                  f"{prediction['decision']:<8} p={prediction['fraud_probability']:.3f}")
        riskiest = max(range(len(predictions)), key=lambda i: predictions[i]["fraud_probability"])
        status, explained = http_json(f"{ENTRY}:explain", {"instances": _requests(sample.iloc[[riskiest]])}, timeout=60)
        if status != 200:
            raise StepFailed(f"explain answered HTTP {status}: {str(explained)[:200]}")
        explanation = explained["explanations"][0]
        print(f"  why tx {sample.iloc[riskiest].transaction_id} is {explanation.get('decision', 'flagged')} "
              f"(p={explanation['fraud_probability']:.3f}, base {explanation['base_value']:+.2f}):")
        for reason in explanation["reasons"][:5]:
            print(f"    {reason['contribution']:+.2f}  {reason['text']}")
        flagged = sum(p["decision"] != "APPROVE" for p in predictions)
        return f"level 5 up on :8080 (transformer → predictor, explainer); {flagged} of {len(predictions)} flagged, reasons above"

    def traffic() -> str:
        before = set(live_batches(root / "data" / "live"))
        demo.sh(py, "-m", "data.acquire", "--no-progress", "next-days", "--days", "1", "--drift", "none", quiet=True)
        demo.sh(py, "-m", "data.acquire", "--no-progress", "next-days", "--days", "1", "--drift", DEMO_DRIFT, quiet=True)
        normal_path, drift_path = sorted(set(live_batches(root / "data" / "live")) - before)
        normal, drifted = pd.read_parquet(normal_path), pd.read_parquet(drift_path)
        state["normal"], state["drifted"] = normal, drifted
        counts_normal, counts_drift = replay(normal), replay(drifted)
        # The chargebacks of these days, from the label stream (a file here): the terminal-risk
        # state learns them as the label delay passes.
        labels = demo.sh(py, "-m", "features.label_events", "consume", quiet=True).strip()
        print(f"  {labels.splitlines()[-1]}")
        skew = live_skew(normal.tx_datetime.min(), drifted.tx_datetime.max())
        return (f"day {normal.tx_datetime.min():%Y-%m-%d}: {len(normal):,} scored {counts_normal}; "
                f"day {drifted.tx_datetime.min():%Y-%m-%d} ({DEMO_DRIFT}): {len(drifted):,} scored {counts_drift}; "
                f"{skew}")

    def live_skew(first, last) -> str:
        # The skew job's own JSON, not its console text: served vs offline on the two live days.
        end = f"{last + pd.Timedelta(microseconds=1):%Y-%m-%dT%H:%M:%S.%f}"
        result = subprocess.run(
            [py, "-m", "monitoring.skew", "--start", f"{first:%Y-%m-%dT%H:%M:%S}", "--end", end],
            check=False, cwd=root, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        print("\n".join(f"  {line}" for line in result.stdout.strip().splitlines()))
        if result.returncode not in (0, 3):
            raise StepFailed(f"skew job exited {result.returncode}")
        stats = json.loads((root / "reports" / "skew" / "skew_summary.json").read_text())["statistics"]
        return f"served features equal to training's on {stats['equal_share']:.2%} of {stats['transactions']:,} live transactions"

    def drift() -> str:
        lines = []
        for name in ("normal", "drifted"):
            day = state[name]
            start = f"{day.tx_datetime.min():%Y-%m-%d}"
            end = f"{day.tx_datetime.max().normalize() + pd.Timedelta(days=1):%Y-%m-%d}"
            result = subprocess.run(
                [py, "-m", "monitoring.drift", "--start", start, "--end", end],
                check=False, cwd=root, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            print("\n".join(f"  {line}" for line in result.stdout.strip().splitlines()))
            if result.returncode not in (0, 3):
                raise StepFailed(f"drift job exited {result.returncode}")
            summary = json.loads((root / "reports" / "drift" / "drift_summary.json").read_text())
            named = ", ".join(summary["drifted_features"]) or "scores only"
            found = f"DRIFT in {named}" if result.returncode == 3 else "no drift"
            lines.append(f"{name} day: {found}")
        return "; ".join(lines) + " (exit 3 = drift; on a cluster this dispatches drift-detected)"

    def retrain() -> str:
        out = demo.sh(py, "-m", "pipelines.retrain", "--days", "0", "--promote-via", "canary", progress=True)
        summary = out.split("== retraining summary ==")[-1].strip().splitlines()
        print("\n".join(f"  {line}" for line in summary))
        state["canary"] = any("promotion deferred to the canary" in line for line in summary)
        return summary[-2] if len(summary) > 1 else summary[-1]

    def canary() -> str:
        from training.register import CANDIDATE, CHAMPION, current_version

        uri = mlflow_tracking_uri()
        if current_version(CANDIDATE, tracking_uri=uri) in (None, current_version(CHAMPION, tracking_uri=uri)):
            return "no canary: there is no candidate besides the champion"
        # A candidate that lost offline is shown on live traffic but never promoted by it.
        won = bool(state.get("canary"))
        command = [py, "-m", "monitoring.canary", *([] if won else ["--no-apply"])]
        result = subprocess.run(
            command, check=False, cwd=root, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        print("\n".join(f"  {line}" for line in result.stdout.strip().splitlines()))
        if result.returncode not in (0, 3):
            raise StepFailed(f"canary exited {result.returncode}")
        verdict = next((line for line in result.stdout.splitlines() if line.startswith("canary verdict:")), "")
        if won:
            return f"{verdict}: applied (promote moves @champion, rollback takes the candidate out of traffic)"
        return f"{verdict} on live traffic; not applied: the candidate lost offline, @champion stays"

    def stop() -> str:
        demo.close()
        return "servers stopped"

    def where() -> str:
        demo.sh(py, "-m", "fraudops.report", quiet=True)
        print(f"  run report:     {root / 'reports' / 'run-report.html'}")
        print(f"  MLflow UI:      make mlflow-ui  (tracking URI {mlflow_tracking_uri()})")
        print(f"  drift reports:  {root / 'reports' / 'drift'}")
        layout = paths(root)
        print(f"  prediction log: {layout.prediction_log_dir}   audit log: {layout.audit_log_dir}")
        print(f"  data (DVC):     {root / 'data'}  remote: {root / 'dvc-remote'}")
        return f"done in {time.perf_counter() - demo.started:.0f}s"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("Environment", environment),
        ("Simulate and version the data (DVC: acquire → validate)", data),
        ("Kubeflow pipeline, locally (DVC: featurize → train) → @champion", pipeline),
        ("Level 5: transformer + predictor + explainer; score and explain", serve),
        (f"Traffic: a normal day, then a day with drift ({DEMO_DRIFT})", traffic),
        ("Drift job: each day vs the champion's training reference", drift),
        ("Retrain on the new data: candidate vs champion", retrain),
        ("Canary 80/20: promote or roll back", canary),
        ("Stop the servers", stop),
        ("Report and where everything is", where),
    ]
    try:
        for number, (title, action) in enumerate(steps, start=1):
            try:
                demo.step(number, title, action)
            except StepFailed as exc:
                raise StepFailed(f"step {number} ({title}) failed: {exc}") from None
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
