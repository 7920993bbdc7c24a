"""MLflow tracking: everything a trained model needs travels with its run.

Each training run logs params, metrics of the candidate and the baseline, PR-curve and
decision-matrix plots, the XGBoost-flavour model (signature + input example), the bundle
files, the feature list and thresholds, the drift reference sample, the model's global
SHAP explanations (``explanations/``: ``training.explain_global``), lineage tags (git
commit, DVC data hash, params hash) and a model card. Nothing here runs at import time:
the tracking URI is set by the caller's call, never by importing this module.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import yaml

from data.schema import TX_FRAUD
from fraudops.bundle import (
    BUNDLE_ARTIFACT_PATH,
    MODEL_NAME,
    REFERENCE_ARTIFACT_PATH,
    REFERENCE_FILE,
    ModelBundle,
    save_bundle,
)
from fraudops.config import Params
from fraudops.paths import paths
from fraudops.registry import ensure_reachable, tracking_uri_or_default
from training.evaluate import decision_counts, pr_curve_points
from training.explain_global import log_global_explanations

EXPERIMENT_NAME = MODEL_NAME
#: Name of the XGBoost-flavour model inside the run (``runs:/<run_id>/model``).
MODEL_ARTIFACT_NAME = "model"
#: Run tag holding the logged model's id, so registration needs no search.
MODEL_ID_TAG = "fraudops.model_id"
CANDIDATE_SCORE, BASELINE_SCORE = "candidate_score", "baseline_score"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Local artifact root for embedded stores; None lets a tracking server decide."""
    scheme = urlparse(tracking_uri).scheme.lower()
    if scheme in ("http", "https", "databricks"):
        return None
    return paths().mlflow_artifacts.as_uri()


def configure_experiment(
    tracking_uri: str,
    experiment_name: str = EXPERIMENT_NAME,
    artifact_location: str | None = None,
) -> str:
    """Point MLflow at ``tracking_uri`` and return the experiment id (created if new)."""
    import mlflow

    ensure_reachable(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_location or default_artifact_location(tracking_uri)
    return mlflow.create_experiment(experiment_name, artifact_location=location)


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (DVC's hash for a single-file output)."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_data_hash(root: Path | None = None) -> str:
    """MD5 of the validated data as DVC recorded it in ``dvc.lock``, else the file's md5.

    "unknown" when neither the lock entry nor the file exists (e.g. a training set built
    outside the pipeline).
    """
    layout = paths(root)
    validated = layout.validated_transactions
    relative = validated.relative_to(layout.root).as_posix()
    lock = layout.root / "dvc.lock"
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []) or []:
                out_path = str(out.get("path", "")).rstrip("/")
                # A stage may track the file itself or the directory that holds it.
                if out.get("md5") and (relative == out_path or relative.startswith(out_path + "/")):
                    return str(out["md5"])
    if validated.exists():
        return file_md5(validated)
    return "unknown"


def git_commit(root: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the project, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths(root).root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def params_hash(params: Params) -> str:
    """MD5 of the canonical JSON of every param (two runs with equal hashes used equal params)."""
    canonical = json.dumps(params.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.md5(canonical.encode()).hexdigest()


def lineage(params: Params, training_set: Path | None = None, root: Path | None = None) -> dict:
    """Lineage facts recorded as run tags and in the bundle metadata."""
    facts = {
        "git_commit": git_commit(root),
        "data_hash": dvc_data_hash(root),
        "params_hash": params_hash(params),
    }
    if training_set is not None and Path(training_set).exists():
        facts["training_set_md5"] = file_md5(Path(training_set))
    return facts


def flat_params(params: Params) -> dict[str, str]:
    """The train / evaluate / register sections as ``section.key`` strings for ``log_params``."""
    dumped = params.model_dump(mode="json", by_alias=True)
    flat: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, list) else str(value)

    for section in ("featurize", "train", "evaluate", "register"):
        walk(section, dumped[section])
    return flat


def model_card(
    bundle: ModelBundle,
    candidate_metrics: dict[str, float],
    baseline_metrics: dict[str, float],
    params: Params,
) -> str:
    """A short markdown model card: what the model is for, its data, numbers and limits."""
    windows = bundle.metadata.get("windows", {})
    keys = [
        "average_precision",
        "roc_auc",
        "recall_at_fpr",
        "card_precision_at_k",
        "f1",
        "precision",
        "recall",
        "net_benefit",
        "alerts",
    ]
    rows = "\n".join(
        f"| {key} | {candidate_metrics.get(key, float('nan')):.4g} | "
        f"{baseline_metrics.get(key, float('nan')):.4g} |"
        for key in keys
    )
    meta = bundle.metadata
    return f"""# Model card: {MODEL_NAME}

**Purpose.** Scores card-present transactions for fraud; the score becomes APPROVE /
REVIEW / DECLINE at thresholds chosen on validation data. Review capacity costs
${params.evaluate.review_cost:g} per alert.

**Model.** XGBoost binary classifier ({params.train.xgboost.n_estimators} trees, depth
{params.train.xgboost.max_depth}); monotone increasing in
{", ".join(params.train.xgboost.monotone_increasing) or "no feature"}.
Baseline: logistic regression with median imputation and scaling.

**Data windows (time split, never random).** train {windows.get("train", "?")} ·
validation {windows.get("validation", "?")} · label-delay gap {windows.get("gap", "?")} ·
test {windows.get("test", "?")}.

**Features ({len(bundle.feature_names)}, in model order).** {", ".join(bundle.feature_names)}

**Thresholds.** review >= {bundle.thresholds.review:.4f}, decline >= {bundle.thresholds.decline:.4f}
({meta.get("threshold_rule", "")}).

**Test-window metrics** (recall at FPR {params.evaluate.fpr_budget:g}, card precision at
{params.evaluate.top_k_per_day} customers/day):

| metric | XGBoost | baseline |
|---|---|---|
{rows}

**Lineage.** git {meta.get("git_commit", "unknown")} · data (DVC md5) {meta.get("data_hash", "unknown")}
· params {meta.get("params_hash", "unknown")}

**Limits.** Trained on simulated transactions; fraud labels arrive late, so the most
recent {params.train.gap_days} days before the test window are not used. Monitor drift
against the logged reference sample and retrain when it fires.
"""


def _plot_pr_curves(test_scores: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    y = test_scores[TX_FRAUD].to_numpy()
    for column, label in ((CANDIDATE_SCORE, "XGBoost"), (BASELINE_SCORE, "logistic baseline")):
        if column in test_scores.columns:
            curve = pr_curve_points(y, test_scores[column].to_numpy(), max_points=500)
            ax.plot(curve["recall"], curve["precision"], label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall, test window")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_decision_matrix(table: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.imshow(np.log1p(table.to_numpy()), cmap="Blues")
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            ax.text(j, i, f"{int(table.iat[i, j]):,}", ha="center", va="center")
    ax.set_title("Decisions vs actual, test window")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _input_example(reference: pd.DataFrame, feature_names: tuple[str, ...]) -> pd.DataFrame:
    # Prefer complete rows: the example documents a typical request, not an edge case.
    features = reference[list(feature_names)].astype("float64")
    complete = features.dropna()
    return (complete if len(complete) >= 5 else features).head(5).reset_index(drop=True)


def _log_params_metrics_and_tags(
    logged: ModelBundle, candidate: dict, baseline: dict, params: Params
) -> str:
    """Params, test-window metrics, thresholds, lineage tags; returns the model card logged."""
    import mlflow

    mlflow.log_params(flat_params(params))
    mlflow.log_metrics({f"test_{k}": float(v) for k, v in candidate.items()})
    mlflow.log_metrics({f"baseline_test_{k}": float(v) for k, v in baseline.items()})
    mlflow.log_metrics(
        {
            "threshold_review": logged.thresholds.review,
            "threshold_decline": logged.thresholds.decline,
        }
    )
    lineage_tags = {
        key: str(logged.metadata[key])
        for key in ("git_commit", "data_hash", "params_hash", "training_set_md5")
        if key in logged.metadata
    }
    windows = {f"window_{k}": v for k, v in logged.metadata.get("windows", {}).items()}
    card = model_card(logged, candidate, baseline, params)
    mlflow.set_tags({**lineage_tags, **windows, "mlflow.note.content": card})
    return card


def _log_files(
    logged: ModelBundle,
    card: str,
    test_scores: pd.DataFrame,
    reference_sample: pd.DataFrame,
    evaluation: dict,
) -> None:
    """The bundle, the reference sample, the model card, the plots and the JSON side files."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        save_bundle(logged, tmp_dir / BUNDLE_ARTIFACT_PATH)
        mlflow.log_artifacts(str(tmp_dir / BUNDLE_ARTIFACT_PATH), BUNDLE_ARTIFACT_PATH)
        reference_path = tmp_dir / REFERENCE_FILE
        reference_sample.to_parquet(reference_path, index=False)
        mlflow.log_artifact(str(reference_path), REFERENCE_ARTIFACT_PATH)
        (tmp_dir / "model_card.md").write_text(card)
        mlflow.log_artifact(str(tmp_dir / "model_card.md"))
        plots = tmp_dir / "plots"
        plots.mkdir()
        _plot_pr_curves(test_scores, plots / "pr_curve.png")
        decisions = logged.thresholds.decide(test_scores[CANDIDATE_SCORE].to_numpy())
        table = decision_counts(test_scores[TX_FRAUD].to_numpy(), decisions)
        _plot_decision_matrix(table, plots / "confusion_matrix.png")
        mlflow.log_artifacts(str(plots), "plots")
    mlflow.log_dict({"feature_names": list(logged.feature_names)}, "features.json")
    mlflow.log_dict(
        {"review": logged.thresholds.review, "decline": logged.thresholds.decline},
        "thresholds.json",
    )
    mlflow.log_dict(evaluation, "evaluation.json")


def _log_model(logged: ModelBundle, reference_sample: pd.DataFrame) -> None:
    """The booster as an MLflow model (signature + input example); tags the run with its id."""
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    example = _input_example(reference_sample, logged.feature_names)
    signature = infer_signature(example, logged.predict_proba(example.to_numpy()))
    info = mlflow.xgboost.log_model(
        logged.booster,
        name=MODEL_ARTIFACT_NAME,
        signature=signature,
        input_example=example,
        # Pinning the one requirement skips MLflow's slow dependency inference.
        pip_requirements=[f"xgboost=={_xgboost_version()}"],
    )
    mlflow.set_tag(MODEL_ID_TAG, info.model_id)


def log_training_run(
    bundle: ModelBundle,
    evaluation: dict,
    test_scores: pd.DataFrame,
    reference_sample: pd.DataFrame,
    params: Params,
    tracking_uri: str | None = None,
    experiment_name: str = EXPERIMENT_NAME,
    run_name: str | None = None,
) -> str:
    """Log one training run to MLflow and return its run id.

    ``evaluation`` is ``{"candidate": metrics, "baseline": metrics, ...}`` on the test
    window; ``test_scores`` holds the test labels with ``candidate_score`` / ``baseline_score``.
    """
    import mlflow

    uri = tracking_uri_or_default(tracking_uri)
    experiment_id = configure_experiment(uri, experiment_name)
    candidate, baseline = evaluation["candidate"], evaluation.get("baseline", {})
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        run_id = run.info.run_id
        logged = replace(
            bundle,
            run_id=run_id,
            metadata={**bundle.metadata, "metrics": candidate, "baseline_metrics": baseline},
        )
        card = _log_params_metrics_and_tags(logged, candidate, baseline, params)
        _log_files(logged, card, test_scores, reference_sample, evaluation)
        log_global_explanations(logged, reference_sample, seed=params.train.seed)
        _log_model(logged, reference_sample)
    return run_id


def _xgboost_version() -> str:
    import xgboost

    return xgboost.__version__
