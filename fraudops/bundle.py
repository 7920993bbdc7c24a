"""The model bundle: everything serving and monitoring need to use a trained model.

A bundle is the booster plus the facts that must travel with it — the feature order, the
decision thresholds chosen on validation data, and lineage. It is saved as two files
(``model.ubj`` + ``bundle.json``), logged with every MLflow run under ``bundle/``, and
resolved from the registry by alias only (``models:/fraud-detector@champion``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from fraudops.config import MODEL_NAME
from fraudops.registry import mlflow_client

#: Decisions, in increasing severity; ``Thresholds.decide`` is the only place they are made.
APPROVE, REVIEW, DECLINE = "APPROVE", "REVIEW", "DECLINE"
_DECISIONS = np.array([APPROVE, REVIEW, DECLINE], dtype=object)

BOOSTER_FILE = "model.ubj"
BUNDLE_FILE = "bundle.json"
#: Written beside a run's bundle when the registry gives it a version: a folder fetched by
#: location (KServe's STORAGE_URI -> /mnt/models) then knows the version it serves.
REGISTRATION_FILE = "registration.json"
#: Where a training run stores the bundle and the drift reference inside its artifacts.
BUNDLE_ARTIFACT_PATH = "bundle"
REFERENCE_ARTIFACT_PATH = "reference"
REFERENCE_FILE = "reference_sample.parquet"
#: Score column of the reference sample (the drift job compares prediction distributions).
SCORE_COLUMN = "fraud_probability"


@dataclass(frozen=True)
class Thresholds:
    """Probability cut-offs chosen on validation data; they travel with the model."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        if not self.decline > self.review:
            raise ValueError(
                f"thresholds: decline must be > review, got review={self.review}, "
                f"decline={self.decline}"
            )

    def decide(self, p: np.ndarray) -> np.ndarray:
        """Map fraud probabilities to ``APPROVE`` / ``REVIEW`` / ``DECLINE``."""
        p = np.asarray(p, dtype=float)
        # decline > review, so the two comparisons add up to 0, 1 or 2 (NaN: APPROVE).
        severity = (p >= self.review).astype(np.intp) + (p >= self.decline)
        return _DECISIONS[severity]

    def decision(self, p: float) -> str:
        """The decision for one probability, as :meth:`decide` gives it (NaN: APPROVE).

        Servers decide one transaction at a time: plain comparisons cost far less there
        than the array operations of :meth:`decide`.
        """
        if p >= self.decline:
            return DECLINE
        return REVIEW if p >= self.review else APPROVE


@dataclass
class ModelBundle:
    """A trained booster with its feature order, thresholds and lineage."""

    booster: xgboost.Booster
    feature_names: tuple[str, ...]
    thresholds: Thresholds
    model_version: str | None = None
    run_id: str | None = None
    metadata: dict = field(default_factory=dict)
    #: Scores batches of up to ``fast_max_rows`` rows exactly as the booster does, only
    #: faster (serving attaches compiled trees: ``serving.compiled_forest``); not saved.
    fast_scorer: Callable[[np.ndarray], np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    fast_max_rows: int = field(default=0, repr=False, compare=False)

    def has_fast_path(self, n_rows: int) -> bool:
        """True when ``n_rows`` rows score in microseconds (no worker thread worth it)."""
        return self.fast_scorer is not None and n_rows <= self.fast_max_rows

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability per row of ``X`` (float32, columns in ``feature_names`` order)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(
                f"X: expected shape (n, {len(self.feature_names)}) in feature_names order, "
                f"got {X.shape}"
            )
        scorer = self.fast_scorer
        if scorer is not None and X.shape[0] <= self.fast_max_rows:  # has_fast_path, inlined
            return scorer(X)
        # inplace_predict skips DMatrix construction (XGBoost's fastest path for batches).
        return np.asarray(self.booster.inplace_predict(X), dtype=float)


def save_bundle(bundle: ModelBundle, directory: Path) -> Path:
    """Write ``model.ubj`` + ``bundle.json`` into ``directory``; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bundle.booster.save_model(directory / BOOSTER_FILE)
    manifest = {
        "feature_names": list(bundle.feature_names),
        "thresholds": {"review": bundle.thresholds.review, "decline": bundle.thresholds.decline},
        "model_version": bundle.model_version,
        "run_id": bundle.run_id,
        "metadata": bundle.metadata,
        "xgboost_version": xgboost.__version__,
    }
    (directory / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    return directory


def load_bundle(directory: Path) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle` (a baked image or a storageUri dir)."""
    directory = Path(directory)
    manifest_path, booster_path = directory / BUNDLE_FILE, directory / BOOSTER_FILE
    for required in (manifest_path, booster_path):
        if not required.exists():
            raise FileNotFoundError(f"{required}: model bundle file missing")
    manifest = json.loads(manifest_path.read_text())
    booster = xgboost.Booster()
    booster.load_model(booster_path)
    return ModelBundle(
        booster=booster,
        feature_names=tuple(manifest["feature_names"]),
        thresholds=Thresholds(**manifest["thresholds"]),
        model_version=manifest.get("model_version") or registered_version(directory),
        run_id=manifest.get("run_id"),
        metadata=manifest.get("metadata", {}),
    )


def registration_record(model_name: str, version: str, registered_at: str) -> dict[str, str]:
    """What :data:`REGISTRATION_FILE` holds: the registry's name and version for these files."""
    return {"model_name": model_name, "model_version": str(version), "registered_at": registered_at}


def registered_version(directory: Path) -> str | None:
    """The version :data:`REGISTRATION_FILE` in ``directory`` names (None: never registered).

    A bundle is saved before its run is registered, so its own ``model_version`` is empty;
    registration adds this file beside it (``training.register.register_candidate``).
    """
    path = Path(directory) / REGISTRATION_FILE
    if not path.exists():
        return None
    try:
        version = json.loads(path.read_text())["model_version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: model_version: must be a JSON object naming the registered version ({exc})"
        ) from None
    return str(version)


def _version_by_alias(client, model_name: str, alias: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        raise LookupError(
            f"models:/{model_name}@{alias}: no such alias in the registry at {uri} ({exc.message})"
        ) from None


def load_registered_bundle(
    alias: str = "champion", model_name: str = MODEL_NAME, tracking_uri: str | None = None
) -> ModelBundle:
    """Resolve ``models:/<model_name>@<alias>`` and load its bundle (never by version number)."""
    client, uri = mlflow_client(tracking_uri, check=False)
    version = _version_by_alias(client, model_name, alias, uri)
    bundle = load_run_bundle(version.run_id, uri)
    return replace(bundle, model_version=str(version.version))


def load_run_bundle(run_id: str, tracking_uri: str | None = None) -> ModelBundle:
    """The bundle a training run logged under ``bundle/`` (the registry resolves versions to runs)."""
    import mlflow.artifacts

    _, uri = mlflow_client(tracking_uri, check=False)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=BUNDLE_ARTIFACT_PATH,
            dst_path=tmp,
            tracking_uri=uri,
        )
        bundle = load_bundle(Path(local))
    return replace(bundle, run_id=run_id)


def export_bundle(
    directory: Path,
    alias: str = "champion",
    model_name: str = MODEL_NAME,
    tracking_uri: str | None = None,
) -> Path:
    """Resolve the alias in the registry and save that bundle (with its version) to ``directory``."""
    return save_bundle(load_registered_bundle(alias, model_name, tracking_uri), Path(directory))


def load_reference_sample(
    alias: str = "champion", model_name: str = MODEL_NAME, tracking_uri: str | None = None
) -> pd.DataFrame:
    """The training reference sample (features + ``fraud_probability`` + ``tx_datetime``)."""
    import mlflow.artifacts

    client, uri = mlflow_client(tracking_uri, check=False)
    version = _version_by_alias(client, model_name, alias, uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=version.run_id,
            artifact_path=f"{REFERENCE_ARTIFACT_PATH}/{REFERENCE_FILE}",
            dst_path=tmp,
            tracking_uri=uri,
        )
        return pd.read_parquet(local)
