"""Run the committed pipeline locally with ``kfp.local`` (no cluster, no Docker).

``python -m pipelines.run_local`` executes ``pipelines/compiled/fraud_training_pipeline.yaml``
step by step as subprocesses in this environment, against the embedded defaults (the DVC
outputs in ``data/``, MLflow on SQLite), prints which step is running and the gate
decisions, then a summary table and where the full log is (``run/logs/pipeline.log``: all of
kfp.local's output; ``--verbose`` or ``FRAUD_VERBOSE=1`` prints it too). It writes
``artifacts/metrics.json`` + ``artifacts/plots/`` for DVC and ``run/pipeline-summary.json``
(gates, decision, summary) for the processes that report on the run. It is the command of
the DVC ``train`` stage, so ``dvc repro`` and the cluster run the same code path.

Exit codes: 0 when the run succeeded (whether or not the champion moved), 1 when a step
stopped it (bad data, training error, registry unreachable).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kfp import components, local

from data.files import write_json_atomic
from fraudops.config import load_params, mlflow_tracking_uri, params_path
from fraudops.paths import Paths, paths
from fraudops.settings import PipelineSettings
from pipelines import local_conditions
from pipelines.compile import compiled_pipeline_path
from pipelines.console import (
    choose_echo,
    gate_line,
    last_error_line,
    output_to_log,
    plain,
    progress_line,
    verbose_requested,
)
from training.run import summarize_decision, write_dvc_outputs_from_decision
from training.tracking import dvc_data_hash, git_commit

#: ``schema`` of ``run/pipeline-summary.json``; bump it when a field changes meaning.
SUMMARY_SCHEMA = "fraud-mlops.pipeline-run/1"


@dataclass(frozen=True)
class PipelineInputs:
    """The run parameters: where the data is, the params and the lineage facts."""

    transactions: str
    customer_features: str
    terminal_features: str
    params_yaml: str
    mlflow_tracking_uri: str
    git_commit: str
    data_hash: str
    promote_via: str = "pipeline"

    def as_arguments(self) -> dict[str, str]:
        """Keyword arguments for the compiled pipeline."""
        return dict(self.__dict__)


def local_inputs(layout: Paths) -> PipelineInputs:
    """Run parameters for a local run: DVC outputs, params.yaml, git and DVC hashes."""
    return PipelineInputs(
        transactions=str(layout.validated_transactions),
        customer_features=str(layout.customer_features),
        terminal_features=str(layout.terminal_features),
        params_yaml=params_path().read_text(),
        mlflow_tracking_uri=mlflow_tracking_uri(),
        git_commit=git_commit(layout.root),
        data_hash=dvc_data_hash(layout.root),
        promote_via=PipelineSettings().promote_via or load_params().register_.promote_via,
    )


class PipelineFailed(RuntimeError):
    """A step stopped the run; the message names the step."""


def run_pipeline(inputs: PipelineInputs, pipeline_root: Path) -> Path:
    """Run the compiled pipeline with kfp.local; the evaluation artifact's directory."""
    # Keep only this run's step outputs: each run copies the training set.
    shutil.rmtree(pipeline_root, ignore_errors=True)
    pipeline_root.mkdir(parents=True)
    local_conditions.install()
    local.init(
        local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )
    pipeline = components.load_component_from_file(str(compiled_pipeline_path()))
    try:
        task = pipeline(**inputs.as_arguments())
    except RuntimeError as exc:
        raise PipelineFailed(plain(str(exc))) from None
    return Path(task.output.path)


def report(evaluation_dir: Path, artifacts_dir: Path) -> str:
    """Write the DVC metrics/plots from the run's evaluation and return the summary table."""
    decision = json.loads((evaluation_dir / "decision.json").read_text())
    write_dvc_outputs_from_decision(evaluation_dir, artifacts_dir, decision)
    return summarize_decision(evaluation_dir, decision, tracking_uri=mlflow_tracking_uri())


def pipeline_log(layout: Paths) -> Path:
    """Where a local run's whole output goes (``run/logs/pipeline.log``)."""
    return layout.run_dir / "logs" / "pipeline.log"


def pipeline_summary_path(layout: Paths) -> Path:
    """Where a local run's summary goes (``run/pipeline-summary.json``)."""
    return layout.run_dir / "pipeline-summary.json"


def pipeline_run_since(layout: Paths, began: str) -> dict | None:
    """The run summary if a pipeline run started at or after ``began`` (ISO time), else None.

    ``dvc repro`` skips the ``train`` stage when nothing it depends on changed; then the
    summary on disk is an earlier run's and this returns None.
    """
    path = pipeline_summary_path(layout)
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("started_at", "") >= began else None


def gates_from_log(log_text: str) -> list[dict[str, str]]:
    """``[{"gate", "verdict", "detail", "line"}]`` from the steps' gate lines, in run order.

    The components print each gate as ``GATE <name>: <VERDICT> — <detail>``; this process ran
    them, so it is the one that reads their log and hands the gates on as JSON.
    """
    gates = []
    for line in log_text.splitlines():
        text = gate_line(line)
        if text is None or not text.startswith("GATE "):
            continue
        name, _, rest = text.removeprefix("GATE ").partition(": ")
        verdict, _, detail = rest.partition(" — ")
        gates.append({"gate": name, "verdict": verdict, "detail": detail, "line": text})
    return gates


def write_summary(
    layout: Paths,
    started_at: str,
    log_path: Path,
    *,
    decision: dict | None,
    summary: str,
    error: str | None = None,
) -> Path:
    """``run/pipeline-summary.json``: how the run ended, its gates, decision and summary table."""
    log_text = log_path.read_text(encoding="utf-8") if log_path.exists() else ""
    deferred = bool(
        decision
        and decision["gate"]["passed"]
        and decision.get("challenge", {}).get("better")
        and not decision.get("promote_now", True)
    )
    document = {
        "schema": SUMMARY_SCHEMA,
        "status": "failed" if error else "succeeded",
        "error": error,
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "gates": gates_from_log(log_text),
        # The gate lines as the terminal showed them (with "promotion deferred ..." if any).
        "gate_lines": [line for raw in log_text.splitlines() if (line := gate_line(raw))],
        "promotion_deferred_to_canary": deferred,
        "decision": decision,
        "summary": summary.splitlines(),
        "log": str(log_path),
    }
    path = pipeline_summary_path(layout)
    write_json_atomic(document, path)
    return path


def failure_message(kfp_message: str, log_text: str) -> str:
    """One line naming the step that failed and the exception that stopped it.

    kfp's own message names the pipeline, not the step ("Inner task failed: ."); the log says
    which step started last and what it raised.
    """
    steps = [step for line in log_text.splitlines() if (step := progress_line(line))]
    cause = last_error_line(log_text)
    if not steps or cause is None:
        return kfp_message
    return f"{steps[-1]} failed: {cause}"


def main(argv: list[str] | None = None) -> int:
    """CLI: run the pipeline locally; print the steps, the gates, the summary and the log."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.run_local", description=__doc__)
    parser.add_argument(
        "--verbose", action="store_true", help="print kfp.local's whole output (FRAUD_VERBOSE=1)"
    )
    args = parser.parse_args(argv)
    load_params()  # fail fast on a broken params.yaml, before any step starts
    layout = paths()
    inputs = local_inputs(layout)
    for name in ("transactions", "customer_features", "terminal_features"):
        if not Path(getattr(inputs, name)).exists():
            print(
                f"pipeline: {name}: {getattr(inputs, name)} not found (run `dvc repro featurize`)",
                file=sys.stderr,
            )
            return 1
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    log_path = pipeline_log(layout)
    try:
        with output_to_log(log_path, choose_echo(verbose_requested(args.verbose))):
            evaluation_dir = run_pipeline(inputs, layout.run_dir / "pipeline")
    except PipelineFailed as exc:
        message = failure_message(str(exc), log_path.read_text(encoding="utf-8"))
        write_summary(layout, started_at, log_path, decision=None, summary="", error=message)
        print(f"pipeline stopped: {message} (full log: {log_path})", file=sys.stderr)
        return 1
    summary = report(evaluation_dir, layout.artifacts)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(summary + "\n")
    decision = json.loads((evaluation_dir / "decision.json").read_text())
    write_summary(layout, started_at, log_path, decision=decision, summary=summary)
    print(summary)
    print(f"full log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
