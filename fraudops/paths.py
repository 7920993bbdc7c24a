"""Every file location the pipeline uses, from one place rooted at the project root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fraudops.config import project_root


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes; build with :func:`paths` (root defaults to the repo)."""

    root: Path

    @property
    def raw_transactions(self) -> Path:
        """Immutable source data (simulated or ingested), DVC-tracked."""
        return self.root / "data" / "raw" / "transactions.parquet"

    @property
    def validated_transactions(self) -> Path:
        return self.root / "data" / "validated" / "transactions.parquet"

    @property
    def validation_report(self) -> Path:
        return self.root / "data" / "validated" / "report.json"

    @property
    def features_dir(self) -> Path:
        """Feast offline sources and the training set (written by the featurize stage)."""
        return self.root / "data" / "features"

    @property
    def customer_features(self) -> Path:
        return self.features_dir / "customer_features.parquet"

    @property
    def terminal_features(self) -> Path:
        return self.features_dir / "terminal_features.parquet"

    @property
    def training_set(self) -> Path:
        return self.features_dir / "training_set.parquet"

    @property
    def feature_repo(self) -> Path:
        """The Feast feature repo (feature_store.yaml + definitions)."""
        return self.root / "features" / "feature_repo"

    @property
    def artifacts(self) -> Path:
        """Metrics and plots DVC tracks (``dvc metrics diff`` / ``dvc plots diff``)."""
        return self.root / "artifacts"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def live_dir(self) -> Path:
        """Simulated live traffic (the next N days), appended by retraining."""
        return self.root / "data" / "live"

    @property
    def live_labels_dir(self) -> Path:
        """Label events (chargebacks) of the live traffic, versioned with it."""
        return self.live_dir / "labels"

    @property
    def reports_dir(self) -> Path:
        """Human-readable outputs: drift/performance reports, canary verdict, run report."""
        return self.root / "reports"

    @property
    def canary_verdict(self) -> Path:
        """The latest canary verdict (written by ``monitoring.canary``, shown in the report)."""
        return self.reports_dir / "canary" / "canary_verdict.json"

    @property
    def prediction_log_dir(self) -> Path:
        """Local default of the prediction log servers write and the drift job reads."""
        return self.run_dir / "predictions"

    @property
    def audit_log_dir(self) -> Path:
        """Local default of the explainer's audit log."""
        return self.run_dir / "audit"

    @property
    def run_dir(self) -> Path:
        """PID files, logs and the prediction/audit logs of locally started servers."""
        return self.root / "run"


def paths(root: Path | None = None) -> Paths:
    """The project's paths, rooted at ``root`` or the project root."""
    return Paths((root or project_root()).resolve())
