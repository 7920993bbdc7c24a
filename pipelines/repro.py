"""``make train``: ``dvc repro`` (data → features → the Kubeflow pipeline), quietly.

The whole output of every stage goes to ``run/logs/train.log``; the terminal shows which
stage and pipeline step is running, the gates, the pipeline's summary table (from
``run/pipeline-summary.json``, or a note that DVC reused every stage) and where the log is.
``--verbose`` or ``FRAUD_VERBOSE=1`` (``make train VERBOSE=1``) prints everything.

Exit codes: 0 the run succeeded (whether or not the champion moved), 1 a stage failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from fraudops.paths import Paths, paths
from pipelines.console import VERBOSE_ENV, choose_echo, run_logged, verbose_requested
from pipelines.run_local import pipeline_run_since


def train_log(layout: Paths) -> Path:
    """Where ``dvc repro``'s whole output goes (``run/logs/train.log``)."""
    return layout.run_dir / "logs" / "train.log"


def repro(layout: Paths, verbose: bool) -> tuple[int, list[str]]:
    """Run ``dvc repro``; its exit code and the lines that tell what the pipeline decided."""
    log = train_log(layout)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")  # this run's output only
    began = datetime.now(UTC).isoformat(timespec="seconds")
    dvc = str(Path(sys.executable).with_name("dvc"))
    # The pipeline under `dvc repro` is as verbose as this run.
    env = {**os.environ, VERBOSE_ENV: "1" if verbose else "0"}
    code, output = run_logged([dvc, "repro"], layout.root, log, choose_echo(verbose), env)
    if code != 0:
        tail = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        return code, [f"`dvc repro` exited {code}: {tail.strip()}"]
    run = pipeline_run_since(layout, began)
    if run is None:
        return 0, ["pipeline: nothing changed, DVC reused every stage"]
    # The gates were shown as they happened; quiet runs still need the table.
    table = [] if verbose else run["summary"]
    return 0, [*table, f"pipeline log: {run['log']} (kfp.local's whole output)"]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.repro [--verbose]``."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.repro", description=__doc__)
    parser.add_argument(
        "--verbose", action="store_true", help="print every stage's whole output (FRAUD_VERBOSE=1)"
    )
    args = parser.parse_args(argv)
    layout = paths()
    code, lines = repro(layout, verbose_requested(args.verbose))
    if code != 0:
        print(f"train stopped: {lines[0]} (full log: {train_log(layout)})", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print(f"full log: {train_log(layout)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
