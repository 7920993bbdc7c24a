"""``make demo``: the whole story on embedded defaults, one numbered step at a time.

Each step prints a heading and a one-line result; a failing step stops the demo with the
step's name and the reason, and whatever it started is stopped. Running it again reuses
what exists (DVC skips unchanged stages) and still tells the story.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fraudops.config import mlflow_tracking_uri, project_root


class StepFailed(RuntimeError):
    """A demo step could not finish; the message says why."""


@dataclass
class Demo:
    """Runs steps in order, timing each, and remembers what to clean up."""

    root: Path
    started: float = field(default_factory=time.perf_counter)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def sh(self, *command: str, quiet: bool = False) -> str:
        """Run a project command from the root; its output streams unless ``quiet``."""
        result = subprocess.run(
            command,
            check=False,  # the return code becomes a StepFailed naming the command
            cwd=self.root,
            text=True,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if result.returncode != 0:
            tail = (result.stdout or "").strip().splitlines()[-5:] if quiet else []
            raise StepFailed(f"`{' '.join(command)}` exited {result.returncode} " + " | ".join(tail))
        return result.stdout or ""

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


def _python() -> str:
    return sys.executable


def run_demo(root: Path) -> None:
    """The story, step by step (see module doc)."""
    demo = Demo(root)
    dvc = str(Path(_python()).with_name("dvc"))

    def environment() -> str:
        import mlflow
        import xgboost

        return f"Python {sys.version.split()[0]}, MLflow {mlflow.__version__}, XGBoost {xgboost.__version__}"

    def data() -> str:
        (root / "data" / "live").mkdir(parents=True, exist_ok=True)
        demo.sh(dvc, "repro", "validate")
        demo.sh(dvc, "push", "-q")
        import json

        report = json.loads((root / "data" / "validated" / "report.json").read_text())
        return (
            f"{report['rows']:,} transactions over {report['days']} days, "
            f"fraud rate {report['fraud_rate']:.2%}; versioned with DVC (pushed to the local remote)"
        )

    def pipeline() -> str:
        demo.sh(dvc, "repro")
        demo.sh(dvc, "push", "-q")
        return champion_line()

    def champion_line() -> str:
        from training.show import describe_champion

        summary = describe_champion(tracking_uri=mlflow_tracking_uri())
        print("\n".join(f"  {line}" for line in summary.splitlines()))
        return summary.splitlines()[0]

    def where() -> str:
        print(f"  MLflow UI:      make mlflow-ui  (tracking URI {mlflow_tracking_uri()})")
        print("  DVC metrics:    make metrics    (artifacts/metrics.json, artifacts/plots/)")
        print(f"  data:           {root / 'data'}  (DVC remote: {root / 'dvc-remote'})")
        return f"done in {time.perf_counter() - demo.started:.0f}s"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("Environment", environment),
        ("Simulate and validate transactions (DVC: acquire → validate)", data),
        ("Kubeflow pipeline, locally (DVC: featurize → train) → @champion", pipeline),
        ("Where everything is", where),
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
