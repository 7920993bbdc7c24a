"""Shared plumbing for the thin training CLIs: one readable line on error, non-zero exit."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from fraudops.config import ConfigError
from fraudops.registry import RegistryUnavailableError
from training.evaluate import EvaluationError
from training.register import RegistryError
from training.split import SplitError
from training.train import TrainingError


def run_cli(main: Callable[[], int | None]) -> int:
    """Run ``main``; an expected failure prints ``error: <message>`` (no traceback), exit 1."""
    from mlflow.exceptions import MlflowException

    expected = (
        ConfigError,
        EvaluationError,
        RegistryError,
        RegistryUnavailableError,
        SplitError,
        TrainingError,
        LookupError,
        FileNotFoundError,
        MlflowException,
    )
    # A terminal wants the answer, not MLflow's per-file download progress bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return main() or 0
    except expected as exc:
        message = getattr(exc, "message", None) or str(exc)
        print(f"error: {message.strip().splitlines()[0]}", file=sys.stderr)
        return 1
