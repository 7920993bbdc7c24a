"""Per-test SQLite MLflow stores, copied from one migrated template (migrations cost seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path


def migrated_store_template(directory: Path) -> Path:
    """Create an empty MLflow SQLite database with every migration applied; never used directly."""
    from mlflow import MlflowClient

    template = directory / "mlflow.db"
    MlflowClient(f"sqlite:///{template}").search_experiments()
    return template


def fresh_sqlite_store(template: Path, directory: Path) -> str:
    """Copy the template into ``directory``; the tracking URI of that test's own store."""
    target = directory / "mlflow.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"
