"""Run the committed pipeline locally with ``kfp.local`` (no cluster, no Docker).

``python -m pipelines.run_local`` executes ``pipelines/compiled/fraud_training_pipeline.yaml``
step by step as subprocesses in this environment, against the embedded defaults (the DVC
outputs in ``data/``, MLflow on SQLite), prints every step and the gate decisions, then a
summary table, and writes ``artifacts/metrics.json`` + ``artifacts/plots/`` for DVC. It is the
command of the DVC ``train`` stage, so ``dvc repro`` and the cluster run the same code path.

Exit codes: 0 when the run succeeded (whether or not the champion moved), 1 when a step
stopped it (bad data, training error, registry unreachable).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from fraudops.config import load_params, mlflow_tracking_uri, params_path
from fraudops.paths import Paths, paths
from fraudops.settings import PipelineSettings
from pipelines.compile import compiled_pipeline_path


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
    from training.tracking import dvc_data_hash, git_commit

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
    from kfp import components, local

    from pipelines import local_conditions

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
        raise PipelineFailed(_plain(str(exc))) from None
    return Path(task.output.path)


def _plain(text: str) -> str:
    """Drop the ANSI colours kfp puts in its messages."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def report(evaluation_dir: Path, artifacts_dir: Path) -> str:
    """Write the DVC metrics/plots from the run's evaluation and return the summary table."""
    from training.run import summarize_decision, write_dvc_outputs_from_decision

    decision = json.loads((evaluation_dir / "decision.json").read_text())
    write_dvc_outputs_from_decision(evaluation_dir, artifacts_dir, decision)
    return summarize_decision(evaluation_dir, decision, tracking_uri=mlflow_tracking_uri())


def highlights(output: str) -> list[str]:
    """From a run's console output: the gate lines and the closing summary table.

    The steps' own logs (KFP executor input, library chatter) stay in the full output; this
    is what a person needs to see of a run.
    """
    lines = output.splitlines()
    # Step logs arrive indented inside kfp's "Streamed logs" blocks.
    gates = [
        line.strip()
        for line in lines
        if line.strip().startswith(("GATE ", "promotion deferred"))
    ]
    starts = [i for i, line in enumerate(lines) if line.startswith("test window ")]
    if not starts:
        return gates
    table = lines[starts[-1] :]
    ends = [i for i, line in enumerate(table) if line.startswith("mlflow run:")]
    return gates + (table[: ends[0] + 1] if ends else table)


def main(argv: list[str] | None = None) -> int:
    """CLI: run the pipeline locally and print the gate decisions."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.run_local", description=__doc__)
    parser.parse_args(argv)
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
    try:
        evaluation_dir = run_pipeline(inputs, layout.run_dir / "pipeline")
    except PipelineFailed as exc:
        print(f"pipeline stopped: {exc}", file=sys.stderr)
        return 1
    print(report(evaluation_dir, layout.artifacts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
