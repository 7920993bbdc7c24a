"""Gathering each compared model's global SHAP explanation from its MLflow run.

Every training run logs ``explanations/`` (:mod:`training.explain_global`): the beeswarm
PNG, a dependence PNG per top feature and ``mean_abs_shap.json``. This module reads them
through the one client factory (:func:`fraudops.registry.mlflow_client`) the way
:mod:`tutorial.report_gather` reads the rest; a run that logged none (older runs) gives a
:class:`~tutorial.report_facts.Missing` note for that model, never an error.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException

from fraudops.registry import RegistryUnavailableError, mlflow_client
from training.explain_global import (
    DEPENDENCE_DIR,
    EXPLANATIONS_ARTIFACT_PATH,
    IMPORTANCE_FILE,
    SUMMARY_PLOT_FILE,
)
from tutorial.report_facts import (
    FeatureShap,
    GlobalShap,
    Missing,
    ModelGlobalShap,
    RegistryFacts,
)

NOT_LOGGED = "global SHAP not logged for this run"


def read_global_shap(directory: Path, source: str) -> GlobalShap:
    """The logged files in ``directory`` (a downloaded ``explanations/``) as a record.

    Raises ``FileNotFoundError`` without the JSON and ``KeyError``/``TypeError``/``ValueError``
    when it is not the shape ``training.explain_global.importance_record`` writes.
    """
    directory = Path(directory)
    record = json.loads((directory / IMPORTANCE_FILE).read_text())
    features = tuple(
        FeatureShap(str(entry["feature"]), float(entry["mean_abs_shap"]))
        for entry in record["mean_abs_shap"]
    )
    summary = directory / SUMMARY_PLOT_FILE
    plots = {p.stem: p.read_bytes() for p in (directory / DEPENDENCE_DIR).glob("*.png")}
    return GlobalShap(
        units=str(record.get("units", "log-odds")),
        n_rows=int(record["n_rows"]),
        base_value=float(record["base_value"]),
        features=features,
        summary_png=summary.read_bytes() if summary.exists() else None,
        dependence_png=tuple((f.feature, plots[f.feature]) for f in features if f.feature in plots),
        source=f"runs:/{source}/{EXPLANATIONS_ARTIFACT_PATH}",
    )


def run_global_shap(run_id: str, tracking_uri: str) -> GlobalShap | Missing:
    """The run's logged ``explanations/``, or a "not logged for this run" note."""
    # mlflow.artifacts is heavy: loaded with the client, as fraudops.bundle does.
    import mlflow.artifacts

    try:
        client, uri = mlflow_client(tracking_uri, check=False)
        logged = {a.path for a in client.list_artifacts(run_id, EXPLANATIONS_ARTIFACT_PATH)}
        if f"{EXPLANATIONS_ARTIFACT_PATH}/{IMPORTANCE_FILE}" not in logged:
            detail = f"run {run_id} has no {EXPLANATIONS_ARTIFACT_PATH}/{IMPORTANCE_FILE}"
            return Missing(NOT_LOGGED, "make train", detail)
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=EXPLANATIONS_ARTIFACT_PATH,
                dst_path=tmp,
                tracking_uri=uri,
            )
            return read_global_shap(Path(local), run_id)
    except (OSError, MlflowException, RegistryUnavailableError) as exc:
        message = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
        return Missing("global SHAP could not be read for this run", "make train", message)
    except (KeyError, TypeError, ValueError) as exc:
        return Missing(f"unreadable {IMPORTANCE_FILE}", "make train", f"run {run_id}: {exc!r}")


def gather_global_shap(registry: RegistryFacts | Missing) -> tuple[ModelGlobalShap, ...] | Missing:
    """Champion's (then the candidate's, when another version) logged global explanation."""
    if isinstance(registry, Missing):
        return Missing("no registered model to explain", "make train")
    models: list[ModelGlobalShap] = []
    for role, lineage in (("champion", registry.champion), ("candidate", registry.candidate)):
        if lineage is None or any(m.version == lineage.version for m in models):
            continue
        shap = run_global_shap(lineage.run_id, registry.tracking_uri)
        models.append(ModelGlobalShap(role, lineage.version, lineage.run_id, shap))
    return tuple(models) if models else Missing("no registered model to explain", "make train")
