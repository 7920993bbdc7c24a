"""A throw-away copy of the project: what the end-to-end tests and the pipeline bench run in.

The copy holds what a fresh clone holds (no generated data, registry or environment) and is
a git repository of its own, because DVC needs one; commands then run against it exactly as
a user would run them in a clone.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fraudops.config import PROJECT_ROOT

#: Generated state a clone does not have (DVC outputs, registry, environment, caches).
GENERATED = (
    ".git",
    ".venv",
    "mlflow.db",
    "mlartifacts",
    "run",
    "artifacts",
    "dvc-remote",
    "reports",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
    "*.parquet",
    "registry.db",
    "online_store.db",
    "dvc.lock",
    "node_modules",
)
_GIT_IDENTITY = ("-c", "user.email=workspace@localhost", "-c", "user.name=workspace")


def copy_project(destination: Path, source: Path = PROJECT_ROOT) -> Path:
    """Copy the project's working tree to ``destination`` as a fresh one-commit git repo."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*GENERATED))
    (destination / "data" / "live").mkdir(parents=True, exist_ok=True)
    for command in (
        ["git", "init", "-q"],
        ["git", *_GIT_IDENTITY, "add", "-A"],
        ["git", *_GIT_IDENTITY, "commit", "-qm", "workspace copy"],
    ):
        subprocess.run(command, cwd=destination, check=True, capture_output=True)
    return destination
