"""End-to-end fixtures: a throw-away copy of the project with a small configuration.

The copy is a git repository of its own (DVC needs one), with its own MLflow SQLite registry
and DVC remote, so ``dvc repro`` and the pipeline run exactly as a user would run them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bench.workspace import copy_project

#: Small enough for seconds per stage, big enough for a fraud rate and every time window.
SMALL_PARAMS = {
    "simulate": {"n_customers": 600, "n_terminals": 2000, "n_days": 56},
    "validate": {"min_rows": 1000},
    "train": {
        "burn_in_days": 7,
        "train_days": 21,
        "validation_days": 7,
        "gap_days": 7,
        "test_days": 14,
        "xgboost": {"n_estimators": 40, "max_depth": 4},
    },
    # The default gate is sized for the default 120-day world; this world is ~1/10 of it.
    "register": {"min_net_benefit": 2000.0},
}


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base``."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_params(root: Path, override: dict) -> None:
    """Apply ``override`` to the copy's params.yaml."""
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), override)))


class Project:
    """A project copy and the environment its commands run in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "FRAUD_PROJECT_ROOT": str(root),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("FRAUD_PARAMS", None)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in the copy; output captured (shown on failure)."""
        result = subprocess.run(
            command,
            check=False,
            cwd=self.root,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}"
            )
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(Path(sys.executable).with_name("dvc")), *args, check=check)

    def python(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, *args, check=check)

    def registry(self):
        """An MLflow client on the copy's registry."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.env["MLFLOW_TRACKING_URI"])

    def alias(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.registry().get_model_version_by_alias("fraud-detector", alias).version)
        except MlflowException:
            return None


def make_project(root: Path) -> Project:
    """A fresh-clone copy of the project in ``root`` with the small params."""
    copy_project(root)
    write_params(root, SMALL_PARAMS)
    return Project(root)


@pytest.fixture(scope="package")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One project copy shared by the end-to-end tests (each module states what it needs)."""
    yield make_project(tmp_path_factory.mktemp("project") / "fraud-mlops")
